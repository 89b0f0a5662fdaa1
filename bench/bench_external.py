"""External setpoints through rci: setpoints per second over one connection across channels, and
the setpoint-to-output latency, beside the station's ``STATE?`` rate on the same connection in
the same run.

- station: ``cellbench serve`` in a subprocess (bench_rci.start_station), ``--channels``
  simulated channels on the real clock sampled every ``--period``, each running a plan whose
  step is ``external`` (watchdog 10 s), the rci rate limit raised out of the way;
- throughput: one connection (the asyncio client library), ``SET <ch> CC <A>`` round-robin
  over the channels, closed loop (each command waits for its reply) and pipelined
  (``--window`` commands in flight); the same for ``STATE? <ch>`` as the baseline;
- latency: ``SET 1 CC <A>`` alternating between two currents on a second connection subscribed
  to channel 1: the reply (the setpoint applied to the channel: ``OK`` comes after the driver
  took it) and the first ``*SAMPLE`` measured under it (the output seen), as p50/p99 against the
  sample period.

    .venv/bin/python bench/bench_external.py [--channels 16] [--period "100 ms"] [--seconds 3]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_rci import start_station

from cellbench_core.storage import open_database
from cellbench_core.storage.queue import TestQueue
from cellbench_rci.client import AsyncRciClient
from cellbench_sdk.units import parse_duration

PLAN = """\
name: driven
capacity: 2.5 Ah
limits:
  voltage_max: 4.3 V
  current_max: 3 A
steps:
  - external: {watchdog: 10 s, for: 100 h}
"""


def queue_all(folder: Path, channels: int) -> None:
    """Queue the external plan for every channel before the station starts: it starts them
    all at its first tick."""
    db = open_database(f"sqlite:///{folder / 'bench.db'}")
    try:
        queue = TestQueue(db)
        for channel in range(1, channels + 1):
            queue.add(channel, PLAN, plan_source="driven.yaml")
    finally:
        db.close()


async def wait_external(rci: AsyncRciClient, channels: int) -> None:
    """Wait until every channel is in its external step."""
    deadline = time.monotonic() + 60
    while any(r[1] != "running" for r in (await rci.command("STATE? ALL")).records):
        assert time.monotonic() < deadline, "not every channel started"
        await asyncio.sleep(0.1)


async def rate(rci: AsyncRciClient, commands: list[str], window: int, seconds: float
               ) -> tuple[float, float, float]:
    """Commands per second and p50/p99 reply time (ms) of ``commands`` in turn, ``window`` in
    flight at once on one connection."""
    cycle = itertools.cycle(commands)
    latencies: list[float] = []
    until = time.perf_counter() + seconds

    async def worker() -> None:
        while (sent := time.perf_counter()) < until:
            await rci.command(next(cycle))
            latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(window)))
    elapsed = time.perf_counter() - started
    values = np.array(latencies) * 1000.0
    return len(values) / elapsed, float(np.percentile(values, 50)), \
        float(np.percentile(values, 99))


async def latency(port: int, rounds: int, period_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per setpoint: seconds to its reply (applied) and to the first sample measured under it.
    Each is sent at a random moment of a sample period, as a controller's would be."""
    phase = random.Random(21)
    samples: asyncio.Queue[tuple[float, float]] = asyncio.Queue()

    def pushed(line: str) -> None:
        words = line.split()
        if words[0] == "*SAMPLE":
            samples.put_nowait((time.perf_counter(), float(words[6])))

    rci = await AsyncRciClient.connect("127.0.0.1", port, on_push=pushed)
    applied, seen = [], []
    try:
        await rci.command("SUBSCRIBE 1")
        for n in range(rounds):
            amps = 0.5 if n % 2 else 1.0
            await asyncio.sleep(phase.uniform(0.0, period_s))
            while not samples.empty():
                samples.get_nowait()
            sent = time.perf_counter()
            await rci.command(f"SET 1 CC {amps}")
            applied.append(time.perf_counter() - sent)
            while True:
                at, current = await asyncio.wait_for(samples.get(), 10.0)
                if abs(current - amps) < 1e-9:
                    seen.append(at - sent)
                    break
    finally:
        await rci.close()
    return np.array(applied), np.array(seen)


async def measure(port: int, channels: int, window: int, seconds: float, rounds: int,
                  period_s: float
                  ) -> tuple[dict[str, tuple[float, float, float]], np.ndarray, np.ndarray]:
    """The rates of STATE? and SET, closed loop and ``window`` deep, and the latencies."""
    rci = await AsyncRciClient.connect("127.0.0.1", port, timeout=60)
    try:
        await wait_external(rci, channels)
        sets = [f"SET {ch} CC {amps}" for amps in (0.5, 1.0) for ch in range(1, channels + 1)]
        states = [f"STATE? {ch}" for ch in range(1, channels + 1)]
        results = {}
        for name, commands in (("STATE?", states), ("SET", sets)):
            for depth in (1, window):
                results[f"{name} x{depth}"] = await rate(rci, commands, depth, seconds)
        applied, seen = await latency(port, rounds, period_s)
        await rci.command("STATE? 1")  # the station is still serving every channel
    finally:
        await rci.close()
    return results, applied, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--period", default="100 ms")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--window", type=int, default=32, help="commands in flight")
    parser.add_argument("--rounds", type=int, default=40, help="setpoints timed for latency")
    args = parser.parse_args()
    period_s = parse_duration(args.period)
    with tempfile.TemporaryDirectory() as folder:
        queue_all(Path(folder), args.channels)
        station, port = start_station(Path(folder), args.channels, args.period)
        try:
            results, applied, seen = asyncio.run(measure(port, args.channels, args.window,
                                                         args.seconds, args.rounds, period_s))
        finally:
            station.send_signal(signal.SIGTERM)
            station.wait(120)
        db = open_database(f"sqlite:///{Path(folder) / 'bench.db'}")
        stored = sum(1 for e in db.events() if e.kind == "setpoint")
        db.close()
    print(f"{args.channels} simulated channels in external steps, sampled every {args.period} "
          f"on the real clock; one rci connection; {args.seconds:g} s per measurement; "
          f"{os.cpu_count()} cores")
    print(f"{'commands':<14}{'per s':>10}{'p50 ms':>9}{'p99 ms':>9}{'of STATE?':>11}")
    for name, (per_s, p50, p99) in results.items():
        depth = name.split(" ")[1]
        baseline = results[f"STATE? {depth}"][0]
        print(f"{name:<14}{per_s:>10,.0f}{p50:>9.2f}{p99:>9.2f}{per_s / baseline:>10.2f}x")
    print(f"setpoints stored as events: {stored:,}")
    for what, values in (("setpoint applied (reply)", applied),
                         ("first sample under it", seen)):
        p50, p99 = np.percentile(values * 1000.0, [50, 99])
        print(f"{what:<26} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
              f"(p99 {p99 / 1000.0 / period_s:.2f} sample periods)")


if __name__ == "__main__":
    main()
