"""Remote control (rci) throughput and latency: requests per second and p50/p99 latency of
``STATE? <ch>`` for 1 and 16 concurrent clients while 1,000 simulated channels run in real time,
beside a bare asyncio line-echo server measured the same way in the same run.

- station: ``cellbench serve`` in its own process with a station file of 1,000 simulated
  channels on the real clock, a 1 s sample period, SQLite, and an ``[[interfaces]]`` rci section
  on a free loopback port; a test is started on every channel (``START`` over rci) and the
  measurement begins once all of them run.
- echo baseline: an asyncio streams server in its own process that answers every line with
  ``OK `` and the line (the least any line server does), on a free loopback port.
- clients: separate processes (``--client-processes``, each holding an equal share of the
  connections) of :class:`cellbench_rci.client.AsyncRciClient`, one outstanding command per
  connection (request, wait for the reply, next request), ``STATE? <ch>`` over every channel in
  turn. The same client code loads both servers, so the ratio is the servers' difference.
  Latency is taken per request, from the send to the reply.

    .venv/bin/python bench/bench_rci.py [--seconds 10] [--channels 1000] [--clients 1,16]

Prints a table and the ratios; asserts nothing about time. Targets (issue 6): with 16 clients
>= 20,000 commands/s and p99 < 2 ms, and >= 40 % of the echo server's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellbench_rci.client import AsyncRciClient

RESTING = "name: resting\nsteps:\n  - Rest for 1000 hours\n"
#: Seconds a load process runs before it starts counting (connections up, caches warm).
WARM_UP_S = 1.0
READY = re.compile(r"\brci tcp (\S+):(\d+)")


@dataclass
class Result:
    """What one load (one server, one client count) measured."""

    server: str
    clients: int
    requests: int
    seconds: float
    latencies_ns: np.ndarray
    server_cpu: float  # CPU time of the server process over the window, in cores
    window: tuple[float, float]  # Unix times of the measured window
    station_samples_per_s: float | None = None  # samples the station stored meanwhile

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ns, q)) / 1e6


# --- the processes the benchmark starts ---------------------------------------------------

async def serve_echo() -> None:
    """The baseline: answer every line with ``OK `` and the line, until stdin closes."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(b"OK " + line)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()


async def load(host: str, port: int, clients: int, channels: int, start_at: float,
               seconds: float, first_channel: int, output: Path) -> None:
    """``clients`` connections, each sending ``STATE? <ch>`` and awaiting the reply in a
    loop; from ``start_at`` + the warm-up for ``seconds``, every latency is recorded (ns) into
    ``output`` (a .npy file)."""
    connections = [await AsyncRciClient.connect(host, port) for _ in range(clients)]
    latencies: list[list[int]] = [[] for _ in range(clients)]
    begin = start_at + WARM_UP_S
    end = begin + seconds

    async def run(k: int) -> None:
        client, record = connections[k], latencies[k]
        commands = [f"STATE? {(first_channel + k + n) % channels + 1}"
                    for n in range(channels)]
        clock, wall = time.perf_counter_ns, time.time
        n = 0
        while (now := wall()) < end:
            sent = clock()
            reply = await client.command(commands[n % channels])
            if now >= begin:
                record.append(clock() - sent)
            if not reply.payload:
                raise RuntimeError(f"empty reply to {commands[n % channels]}")
            n += 1

    await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(run(k) for k in range(clients)))
    for client in connections:
        await client.close()
    np.save(output, np.concatenate([np.asarray(r, dtype=np.int64) for r in latencies]))


# --- the orchestration ------------------------------------------------------------------

def _python(*args: str) -> list[str]:
    return [sys.executable, __file__, *args]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server: str, port: int, server_pid: int, clients: int, processes: int,
            client_loop: str, channels: int, seconds: float, directory: Path) -> Result:
    """Run the load against ``port`` and measure it."""
    processes = max(1, min(processes, clients))
    start_at = time.time() + 2.0  # every load process connected by then
    shares = [clients // processes + (1 if p < clients % processes else 0)
              for p in range(processes)]
    outputs = [directory / f"{server}-{clients}-{p}.npy" for p in range(processes)]
    running = [subprocess.Popen(_python(
        "--load", f"127.0.0.1:{port}", "--clients", str(share), "--channels", str(channels),
        "--start-at", repr(start_at), "--seconds", repr(seconds),
        "--first-channel", str(sum(shares[:p]) * 37), "--output", str(out),
        "--client-loop", client_loop))
        for p, (share, out) in enumerate(zip(shares, outputs, strict=True))]
    begin = start_at + WARM_UP_S
    time.sleep(max(0.0, begin - time.time()))
    cpu_before = cpu_seconds(server_pid)
    time.sleep(seconds)
    cpu = (cpu_seconds(server_pid) - cpu_before) / seconds
    for process in running:
        if process.wait() != 0:
            raise RuntimeError(f"a load process against {server} failed")
    latencies = np.concatenate([np.load(out) for out in outputs])
    return Result(server, clients, len(latencies), seconds, latencies, cpu,
                  (begin, begin + seconds))


def stored_per_s(database: Path, window: tuple[float, float]) -> float:
    """Samples per second the station stored with a time stamp inside ``window``."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as con:
        (count,) = con.execute("SELECT count(*) FROM samples WHERE unix_time_s >= ? "
                               "AND unix_time_s < ?", window).fetchone()
    return int(count) / (window[1] - window[0])


def write_station(directory: Path, database: Path, channels: int) -> Path:
    """A station file: ``channels`` real-time sim channels, SQLite, rci on a free port."""
    plans = directory / "plans"
    plans.mkdir()
    (plans / "resting.yaml").write_text(RESTING, encoding="utf-8")
    station = directory / "station.toml"
    station.write_text(f"""\
