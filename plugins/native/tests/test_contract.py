"""The conformance checks of cellbench-sdk against the example driver of docs/native.md, in a
host process and in-process."""

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from cellbench_sdk import StepMode
from cellbench_sdk.testing import ChannelDriverContract, OsiDeviceContract

ISOLATIONS: dict[str, dict[str, Any]] = {
    "host process": {"isolation": "process"},
    "in-process": {"isolation": "in-process"},
}


class TestNativeDevice(OsiDeviceContract):
    """The example's BMS signals as an OSI device."""

    plugin = "cellbench_native.plugin"
    name = "native"
    entry_point = "native"
    cases = ISOLATIONS
    values: ClassVar[dict[str, float]] = {"charge_enable": 1.0, "fan_pct": 40.0}

    @pytest.fixture
    def settings(self, cellbench_case: Mapping[str, Any], libraries: Any) -> Mapping[str, Any]:
        return {**cellbench_case, "library": str(libraries.example)}

    def unreachable(self, port: int) -> Mapping[str, Any]:
        return {"library": f"/nonexistent/libnothing-{port}.so"}


class TestNativeChannels(ChannelDriverContract):
    """The example's simulated cells as a channel bank; it accepts every step mode."""

    plugin = "cellbench_native.plugin"
    name = "native"
    entry_point = "native"
    cases = ISOLATIONS
    settle_s = 0.05
    modes = frozenset(StepMode)

    @pytest.fixture
    def settings(self, cellbench_case: Mapping[str, Any], libraries: Any) -> Mapping[str, Any]:
        return {**cellbench_case, "library": str(libraries.example), "config": "channels=3"}

    def unreachable(self, port: int) -> Mapping[str, Any]:
        return {"library": f"/nonexistent/libnothing-{port}.so"}
