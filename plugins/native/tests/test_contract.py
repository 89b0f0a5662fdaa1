"""The conformance checks of cellbench-sdk against the example driver of docs/native.md, in a
host process and in-process."""

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from cellbench_native.device import NativeDevice
from cellbench_native.settings import Isolation, NativeSettings
from cellbench_sdk import RealClock, StepMode
from cellbench_sdk.testing import ChannelDriverContract, OsiDeviceContract

from .conftest import Faults, Libraries

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


@pytest.mark.parametrize("isolation", ["process", "in-process"])
def test_the_device_says_what_it_is(libraries: Libraries, faults: Faults,
                                    isolation: Isolation) -> None:
    async def run() -> None:
        example = NativeDevice(NativeSettings(library=libraries.example, isolation=isolation))
        faulty = NativeDevice(NativeSettings(library=libraries.faulty, isolation=isolation,
                                             config=faults.config))
        for device in (example, faulty):
            await device.open(RealClock())
            await device.close()
        assert example.info == {"maker": "cellbench", "model": "example driver",
                                "firmware": "1.0"}
        assert faulty.info == {"model": "faulty", "serial": "0001"}  # empty lines left out

    asyncio.run(run())
