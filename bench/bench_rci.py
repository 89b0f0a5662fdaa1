"""rci throughput: requests per second and p50/p99 latency of ``STATE? <ch>`` with 1 and 16
concurrent clients while a station runs 1,000 simulated channels in real time, beside a bare
asyncio line-echo server measured with the same clients in the same run.

- station: ``cellbench serve`` in a subprocess, ``--channels`` simulated channels on the real
  clock sampled every ``--period`` (each running a test), the rci interface on loopback with
  its rate limit raised out of the way (the limit is per client, and the bench wants the
  server's ceiling);
- baseline: the same machine's bare asyncio echo server (a protocol that writes back each line),
  in a subprocess of its own;
- clients: closed-loop connections (send a command, wait for its reply, send the next), spread
  over ``--client-processes`` processes running uvloop, so that the clients are not what limits.
  Every client asks for its own channel in turn.

    .venv/bin/python bench/bench_rci.py [--channels 1000] [--seconds 5] [--client-processes 2]

Prints figures; asserts nothing about time. Client processes share the machine's two cores with
the server, as a LIMS on the control PC would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

PLAN = """\
name: long charge
capacity: 2.5 Ah
steps:
  - Charge at 0.1C for 100 hours
"""


# ---- the bare echo server (baseline) -----------------------------------------------------------

class _Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.transport.write(line + b"\n")


async def _echo_server() -> None:
    server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


# ---- the clients -------------------------------------------------------------------------------

class _Client(asyncio.Protocol):
    """One closed-loop connection: a command, its reply, the next command."""

    def __init__(self, commands: list[bytes], until: float, latencies: list[float]) -> None:
        self.commands, self.until, self.latencies = commands, until, latencies
        self.done = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.n = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport  # uvloop's transports are no asyncio.Transport subclass
        self._send()

    def _send(self) -> None:
        self.sent = time.perf_counter()
        self.transport.write(self.commands[self.n % len(self.commands)])
        self.n += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            now = time.perf_counter()
            if line.startswith(b"ERR"):
                self.done.set_exception(RuntimeError(line.decode()))
                return
            self.latencies.append(now - self.sent)
            if now >= self.until:
                self.transport.close()
                if not self.done.done():
                    self.done.set_result(None)
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed by the server"))


async def _clients(port: int, connections: int, first: int, channels: int, start_at: float,
                   seconds: float) -> list[float]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    await asyncio.sleep(max(0.0, start_at - time.time()))
    until = time.perf_counter() + seconds
    protocols = []
    for c in range(connections):
        channel = (first + c) % channels + 1
        commands = [f"STATE? {channel}\n".encode()]
        _, protocol = await loop.create_connection(
            lambda commands=commands: _Client(commands, until, latencies), "127.0.0.1", port)
        protocols.append(protocol)
    await asyncio.gather(*(p.done for p in protocols))
    return latencies


def _client_main(args: argparse.Namespace) -> None:
    import uvloop

    latencies = uvloop.run(_clients(args.port, args.connections, args.first, args.channels,
                                    args.start_at, args.seconds))
    json.dump(latencies, sys.stdout)


def measure(port: int, clients: int, processes: int, channels: int, seconds: float
            ) -> tuple[float, float, float]:
    """Commands per second and p50/p99 latency (ms) of ``clients`` closed-loop connections."""
    processes = min(processes, clients)
    start_at = time.time() + 1.0  # every process connects first, then all start together
    procs = []
    for p in range(processes):
        share = clients // processes + (1 if p < clients % processes else 0)
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--client", "--port", str(port), "--connections",
             str(share), "--first", str(p * 97), "--channels", str(channels), "--start-at",
             str(start_at), "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True))
    latencies: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        if proc.returncode:
            raise RuntimeError(f"a client process failed with {proc.returncode}")
        latencies += json.loads(out)
    values = np.array(latencies) * 1000.0
    return len(values) / seconds, float(np.percentile(values, 50)), \
        float(np.percentile(values, 99))


def start_station(folder: Path, channels: int, period: str) -> tuple[subprocess.Popen[str], int]:
    station = folder / "station.toml"
    station.write_text(f"""\
[station]
name = "bench"
database = "sqlite:///{folder / 'bench.db'}"
sample_period = "{period}"

[[channels]]
driver = "sim"
[channels.settings]
count = {channels}

[[interfaces]]
kind = "rci"
[interfaces.settings]
tcp = "127.0.0.1:0"
rate = 1000000
""", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-c", "from cellbench_core.cli import main; main()", "serve",
         "--station", str(station)], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"interfaces: rci tcp 127\.0\.0\.1:([0-9]+)", line)
        if found:
            # Keep reading its log, or the station blocks once the pipe is full.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, int(found[1])
    raise RuntimeError(f"cellbench serve exited with {process.wait()}")


def queue_all(folder: Path, channels: int) -> None:
    """Queue the long test for every channel before the station starts (as any tool may, by
    inserting into test_queue): it starts them all at its first tick."""
    from cellbench_core.storage import open_database
    from cellbench_core.storage.queue import TestQueue

    db = open_database(f"sqlite:///{folder / 'bench.db'}")
    try:
        queue = TestQueue(db)
        for channel in range(1, channels + 1):
            queue.add(channel, PLAN, plan_source="long.yaml")
    finally:
        db.close()


def wait_running(port: int) -> None:
    """Wait until every channel runs its test."""
    from cellbench_rci.client import RciClient

    with RciClient.connect("127.0.0.1", port, timeout=60) as rci:
        deadline = time.monotonic() + 60
        while any(r[1] != "running" for r in rci.command("STATE? ALL").records):
            assert time.monotonic() < deadline, "not every channel started"
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--period", default="1 s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        asyncio.run(_echo_server())
        return
    if args.client:
        _client_main(args)
        return

    echo = subprocess.Popen([sys.executable, __file__, "--echo"], stdout=subprocess.PIPE,
                            text=True)
    assert echo.stdout is not None
    echo_port = int(echo.stdout.readline())
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    try:
        for clients in (1, 16):
            results[("echo", clients)] = measure(echo_port, clients, args.client_processes,
                                                 args.channels, args.seconds)
    finally:
        echo.kill()
        echo.wait()
    with tempfile.TemporaryDirectory() as folder:
        queue_all(Path(folder), args.channels)
        station, port = start_station(Path(folder), args.channels, args.period)
        try:
            wait_running(port)
            for clients in (1, 16):
                results[("station", clients)] = measure(port, clients, args.client_processes,
                                                        args.channels, args.seconds)
        finally:
            station.send_signal(signal.SIGTERM)
            station.wait(120)
    print(f"{args.channels} simulated channels sampled every {args.period} on the real clock; "
          f"{args.seconds:g} s per measurement; {os.cpu_count()} cores")
    print(f"{'server':<10}{'clients':>8}{'commands/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'of echo':>9}")
    for (server, clients), (rate, p50, p99) in results.items():
        share = rate / results[("echo", clients)][0]
        print(f"{server:<10}{clients:>8}{rate:>12,.0f}{p50:>9.3f}{p99:>9.3f}{share:>9.0%}")


if __name__ == "__main__":
    main()
