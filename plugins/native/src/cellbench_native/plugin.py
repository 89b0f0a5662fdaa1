"""Registers native driver libraries with cellbench: an OSI device (``[[devices]] kind =
"native"``) and a channel driver (``[[channels]] driver = "native"``).

cellbench imports this module at every start, so it stays light: the factories are named as
"module:attr" strings and cffi is imported only when a station uses a library.
"""

from __future__ import annotations

import typer

from cellbench_native.cli import register
from cellbench_native.settings import NativeSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_osi_devices() -> list[Descriptor]:
    """A vendor library's signals (the OSI half of cellbench_driver.h)."""
    return [Descriptor(Kind.OSI_DEVICE, "native", "cellbench_native.device:NativeDevice",
                       "vendor driver library (cellbench_driver.h) with signals, isolated in "
                       "a host process", NativeSettings)]


@hookimpl
def cellbench_channel_drivers() -> list[Descriptor]:
    """A vendor library's channel bank (the channel half of cellbench_driver.h)."""
    return [Descriptor(Kind.CHANNEL_DRIVER, "native", "cellbench_native.channels:NativeChannels",
                       "vendor driver library (cellbench_driver.h) with cycler channels, "
                       "isolated in a host process", NativeSettings)]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench native check``: try a library without a station."""
    register(app)
