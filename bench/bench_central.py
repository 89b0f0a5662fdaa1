"""Many stations into one central PostgreSQL database: per-station lag, the central server's CPU
and rows/s, against COPY's ceiling into the same central table in the same run.

Each station is its own process with its own SQLite database: one running test per channel, a
producer submitting one row per channel every 1/rate s through the SampleWriter (as the runner
does), and the ``central-sql`` target beside it (``run_sync`` in a thread, ``--interval``
between batches once caught up), exactly as ``cellbench serve`` runs a ``[[sync]]`` target. The
lag of a batch is the age of its oldest sample when the batch has committed centrally; p50/p95
are over a station's batches after ``--warmup`` s. The central CPU is the CPU time of the
PostgreSQL backends serving the run's database (from /proc; the server's shared background
processes are not counted), divided by the wall time: 1.0 = one core busy.

Then the same central ``samples`` table (with its indexes) takes rows by binary COPY from one
connection, as fast as it can, under an origin of its own: the ceiling the stations compare to.

With ``--find-limit``, runs follow with ``--step`` more stations each until the worst station's
p95 lag exceeds 1 s (or ``--max-stations``), each in a fresh central database.

    .venv/bin/python bench/bench_central.py [--stations 10] [--channels 1000] [--rate 1]
        [--seconds 30] [--find-limit] [--step 5] [--max-stations 40] [--quick]

The central database is a fresh database on the PostgreSQL server named by
CELLBENCH_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres),
dropped afterwards. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from bench_sync import copy_ceiling, fresh_postgres, start_tests, tick

from cellbench_core.storage import SampleWriter, open_database
from cellbench_core.synctargets import SyncReport, run_sync
from cellbench_sync_sql import central
from cellbench_sync_sql.settings import CentralSqlSettings
from cellbench_sync_sql.target import CentralSqlTarget

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class StationResult:
    """What one station process measured."""

    name: str
    lags_s: list[float]
    samples: int
    cpu_s: float


def station(name: str, url: str, channels: int, rate: float, seconds: float, warmup: float,
            interval: float, ready: mp.Queue, go: Event, results: mp.Queue) -> None:
    """One station process: write live data for ``seconds`` while syncing; report."""
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{Path(tmp) / 'station.sqlite3'}")
        test_ids = start_tests(db, channels)
        reports: list[tuple[float, SyncReport]] = []
        stop = threading.Event()
        target = CentralSqlTarget(CentralSqlSettings(url=url, station=name))
        syncer = threading.Thread(target=run_sync, args=(target, db), kwargs={
            "name": name, "interval_s": interval, "stop": stop,
            "on_report": lambda r: reports.append((time.monotonic(), r))})
        writer = SampleWriter(db)
        rng = np.random.default_rng(abs(hash(name)) % 2**32)
        syncer.start()
        ready.put(name)
        go.wait()
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        began = time.monotonic()
        seq = 0
        while time.monotonic() - began < seconds:
            seq += 1
            writer.submit(tick(test_ids, seq, time.time(), rng))
            time.sleep(max(0.0, began + seq / rate - time.monotonic()))
        writer.close()
        stop.set()
        syncer.join()
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        db.close()
    results.put(StationResult(
        name, [r.backlog_age_s for at, r in reports if r.samples and at - began >= warmup],
        sum(r.samples for _, r in reports),
        cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime))


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving one database, counted from :meth:`start`
    to :meth:`stop`: a thread looks for new backends every 0.2 s, so connections opened during
    the run count too (from when they were first seen; one that ends counts up to then)."""

    def __init__(self, url: str) -> None:
        self._engine = sa.create_engine(url)
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def start(self) -> None:
        self._look(started=False)
        self._thread.start()

    def stop(self) -> float:
        """Stop watching; the CPU seconds counted."""
        self._stop.set()
        self._thread.join()
        self._look(started=True)
        self._engine.dispose()
        return sum(self._last[pid] - self._first[pid] for pid in self._first)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            self._look(started=True)

    def _look(self, started: bool) -> None:
        with self._engine.connect() as connection:
            pids = [int(pid) for (pid,) in connection.execute(sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"))]
        for pid in pids:
            seconds = _cpu_seconds(pid)
            if seconds is None:
                continue
            # A backend first seen after the start began during the run.
            self._first.setdefault(pid, 0.0 if started else seconds)
            self._last[pid] = seconds


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (None once it has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def central_samples(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT COUNT(*) FROM samples")).scalar_one())
    finally:
        engine.dispose()


def run(url: str, stations: int, channels: int, rate: float, seconds: float, warmup: float,
        interval: float) -> float:
    """One run of ``stations`` stations; print its figures; return the worst station's p95."""
    engine = sa.create_engine(url)
    central.upgrade(engine)  # as `cellbench central upgrade` would, before stations connect
    engine.dispose()
    context = mp.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go = context.Event()
    names = [f"station-{n:02d}" for n in range(1, stations + 1)]
    processes = [context.Process(target=station, args=(
        name, url, channels, rate, seconds, warmup, interval, ready, go, results))
        for name in names]
    for process in processes:
        process.start()
    for _ in names:
        ready.get(timeout=300)
    time.sleep(1.0)  # every sync has opened its central connection
    backends = BackendCpu(url)
    before_rows = central_samples(url)
    backends.start()
    began = time.monotonic()
    go.set()
    measured = [results.get(timeout=seconds + 600) for _ in names]
    wall = time.monotonic() - began
    central_cpu = backends.stop()
    moved = central_samples(url) - before_rows
    for process in processes:
        process.join()
    offered = stations * channels * rate
    print(f"{stations} stations x {channels} channels x {rate:g} Hz ({offered:,.0f} samples/s "
          f"offered) for {seconds:g} s; load average {os.getloadavg()[0]:.1f} (other "
          f"programs share the {os.cpu_count()} cores too):")
    worst = 0.0
    all_lags: list[float] = []
    for result in sorted(measured, key=lambda r: r.name):
        lags = np.array(result.lags_s)
        all_lags += result.lags_s
        p50, p95 = (np.percentile(lags, 50), np.percentile(lags, 95)) if len(lags) else (0, 0)
        worst = max(worst, float(p95))
        print(f"  {result.name}: lag p50 {p50:.3f} s, p95 {p95:.3f} s over {len(lags)} "
              f"batches; station CPU {result.cpu_s / seconds:.2f} cores")
    station_cpu = sum(r.cpu_s for r in measured) / seconds
    print(f"  all stations: lag p50 {np.percentile(all_lags, 50):.3f} s, "
          f"p95 {np.percentile(all_lags, 95):.3f} s; worst station p95 {worst:.3f} s")
    print(f"  central: {moved / wall:,.0f} samples/s committed, PostgreSQL backends "
          f"{central_cpu / wall:.2f} cores; the station processes {station_cpu:.2f} cores "
          f"(of {os.cpu_count()})")
    return worst


def batch_cost(url: str, tests: int, samples_per_test: int, batches: int = 10) -> float:
    """The median time of one station's ``sync_once`` moving one new sample batch of
    ``samples_per_test`` samples for each of ``tests`` running tests (one station, alone)."""
    took: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{Path(tmp) / 'station.sqlite3'}")
        test_ids = start_tests(db, tests)
        writer = SampleWriter(db)
        rng = np.random.default_rng(4)
        target = CentralSqlTarget(CentralSqlSettings(url=url, station=f"cost-{tests}"))
        target.open()
        seq = 0
        for _ in range(batches):
            for _ in range(samples_per_test):
                seq += 1
                writer.submit(tick(test_ids, seq, time.time(), rng))
            writer.flush()
            began = time.monotonic()
            target.sync_once(db)
            took.append(time.monotonic() - began)
        target.close()
        writer.close()
        db.close()
    return float(np.median(took))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--channels", type=int, default=1000, help="channels per station")
    parser.add_argument("--rate", type=float, default=1.0, help="samples per channel per s")
    parser.add_argument("--seconds", type=float, default=30.0, help="live phase duration")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of batches left out of the lag figures")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="each target's wait between batches once caught up (the "
                             "[[sync]] interval)")
    parser.add_argument("--copy-rows", type=int, default=2_000_000,
                        help="samples for the COPY ceiling")
    parser.add_argument("--find-limit", action="store_true",
                        help="add --step stations per run until p95 lag exceeds 1 s")
    parser.add_argument("--step", type=int, default=5)
    parser.add_argument("--max-stations", type=int, default=40)
    parser.add_argument("--quick", action="store_true",
                        help="3 stations x 100 channels for 8 s, a small ceiling")
    args = parser.parse_args()
    if args.quick:
        args.stations, args.channels, args.seconds, args.warmup = 3, 100, 8.0, 2.0
        args.copy_rows, args.find_limit = 200_000, False
    stations = args.stations
    while True:
        with fresh_postgres() as url:
            worst = run(url, stations, args.channels, args.rate, args.seconds, args.warmup,
                        args.interval)
            ceiling = copy_ceiling(url, np.arange(1, 11), args.copy_rows)
            offered = stations * args.channels * args.rate
            print(f"  COPY ceiling into the same central table: {ceiling:,.0f} samples/s; "
                  f"the stations' live rate is {offered / ceiling:.1%} of it")
            # What a batch costs: the same 1,000 samples in fewer, longer tests.
            costs = {tests: batch_cost(url, tests, 1000 // tests) for tests in (1000, 100, 10)}
            print("  one station's batch of 1,000 new samples (read locally, written "
                  "centrally): " + ", ".join(f"{tests:,} tests x {1000 // tests}: "
                                             f"{cost * 1000:.0f} ms"
                                             for tests, cost in costs.items()))
        if not args.find_limit or worst > 1.0 or stations >= args.max_stations:
            break
        stations += args.step
    if args.find_limit:
        print(f"p95 lag {'first exceeds' if worst > 1.0 else 'stays within'} 1 s at "
              f"{stations} stations x {args.channels} channels x {args.rate:g} Hz")


if __name__ == "__main__":
    main()
