"""The ``rci`` command as the plugin registers it on the ``cellbench`` command line."""

from __future__ import annotations

import pytest
import typer

from cellbench_rci.cli import register


@pytest.fixture
def app() -> typer.Typer:
    """A command line holding ``rci`` as the plugin registers it."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """cellbench"""

    register(app)
    return app
