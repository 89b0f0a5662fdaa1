"""The ``cellbench`` command line (Typer and rich).

Each module here holds the commands named after it (``plan``, ``queue``, ``serve``, ``sync``...)
and adds them to :data:`~cellbench_core.cli.app.app`; the long-running work behind ``serve``
lives in :mod:`cellbench_core.service`.
"""

from __future__ import annotations

from cellbench_core.cli import (
    battery,
    chamber,
    database,
    notify,
    plan,
    plot,
    queue,
    running,
    serve,
    sync,
    tests,
)
from cellbench_core.cli.app import app
from cellbench_core.plugins import loaded_plugins

__all__ = ["app", "battery", "chamber", "database", "main", "notify", "plan", "plot", "queue",
           "running", "serve", "sync", "tests"]


def main() -> None:
    """Run the command line, with the commands that plugins add; the plugins are loaded once,
    here, and every command uses that load."""
    loaded_plugins().hook.cellbench_cli(app=app)
    app()
