"""The conformance checks of cellbench-sdk, run against the ESPEC driver and its emulator."""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from cellbench_espec.emulator import EspecEmulator
from cellbench_sdk.testing import ClimateChamberContract


class TestEspecChamber(ClimateChamberContract):
    """Every check of a climate chamber, with and without humidity, against the emulator on a
    loopback socket (the address is the peer's)."""

    plugin = "cellbench_espec.plugin"
    name = "espec"
    entry_point = "espec"
    cases: ClassVar[dict[str, dict[str, Any]]] = {
        "temperature": {"address": "127.0.0.1:1"},
        "humidity": {"address": "127.0.0.1:1", "humidity": True},
    }
    setpoint_c = -20.0
    humidity_pct = 60.0

    @asynccontextmanager
    async def peer(self, settings: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]:
        async with EspecEmulator(humidity=settings.get("humidity", False)) as emulator:
            yield {**settings, "address": f"127.0.0.1:{emulator.port}"}

    def unreachable(self, port: int) -> Mapping[str, Any]:
        return {"address": f"127.0.0.1:{port}"}
