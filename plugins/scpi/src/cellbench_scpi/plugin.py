"""Registers the SCPI channel drivers with cellbench and adds ``cellbench scpi``.

cellbench imports this module at every start, so it stays light: the factories are named as
"module:attr" strings, imported (with pyvisa) only when a station uses them.
"""

from __future__ import annotations

import typer

from cellbench_scpi.settings import BidirectionalSettings, PairSettings, SmuSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_channel_drivers() -> list[Descriptor]:
    """A channel on a source-measure unit, on a bidirectional supply, on a supply + load."""
    return [
        Descriptor(Kind.CHANNEL_DRIVER, "scpi-smu", "cellbench_scpi.driver:smu_channel",
                   "SCPI source-measure unit (Keithley 2400/2450, Keysight B2900) as one "
                   "channel", SmuSettings, emulator="cellbench_scpi.emulator:serve_smu"),
        Descriptor(Kind.CHANNEL_DRIVER, "scpi-bidirectional",
                   "cellbench_scpi.driver:bidirectional_channel",
                   "SCPI bidirectional DC supply (EA PSB) as one channel",
                   BidirectionalSettings,
                   emulator="cellbench_scpi.emulator:serve_bidirectional"),
        Descriptor(Kind.CHANNEL_DRIVER, "scpi-pair", "cellbench_scpi.driver:pair_channel",
                   "SCPI supply + SCPI electronic load as one channel, never both on",
                   PairSettings, emulator="cellbench_scpi.emulator:serve_pair"),
    ]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench scpi emulate`` and ``cellbench scpi identify``."""
    from cellbench_scpi.cli import register  # typer only: cheap, but only when asked

    register(app)
