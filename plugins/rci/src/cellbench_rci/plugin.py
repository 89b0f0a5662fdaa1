"""Registration of the remote control interface with cellbench."""

from __future__ import annotations

import typer

from cellbench_rci.cli import register
from cellbench_sdk import hookimpl


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench rci``: send commands to a station's rci interface, or open a prompt."""
    register(app)
