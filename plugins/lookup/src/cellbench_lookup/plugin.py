"""Registration of the lookup-table device with cellbench."""

from __future__ import annotations

from cellbench_lookup.table import LookupSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_osi_devices() -> list[Descriptor]:
    """The CSV lookup table."""
    return [
        Descriptor(
            Kind.OSI_DEVICE,
            "lookup",
            "cellbench_lookup.table:LookupTable",
            "Lookup table from a CSV file: columns over time, for profile steps and as signals",
            LookupSettings,
        )
    ]
