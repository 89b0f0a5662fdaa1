"""SIMSERV chamber poll round trip against a bare socket round trip, in the same run.

The emulated controller runs on its own thread's event loop on loopback. Measured, each
``--polls`` times:

- bare: a blocking socket sends the status command (``10012¶1``) and reads its reply;
- command: the driver's one command through the hal transport (the status query);
- poll: the driver's ``read()``: status, actual value and setpoint (three commands).

    .venv/bin/python bench/bench_chamber_simserv.py [--polls 2000]

Prints p50/p99 per measurement; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable

import numpy as np

from cellbench_sdk import RealClock
from cellbench_simserv.chamber import SimservChamber
from cellbench_simserv.emulator import SimservEmulator
from cellbench_simserv.settings import SimservSettings


def start_emulator() -> int:
    """An emulated controller on a background thread; its port."""
    ready = threading.Event()
    ports: list[int] = []

    async def serve() -> None:
        async with SimservEmulator() as emulator:
            ports.append(emulator.port)
            ready.set()
            await emulator.serve_forever()

    threading.Thread(target=asyncio.run, args=(serve(),), daemon=True).start()
    ready.wait(10)
    return ports[0]


def bare(port: int, polls: int) -> list[float]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(polls):
            start = time.perf_counter()
            sock.sendall(b"10012\xb61\r")
            reply = b""
            while not reply.endswith(b"\r"):
                reply += sock.recv(64)
            times.append(time.perf_counter() - start)
        return times


async def timed(call: Callable[[], Awaitable[object]], polls: int) -> list[float]:
    times = []
    for _ in range(polls):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return times


async def driver(port: int, polls: int) -> tuple[list[float], list[float]]:
    chamber = SimservChamber(SimservSettings(port=port))
    await chamber.open(RealClock())
    try:
        command = await timed(chamber._status, polls)
        poll = await timed(chamber.read, polls)
    finally:
        await chamber.close()
    return command, poll


def show(what: str, times: list[float]) -> None:
    ms = np.array(times) * 1e3
    print(f"{what:<28} p50 {np.percentile(ms, 50):6.3f} ms   p99 {np.percentile(ms, 99):6.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--polls", type=int, default=2000)
    polls = parser.parse_args().polls
    port = start_emulator()
    bare(port, 100)  # warm up
    show("bare socket, one command", bare(port, polls))
    command, poll = asyncio.run(driver(port, polls))
    show("driver, one command", command)
    show("driver read() (3 commands)", poll)


if __name__ == "__main__":
    main()
