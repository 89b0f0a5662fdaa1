"""The SDK's own plugin: the ``cellbench plugin new`` command for plugin authors.

The SDK registers it through its ``cellbench.plugins`` entry point, so that the core, which
never imports the SDK, offers the template wherever the SDK is installed.
"""

from __future__ import annotations

import typer

from cellbench_sdk import hookimpl
from cellbench_sdk.template.cli import register


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench plugin new``."""
    register(app)
