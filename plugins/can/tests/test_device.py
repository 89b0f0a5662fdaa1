"""The conformance checks of cellbench-sdk for an OSI device, run against can."""

from typing import Any, ClassVar

from cellbench_sdk.testing import OsiDeviceContract


class TestCanDevice(OsiDeviceContract):
    """Every check of an OSI device, once per case of settings, against what the descriptor
    builds. The classes' attributes and hooks: docs/plugins.md of cellbench."""

    # The module the entry point names, and the descriptor's name.
    plugin = "cellbench_can.plugin"
    name = "can"
    # Settings to check with, by a name that shows in the test ids.
    cases: ClassVar[dict[str, dict[str, Any]]] = {"defaults": {}, "cold": {"ambient_c": -20.0}}
    # The value written to each writable signal (by default the value it reads back).
    values: ClassVar[dict[str, float]] = {"setpoint_c": 30.0}

    # For a device of real hardware: check it against an emulator of the device on loopback
    # (override peer(), see the channel driver's template) and set unreachable(port).
