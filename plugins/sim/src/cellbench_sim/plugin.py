"""Registration of the simulated station's devices with cellbench."""

from __future__ import annotations

from cellbench_sdk import Descriptor, Kind, hookimpl
from cellbench_sim.bulk import BulkSimSettings
from cellbench_sim.chamber import SimChamberSettings
from cellbench_sim.channel import SimChannelSettings
from cellbench_sim.osi import SimOsiSettings


@hookimpl
def cellbench_channel_drivers() -> list[Descriptor]:
    """The simulated channel bank, and the single bulk-computing channel."""
    return [
        Descriptor(
            Kind.CHANNEL_DRIVER,
            "sim",
            "cellbench_sim.channel:SimChannels",
            "Simulated channels with equivalent-circuit cells (NMC or LFP) that age",
            SimChannelSettings,
        ),
        Descriptor(
            Kind.CHANNEL_DRIVER,
            "sim-bulk",
            "cellbench_sim.bulk:BulkSimChannel",
            "One simulated channel computing whole steps in bulk on a virtual clock that it "
            "moves itself (what cellbench plan estimate runs on)",
            BulkSimSettings,
        ),
    ]


@hookimpl
def cellbench_climate_chambers() -> list[Descriptor]:
    """The simulated climate chamber."""
    return [
        Descriptor(
            Kind.CLIMATE_CHAMBER,
            "sim",
            "cellbench_sim.chamber:create_chamber",
            "Simulated climate chamber (first-order, ramp-limited; optional humidity)",
            SimChamberSettings,
        )
    ]


@hookimpl
def cellbench_osi_devices() -> list[Descriptor]:
    """The simulated OSI device."""
    return [
        Descriptor(
            Kind.OSI_DEVICE,
            "sim",
            "cellbench_sim.osi:SimOsiDevice",
            "Simulated sensors: temperature, pressure and a settable heater",
            SimOsiSettings,
        )
    ]
