"""``cellbench scpi identify``: which driver and command set fit an instrument, and its ranges."""

from __future__ import annotations

from cellbench_scpi.commands import Kind, identify
from cellbench_scpi.link import Link
from cellbench_scpi.resources import parse_resource
from cellbench_sdk import DeviceError

#: The driver that runs each kind of instrument.
DRIVERS = {Kind.SMU: "scpi-smu", Kind.BIDIRECTIONAL: "scpi-bidirectional",
           Kind.SUPPLY: "scpi-pair (as its supply)", Kind.LOAD: "scpi-pair (as its load)"}


def describe(resource: str, timeout_s: float, baud_rate: int) -> list[str]:
    """Lines saying what answers at ``resource``: its ``*IDN?``, the driver and command set
    that fit, and its ranges. Only queries are sent. ValueError for a bad resource string,
    DeviceError when the instrument cannot be reached or is not one the drivers know."""
    link = Link(resource, parse_resource(resource), timeout_s, baud_rate)
    link.open()
    try:
        idn = link.query("*IDN?")
        found = identify(idn)
        if found is None:
            raise DeviceError(resource, f"*IDN? answered {idn!r}: no known SMU or "
                                        "bidirectional supply; a supply or a load runs with "
                                        "scpi-pair and command_set = \"scpi-supply\" or "
                                        "\"scpi-load\"")
        lines = [f"*IDN?: {idn}", f"driver: {DRIVERS[found.kind]}",
                 f"command set: {found.name} ({found.description})"]
        if found.ranges:
            lines += [f"range: ±{r.current_a:g} A up to ±{r.voltage_v:g} V"
                      for r in found.ranges]
        else:
            for action in ("nominal_voltage", "nominal_current", "nominal_power"):
                if found.can(action):
                    reply = link.query(found.command(action))
                    lines.append(f"{action.removeprefix('nominal_')} rating: {reply}")
        watchdog = "yes" if found.watchdog else "no"
        lines.append(f"communication watchdog: {watchdog}")
        return lines
    finally:
        link.close()
