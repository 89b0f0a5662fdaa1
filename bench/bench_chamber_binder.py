"""Binder chamber poll round trip: p50/p99 of one ``read()`` (5 Modbus requests: temperature,
setpoint, mode, door, alarm) and of one Modbus request, over Modbus TCP and RTU over TCP, beside
a bare asyncio echo of an 8-byte frame on loopback measured in the same run.

The emulator and the echo server run on an event loop of their own in a second thread; the
chamber driver and the bare client run on the main loop, so both pay the same thread handoff.

    .venv/bin/python bench/bench_chamber_binder.py [--polls 500]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import numpy as np

from cellbench_binder.chamber import create_chamber
from cellbench_binder.emulator import BinderEmulator
from cellbench_binder.settings import BinderSettings
from cellbench_sdk import RealClock


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(256):
        writer.write(data)
    writer.close()


class Servers:
    """The echo server and one emulator per framing, on a loop in their own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ports: dict[str, int] = {}
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        self.ports["echo"] = echo.sockets[0].getsockname()[1]
        async with BinderEmulator(framing="modbus-tcp") as tcp, BinderEmulator() as rtu:
            self.ports["modbus-tcp"], self.ports["rtu-over-tcp"] = tcp.port, rtu.port
            self._ready.set()
            await self._stop.wait()
        echo.close()

    def __enter__(self) -> Servers:
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()


async def timed(n: int, call: Callable[[], Awaitable[object]]) -> np.ndarray:
    for _ in range(min(50, n)):  # warm up
        await call()
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        await call()
        out[i] = time.perf_counter() - t
    return out * 1000.0


def line(what: str, ms: np.ndarray) -> str:
    return (f"{what:<40} n={len(ms):5d}  p50 {np.percentile(ms, 50):6.3f} ms  "
            f"p99 {np.percentile(ms, 99):6.3f} ms  max {ms.max():6.3f} ms")


async def bench(ports: dict[str, int], polls: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ports["echo"])
    frame = bytes(8)

    async def bare() -> None:
        writer.write(frame)
        await reader.readexactly(len(frame))

    print(line("bare socket round trip (8 bytes)", await timed(polls * 5, bare)))
    writer.close()
    for framing in ("modbus-tcp", "rtu-over-tcp"):
        settings = BinderSettings.model_validate(
            {"address": f"127.0.0.1:{ports[framing]}", "framing": framing}
        )
        chamber = create_chamber(settings)
        await chamber.open(RealClock())
        # MB1's start() is one request: a write of the mode word.
        print(line(f"{framing}: one request", await timed(polls * 5, chamber.start)))
        print(line(f"{framing}: poll, read() = 5 requests", await timed(polls, chamber.read)))
        await chamber.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=500)
    args = parser.parse_args()
    with Servers() as servers:
        asyncio.run(bench(servers.ports, args.polls))


if __name__ == "__main__":
    main()
