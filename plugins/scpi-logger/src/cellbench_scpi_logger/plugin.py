"""Registers the SCPI data logger with cellbench and adds ``cellbench scpi-logger emulate``.

cellbench imports this module at every start, so it stays light: the factory is named as a
"module:attr" string.
"""

from __future__ import annotations

import typer

from cellbench_scpi_logger.cli import register
from cellbench_scpi_logger.settings import ScpiLoggerSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_osi_devices() -> list[Descriptor]:
    """The data logger."""
    return [
        Descriptor(Kind.OSI_DEVICE, "scpi-logger", "cellbench_scpi_logger.logger:ScpiLogger",
                   "Keysight 34970A / DAQ970A data logger: thermocouple and DC-voltage scan "
                   "list over LAN or RS-232", ScpiLoggerSettings)
    ]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench scpi-logger emulate``: an emulated logger on loopback."""
    register(app)
