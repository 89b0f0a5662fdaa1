"""The conformance checks of cellbench-sdk for a climate chamber, against the emulator."""

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from cellbench_sdk.testing import ClimateChamberContract
from cellbench_simserv.emulator import SimservEmulator


class TestSimservChamber(ClimateChamberContract):
    """Every check of a climate chamber, with and without humidity control."""

    plugin = "cellbench_simserv.plugin"
    name = "simserv"
    cases: ClassVar[dict[str, dict[str, Any]]] = {
        "temperature": {}, "humidity": {"humidity": True}}
    setpoint_c = -20.0

    @asynccontextmanager
    async def peer(self, settings: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]:
        async with SimservEmulator(humidity=settings.get("humidity", False)) as emulator:
            yield {**settings, "port": emulator.port}

    def unreachable(self, port: int) -> dict[str, Any]:
        return {"port": port, "connect_timeout_s": 1.0}
