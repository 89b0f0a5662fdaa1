"""The SDK's channel-driver contract, for each driver against its emulated instruments."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from cellbench_scpi.emulator import Emulator
from cellbench_sdk import StepMode
from cellbench_sdk.testing import ChannelDriverContract

ALL_MODES = frozenset(StepMode)


def _tcp(port: int) -> str:
    return f"TCPIP::127.0.0.1::{port}::SOCKET"


class _Emulated(ChannelDriverContract):
    plugin = "cellbench_scpi.plugin"
    entry_point = "scpi"
    settle_s = 0.02  # the real clock: short waits
    modes = ALL_MODES
    model: ClassVar[str]

    @contextlib.asynccontextmanager
    async def peer(self, settings: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]:
        async with Emulator.create(self.model, speed=10.0) as emulator:
            yield {**settings, **self.reaching(emulator)}
            assert emulator.cell.both_on == 0
            assert not any(i.output_on for i in emulator.instruments)

    def reaching(self, emulator: Emulator) -> dict[str, Any]:
        return {"resource": emulator.resource()}

    def unreachable(self, port: int) -> Mapping[str, Any]:
        return {"resource": _tcp(port)}


class TestSmu(_Emulated):
    name = "scpi-smu"
    model = "smu"


class TestBidirectional(_Emulated):
    name = "scpi-bidirectional"
    model = "bidirectional"


class TestPair(_Emulated):
    name = "scpi-pair"
    model = "pair"

    def reaching(self, emulator: Emulator) -> dict[str, Any]:
        return {"supply": {"resource": emulator.resource(0)},
                "load": {"resource": emulator.resource(1)}}

    def unreachable(self, port: int) -> Mapping[str, Any]:
        return {"supply": {"resource": _tcp(port)}, "load": None}
