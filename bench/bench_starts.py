"""Starts: how long a station takes to start many simulated tests at once, and whether queued
tests picked up together start within one sample period, on each database.

For each database (a SQLite file; PostgreSQL and MariaDB/MySQL at CELLBENCH_TEST_POSTGRES_URL
and CELLBENCH_TEST_MYSQL_URL, loopback by default, each in a database created for the run and
dropped after it; an unreachable server is skipped with the reason):

- start: a Runner on a virtual clock is handed ``--tests`` requests for simulated channels
  (50,000 per driver), one resting plan; the time from ``run()`` until the first tick's samples
  of all of them reach the runner's observer (their tests, events and first positions recorded,
  every plan resolved, every first step applied). Printed with the CPU time of the process over
  the same span, since other processes share the cores: the median of ``--runs`` runs, each on
  a database of its own;
- queue: ``--queued`` rows in the test queue, one per channel, are picked up by a serving
  station (``StationService``) on the real clock with a ``--period`` sample period; the spread
  of the tests' start times and the wall time from the station being ready to all of them
  running.

    .venv/bin/python bench/bench_starts.py [--tests 100000] [--runs 3] [--queued 1000]
        [--period 1] [--backends sqlite,postgresql,mysql]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_station import RESTING, SERVERS, Unreachable, database, sim_channels

from cellbench_core.plan import parse_plan
from cellbench_core.plugins import PluginManager
from cellbench_core.runner import Runner, TestRequest
from cellbench_core.service import StationService
from cellbench_core.station import Station, station_from_dict
from cellbench_core.storage import Database, SampleWriter, open_database
from cellbench_core.storage.queue import QueueStatus, TestQueue
from cellbench_hal import RealClock, VirtualClock


def start(db: Database, tests: int) -> tuple[float, float]:
    """Seconds (wall, CPU) from ``run()`` to the first samples of ``tests`` new tests."""
    plan = parse_plan(RESTING, source="resting.yaml")
    drivers, refs = sim_channels(tests)
    clock = VirtualClock()
    writer = SampleWriter(db)
    runner = Runner(db, writer, clock, sample_period_s=1.0)
    sampled = asyncio.Event()
    runner.observer = lambda channels, rows: sampled.set()

    async def main() -> tuple[float, float]:
        for driver in drivers:
            await driver.open(clock)
        requests = [TestRequest(ref, plan) for ref in refs]
        try:
            began, cpu = time.perf_counter(), time.process_time()
            task = asyncio.create_task(runner.run(requests))
            await sampled.wait()
            took = (time.perf_counter() - began, time.process_time() - cpu)
            runner.stop(None, "benchmark over")
            await task
            return took
        finally:
            for driver in drivers:
                await driver.close()

    try:
        return asyncio.run(main())
    finally:
        writer.close()


def queued(db: Database, count: int, period_s: float) -> tuple[float, float]:
    """Spread of the start times of ``count`` queued tests picked up together, and the wall
    time from the station being ready to all of them running."""
    config = station_from_dict({
        "station": {"name": "bench", "database": db.url, "sample_period": f"{period_s} s",
                    "queue_poll_interval": "0.05 s"},
        "channels": [{"driver": "sim", "settings": {"count": count}}],
    })
    manager = PluginManager()
    manager.load()
    service = StationService(Station(config, manager), db, RealClock(), manager.hook)
    queue = TestQueue(db)
    ids = [queue.add(channel, RESTING) for channel in range(1, count + 1)]

    def all_running() -> bool:
        return sum(entry.test_id is not None
                   for entry in queue.entries([QueueStatus.RUNNING])) == count

    async def main() -> float:
        task = asyncio.create_task(service.serve())
        await service.ready.wait()
        began = time.perf_counter()
        while not await asyncio.to_thread(all_running):
            if task.done():
                await task
                raise RuntimeError("the station stopped by itself")
            await asyncio.sleep(0.02)
        took = time.perf_counter() - began
        service.shutdown()
        await task
        return took

    took = asyncio.run(main())
    test_ids = {entry.test_id for entry in queue.entries() if entry.id in set(ids)}
    starts = np.array([t.start_unix_s for t in db.tests() if t.id in test_ids])
    return float(starts.max() - starts.min()), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3,
                        help="start: runs, each on a new database (the median is printed)")
    parser.add_argument("--queued", type=int, default=1000)
    parser.add_argument("--period", type=float, default=1.0, help="queue: sample period, s")
    parser.add_argument("--backends", default="sqlite,postgresql,mysql")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        if backend != "sqlite" and backend not in SERVERS:
            parser.error(f"--backends: {backend!r} is not sqlite, postgresql or mysql")
    with tempfile.TemporaryDirectory() as directory:
        for backend in args.backends.split(","):
            try:
                runs = []
                for _ in range(args.runs):
                    with database(backend, Path(directory)) as url:
                        db = open_database(url)
                        try:
                            runs.append(start(db, args.tests))
                        finally:
                            db.close()
                wall, cpu = (float(np.median(figures)) for figures in zip(*runs, strict=True))
                each = ", ".join(f"{w:.2f}" for w, _ in runs)
                print(f"{backend:<11} {args.tests:,} tests started in {wall:.2f} s "
                      f"(CPU {cpu:.2f} s; median of {args.runs}: {each} s)", flush=True)
                with database(backend, Path(directory)) as url:
                    db = open_database(url)
                    try:
                        spread, took = queued(db, args.queued, args.period)
                        print(f"{backend:<11} {args.queued:,} queued tests: start times within "
                              f"{spread:.3f} s ({spread / args.period:.2f} sample periods), "
                              f"all running {took:.2f} s after the station was ready",
                              flush=True)
                    finally:
                        db.close()
            except Unreachable as err:
                print(f"{backend:<11} skipped: server unreachable ({err})")


if __name__ == "__main__":
    main()
