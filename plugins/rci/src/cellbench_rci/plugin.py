"""Registration of the remote control interface with cellbench: the station interface and the
``cellbench rci`` client command."""

from __future__ import annotations

import typer

from cellbench_rci.cli import register
from cellbench_rci.interface import RciSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_interfaces() -> list[Descriptor]:
    """The rci interface a station serves from an ``[[interfaces]]`` section."""
    return [Descriptor(Kind.INTERFACE, "rci", "cellbench_rci.interface:RciInterface",
                       "ASCII remote control over TCP (TLS) and RS-232", RciSettings)]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench rci``: send commands to a station's rci interface, or open a prompt."""
    register(app)
