"""Registration of the export commands with cellbench."""

from __future__ import annotations

import typer

from cellbench_export.cli import register
from cellbench_sdk import hookimpl


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench export`` and ``cellbench import basytec``."""
    register(app)
