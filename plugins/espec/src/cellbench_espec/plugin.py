"""Registers the ESPEC chamber with cellbench and adds ``cellbench espec emulate``.

cellbench imports this module at every start, so it stays light: the factory is named as a
"module:attr" string.
"""

from __future__ import annotations

import typer

from cellbench_espec.cli import register
from cellbench_espec.settings import EspecSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_climate_chambers() -> list[Descriptor]:
    """The ESPEC chamber."""
    return [
        Descriptor(Kind.CLIMATE_CHAMBER, "espec", "cellbench_espec.chamber:espec_chamber",
                   "ESPEC chamber (P300 / SCP-220 controller) over serial or a TCP serial "
                   "server", EspecSettings, emulator="cellbench_espec.emulator:serve")
    ]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench espec emulate``: an emulated ESPEC controller on loopback."""
    register(app)
