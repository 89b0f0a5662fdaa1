"""ESPEC chamber poll latency: p50/p99 of ``EspecChamber.read()`` (MON? then TEMP?, two round
trips through the hal's TcpLineTransport) against the emulator, beside the same two commands
sent on a bare blocking socket to the same emulator in the same run.

The emulator runs in a subprocess (``cellbench_espec.emulator.serve``) on loopback, as a TCP
serial server would stand in front of a real controller.

    .venv/bin/python bench/bench_chamber_espec.py [--polls 2000]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time

import numpy as np

from cellbench_espec.chamber import espec_chamber
from cellbench_espec.emulator import serve
from cellbench_espec.settings import EspecSettings
from cellbench_sdk import RealClock
from cellbench_sdk.testing import connect_when_listening, free_port


def _emulate(port: int) -> None:
    asyncio.run(serve("127.0.0.1", port))



def bare(port: int, polls: int) -> np.ndarray:
    """Seconds per poll: MON? and TEMP? written and read on a plain socket."""
    sock = connect_when_listening(port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = sock.makefile("rb")
    times = []
    for _ in range(polls):
        start = time.perf_counter()
        for command in (b"MON?\r\n", b"TEMP?\r\n"):
            sock.sendall(command)
            stream.readline()
        times.append(time.perf_counter() - start)
    sock.close()
    return np.array(times)


async def driver(port: int, polls: int) -> np.ndarray:
    """Seconds per ``read()`` of the driver."""
    chamber = espec_chamber(EspecSettings(address=f"127.0.0.1:{port}"))
    await chamber.open(RealClock())
    times = []
    for _ in range(polls):
        start = time.perf_counter()
        await chamber.read()
        times.append(time.perf_counter() - start)
    await chamber.close()
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=2000)
    polls = parser.parse_args().polls
    port = free_port()
    emulator = multiprocessing.Process(target=_emulate, args=(port,), daemon=True)
    emulator.start()
    try:
        connect_when_listening(port).close()
        # Alternate the two so that neither gets the quieter half of the run.
        rounds = {"bare socket (2 queries)": [], "EspecChamber.read()": []}
        for _ in range(4):
            rounds["bare socket (2 queries)"].append(bare(port, polls // 4))
            rounds["EspecChamber.read()"].append(asyncio.run(driver(port, polls // 4)))
    finally:
        emulator.terminate()
        emulator.join()
    print(f"{'poll':<26}{'p50 µs':>10}{'p99 µs':>10}{'polls/s':>10}")
    for name, parts in rounds.items():
        times = np.concatenate(parts)
        p50, p99 = np.percentile(times, [50, 99]) * 1e6
        print(f"{name:<26}{p50:>10.0f}{p99:>10.0f}{len(times) / times.sum():>10.0f}")


if __name__ == "__main__":
    main()
