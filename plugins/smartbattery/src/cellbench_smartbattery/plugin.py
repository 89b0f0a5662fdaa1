"""Registers the smart battery with cellbench and adds ``cellbench smartbattery read``.

cellbench imports this module at every start, so it stays light: the factory is named as a
"module:attr" string, imported only when a station uses a smart battery.
"""

from __future__ import annotations

import typer

from cellbench_sdk import Descriptor, Kind, hookimpl
from cellbench_smartbattery.cli import register
from cellbench_smartbattery.settings import SmartBatterySettings


@hookimpl
def cellbench_osi_devices() -> list[Descriptor]:
    """The smart battery."""
    return [
        Descriptor(Kind.OSI_DEVICE, "smartbattery", "cellbench_smartbattery.battery:smart_battery",
                   "Smart battery (SBS 1.1) over SMBus: Linux i2c-dev or a CP2112 USB bridge",
                   SmartBatterySettings)
    ]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench smartbattery read``: read a battery once."""
    register(app)
