"""The plugin's three devices keep their kinds' contracts (the SDK's conformance kit), as their
descriptors build them from station settings."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from cellbench_sdk import Kind, StepMode
from cellbench_sdk.testing import (
    ChannelDriverContract,
    ClimateChamberContract,
    OsiDeviceContract,
    check_plugin,
)
from cellbench_sim import plugin
from cellbench_sim.bulk import BulkSimChannel
from cellbench_sim.chamber import SimChamber, SimHumidityChamber
from cellbench_sim.channel import SimChannels


class TestSimChannels(ChannelDriverContract):
    plugin = "cellbench_sim.plugin"
    name = "sim"
    entry_point = "sim"
    cases: ClassVar[dict[str, dict[str, Any]]] = {
        "defaults": {},
        "lfp, one channel reaching below 0 V": {"count": 1, "chemistry": "lfp",
                                                "voltage_min_v": -1.0, "power_max_w": 5.0},
        "three channels": {"count": 3},
    }
    modes = frozenset(StepMode)


class TestBulkSimChannel(ChannelDriverContract):
    plugin = "cellbench_sim.plugin"
    name = "sim-bulk"
    entry_point = "sim"
    cases: ClassVar[dict[str, dict[str, Any]]] = {"defaults": {}}
    modes = frozenset(StepMode)


class TestSimOsiDevice(OsiDeviceContract):
    plugin = "cellbench_sim.plugin"
    name = "sim"


class TestSimChamber(ClimateChamberContract):
    plugin = "cellbench_sim.plugin"
    name = "sim"
    cases: ClassVar[dict[str, dict[str, Any]]] = {
        "temperature only": {}, "with humidity": {"has_humidity": True}}
    setpoint_c = -20.0


def test_descriptors_build_the_device_their_settings_ask_for() -> None:
    channels, bulk, osi, chambers = check_plugin(plugin)
    assert [(d.kind, d.name) for d in (channels, bulk, osi, chambers)] == [
        (Kind.CHANNEL_DRIVER, "sim"), (Kind.CHANNEL_DRIVER, "sim-bulk"),
        (Kind.OSI_DEVICE, "sim"), (Kind.CLIMATE_CHAMBER, "sim")]
    assert isinstance(bulk.create({"period_s": 10.0}), BulkSimChannel)
    driver = channels.create({"count": 3, "chemistry": "lfp"})
    assert isinstance(driver, SimChannels) and len(driver.channels) == 3
    assert type(chambers.create()) is SimChamber
    assert type(chambers.create({"has_humidity": True})) is SimHumidityChamber
    with pytest.raises(ValidationError, match="count"):
        channels.create({"count": -1})