[station]
name = "bench-rci"
database = "sqlite:///{database}"
sample_period = "1 s"
clock = "real"
plans_dir = "plans"

[[channels]]
driver = "sim"
[channels.settings]
count = {channels}

[[interfaces]]
kind = "rci"
[interfaces.settings]
tcp = "127.0.0.1:0"
""", encoding="utf-8")
    return station


def start_station(station: Path) -> tuple[subprocess.Popen[str], int]:
    """``cellbench serve`` on ``station``, once ready; and the rci port it reports."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from cellbench_core.cli import main; main()", "serve",
         "--station", str(station)], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if " ready: " in line:
            match = READY.search(line)
            if match is None:
                process.terminate()
                raise RuntimeError(f"the ready line names no rci port: {line.strip()}")
            # Keep reading its log, or a full pipe would stall the station.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, int(match[2])
    raise RuntimeError(f"cellbench serve exited with {process.wait()} before it was ready")


async def start_tests(port: int, channels: int) -> None:
    """Start the resting plan on every channel (pipelined), then wait until all run."""
    async with await AsyncRciClient.connect("127.0.0.1", port, timeout=120) as client:
        await asyncio.gather(*(client.command(f"START {ch} resting")
                               for ch in range(1, channels + 1)))
        while True:
            records = (await client.command("STATE? ALL")).payload.split(";")
            if sum(r.split(",")[1] == "running" for r in records) == channels:
                return
            await asyncio.sleep(0.2)


def report(results: Sequence[Result], channels: int) -> None:
    print()
    print("| server | clients | commands/s | p50 | p99 | max | server CPU | station samples/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        stored = "" if r.station_samples_per_s is None else f"{r.station_samples_per_s:,.0f}"
        print(f"| {r.server} | {r.clients} | {r.rate:,.0f} | {r.percentile_ms(50):.3f} ms | "
              f"{r.percentile_ms(99):.3f} ms | {r.percentile_ms(100):.1f} ms | "
              f"{r.server_cpu:.0%} | {stored} |")
    print(f"\n(station samples/s: samples stored with a time inside the window; the "
          f"{channels:,} channels take {channels:,} per second when they keep up)")
    by = {(r.server, r.clients): r for r in results}
    for clients in sorted({r.clients for r in results}):
        rci, echo = by.get(("rci", clients)), by.get(("echo", clients))
        if rci is not None and echo is not None:
            print(f"{clients} client(s): rci at {rci.rate / echo.rate:.0%} of the echo "
                  f"server's rate; p99 {rci.percentile_ms(99):.3f} ms against "
                  f"{echo.percentile_ms(99):.3f} ms")
    top = max(r.clients for r in results)
    rci, echo = by.get(("rci", top)), by.get(("echo", top))
    if rci is not None and echo is not None:
        met = (rci.rate >= 20_000, rci.percentile_ms(99) < 2.0, rci.rate >= 0.4 * echo.rate)
        print(f"targets with {top} clients: >= 20,000 commands/s {'met' if met[0] else 'MISSED'}"
              f", p99 < 2 ms {'met' if met[1] else 'MISSED'}, >= 40 % of echo "
              f"{'met' if met[2] else 'MISSED'}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per load")
    parser.add_argument("--channels", type=int, default=1000, help="simulated channels")
    parser.add_argument("--clients", default="1,16", help="client counts, comma-separated")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="processes the clients are spread over")
    parser.add_argument("--client-loop", choices=("asyncio", "uvloop"),
                        default="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
                        help="event loop of the client processes (default: uvloop if "
                             "installed, the cheapest load generator)")
    # The processes this benchmark starts itself:
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--first-channel", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_echo:
        asyncio.run(serve_echo())
        return
    if args.load:
        host, port = args.load.rsplit(":", 1)
        run = asyncio.run
        if args.client_loop == "uvloop":
            import uvloop
            run = uvloop.run
        run(load(host, int(port), int(args.clients), args.channels, args.start_at,
                         args.seconds, args.first_channel, args.output))
        return
    counts = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-rci-") as folder:
        directory = Path(folder)
        results: list[Result] = []
        echo = subprocess.Popen(_python("--serve-echo"), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert echo.stdout is not None and echo.stdin is not None
        echo_port = int(echo.stdout.readline())
        print(f"echo server on port {echo_port}; starting the station "
              f"({args.channels:,} channels)...", flush=True)
        database = directory / "station.sqlite3"
        station, port = start_station(write_station(directory, database, args.channels))
        try:
            asyncio.run(start_tests(port, args.channels))
            print(f"station ready on port {port}, {args.channels:,} tests running", flush=True)
            for clients in counts:
                for name, server_port, pid in (("echo", echo_port, echo.pid),
                                               ("rci", port, station.pid)):
                    result = measure(name, server_port, pid, clients, args.client_processes,
                                     args.client_loop, args.channels, args.seconds, directory)
                    print(f"  {name}, {clients} client(s): {result.rate:,.0f} commands/s",
                          flush=True)
                    results.append(result)
            time.sleep(2.0)  # the last window's samples committed
            for result in results:
                result.station_samples_per_s = stored_per_s(database, result.window)
        finally:
            station.send_signal(signal.SIGTERM)
            station.wait()
            echo.stdin.close()
            echo.wait()
        report(results, args.channels)


if __name__ == "__main__":
    main()
