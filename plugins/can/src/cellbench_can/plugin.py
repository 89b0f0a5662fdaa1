"""Registers the CAN device with cellbench and adds ``cellbench can emulate``.

cellbench imports this module at every start, so it stays light: the factory is named as a
"module:attr" string, and python-can and cantools are imported only when a station uses it.
"""

from __future__ import annotations

import typer

from cellbench_can.settings import CanSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_osi_devices() -> list[Descriptor]:
    """The CAN device."""
    return [
        Descriptor(Kind.OSI_DEVICE, "can", "cellbench_can.device:CanDevice",
                   "CAN bus (python-can) with a DBC/KCD/SYM database: BMS signals to read, "
                   "frames to send", CanSettings)
    ]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench can emulate``: an emulated BMS on a virtual bus or an SLCAN pty."""
    from cellbench_can.cli import register

    register(app)
