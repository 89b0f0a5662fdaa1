"""Sync to a central SQL server: lag and throughput at ``--channels`` × ``--rate`` Hz, and how fast
a backlog drains compared with the live data rate.

1. Live: a producer submits one row per channel every 1/rate s (measured now) into a SQLite
   station database through the SampleWriter, for ``--seconds``, while the central-sql target
   runs beside it (``run_sync``, 0.1 s interval). The lag of a batch is the age of its oldest
   sample when the batch has committed centrally (the largest lag in the batch); p50/p95 are over
   batches.
2. Ceiling: ready-made sample rows of the same tests (as many as the backlog, at most 2
   million) copied into the central ``samples`` table with psycopg's binary ``COPY``, 200,000
   rows per commit: what the central server takes at most, measured in the same run.
3. Catch-up: ``--backlog-minutes`` of data at the same rate are written while nothing syncs;
   then the producer goes on live at the rate while a fresh target drains the backlog (live
   first, backlog behind). The drain rate (samples moved until the target has caught up, over
   the time it took) is compared with the ceiling and the live rate; the live lag is the age
   of the oldest live row of each round when it committed (p50/p95 over rounds).

    .venv/bin/python bench/bench_sync.py [--channels 1000] [--rate 10] [--seconds 20]
        [--backlog-minutes 5] [--central URL]

The central database defaults to a fresh database on the PostgreSQL server named by
CELLBENCH_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres),
dropped afterwards. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from cellbench_core.storage import Database, SampleRows, SampleWriter, TestStart, open_database
from cellbench_core.storage.pgcopy import copy_rows
from cellbench_core.synctargets import SyncReport, run_sync
from cellbench_sync_sql import central
from cellbench_sync_sql.settings import CentralSqlSettings
from cellbench_sync_sql.target import CentralSqlTarget


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new database on the PostgreSQL test server; dropped afterwards."""
    server = sa.make_url(os.environ.get("CELLBENCH_TEST_POSTGRES_URL",
                                        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    name = f"cellbench_bench_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        engine.dispose()


def start_tests(db: Database, channels: int) -> np.ndarray:
    """One running test per channel; their ids."""
    ids = db.start_tests([
        TestStart(name=f"bench {n}", channel=f"bench/{n}", driver="bench", battery=None,
                  plan_name="bench", plan_source="bench", plan_text="", sample_period_s=0.1,
                  station="bench", start_unix_s=time.time())
        for n in range(channels)])
    return np.array(ids, dtype=np.int64)


def tick(test_ids: np.ndarray, seq: int, unix_time_s: float, rng: np.random.Generator
         ) -> SampleRows:
    """One row per channel, as the runner submits them every tick."""
    n = len(test_ids)
    t = np.full(n, seq * 0.1)
    return SampleRows(
        test_id=test_ids, seq=np.full(n, seq, dtype=np.int64), test_time_s=t,
        unix_time_s=np.full(n, unix_time_s), step_time_s=t, voltage_v=3.0 + rng.random(n),
        current_a=rng.random(n) - 0.5, power_w=rng.random(n), temperature_c=25 + rng.random(n),
        step_index=np.zeros(n, dtype=np.int64), plan_line=np.ones(n, dtype=np.int64),
        cycle=np.ones(n, dtype=np.int64), ah=rng.random(n), wh=rng.random(n))


def live(db: Database, url: str, test_ids: np.ndarray, rate: float, seconds: float) -> int:
    """Write live data while syncing; print lag and throughput; return the last seq."""
    reports: list[tuple[float, SyncReport]] = []
    stop = threading.Event()
    target = CentralSqlTarget(CentralSqlSettings(url=url, station="bench"))
    syncer = threading.Thread(target=run_sync, args=(target, db), kwargs={
        "name": "central", "interval_s": 0.1, "stop": stop,
        "on_report": lambda r: reports.append((time.monotonic(), r))})
    writer = SampleWriter(db)
    rng = np.random.default_rng(1)
    syncer.start()
    began = time.monotonic()
    seq = 0
    while time.monotonic() - began < seconds:
        seq += 1
        writer.submit(tick(test_ids, seq, time.time(), rng))
        next_tick = began + seq / rate
        time.sleep(max(0.0, next_tick - time.monotonic()))
    writer.close()
    stop.set()
    syncer.join()
    lags = np.array([r.backlog_age_s for _, r in reports if r.samples])
    moved = sum(r.samples for _, r in reports)
    print(f"live: {len(test_ids)} channels x {rate:g} Hz for {seconds:g} s: "
          f"{moved:,} samples synced in {len(lags)} batches")
    if len(lags):
        print(f"  lag measured-to-central (oldest sample of each batch): "
              f"p50 {np.percentile(lags, 50):.3f} s, p95 {np.percentile(lags, 95):.3f} s, "
              f"max {lags.max():.3f} s")
    return seq


class Producer:
    """Submits one row per channel every 1/rate s on its own thread until stopped."""

    def __init__(self, db: Database, test_ids: np.ndarray, rate: float, first_seq: int) -> None:
        self.seq = first_seq
        self._writer = SampleWriter(db)
        self._stop = threading.Event()
        self._args = (test_ids, rate)
        self._thread = threading.Thread(target=self._run, name="producer")
        self._thread.start()

    def _run(self) -> None:
        test_ids, rate = self._args
        rng = np.random.default_rng(3)
        began, first = time.monotonic(), self.seq
        while not self._stop.is_set():
            self.seq += 1
            self._writer.submit(tick(test_ids, self.seq, time.time(), rng))
            self._stop.wait(max(0.0, began + (self.seq - first) / rate - time.monotonic()))

    def stop(self) -> int:
        """Stop; the last seq submitted (every row committed)."""
        self._stop.set()
        self._thread.join()
        self._writer.close()
        return self.seq


def copy_ceiling(url: str, test_ids: np.ndarray, rows: int) -> float:
    """Rows per second of binary COPY of ready-made sample rows into the central table."""
    ticks = max(1, rows // len(test_ids))
    rng = np.random.default_rng(4)
    seq = np.repeat(np.arange(1, ticks + 1), len(test_ids))
    t = seq.astype(float)
    n = len(seq)
    data = list(zip(["ceiling"] * n, np.tile(test_ids, ticks).tolist(), seq.tolist(),
                    t.tolist(), (1.7e9 + t).tolist(), t.tolist(), (3 + rng.random(n)).tolist(),
                    (rng.random(n) - 0.5).tolist(), rng.random(n).tolist(),
                    (25 + rng.random(n)).tolist(), [0] * n, [1] * n, [1] * n,
                    rng.random(n).tolist(), rng.random(n).tolist(), strict=True))
    engine = sa.create_engine(url)
    try:
        central.upgrade(engine)
        began = time.monotonic()
        for start in range(0, n, 200_000):
            with engine.begin() as connection:
                cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                copy_rows(cursor, connection.dialect, central.samples, data[start:start + 200_000])
        took = time.monotonic() - began
        with engine.begin() as connection:
            connection.execute(sa.delete(central.samples)
                               .where(central.samples.c.origin == "ceiling"))
    finally:
        engine.dispose()
    return n / took


def catch_up(db: Database, url: str, test_ids: np.ndarray, rate: float, minutes: float,
             first_seq: int) -> None:
    """Write a backlog with nothing syncing, then drain it while live data goes on."""
    ticks = int(minutes * 60 * rate)
    writer = SampleWriter(db)
    rng = np.random.default_rng(2)
    began = time.monotonic()
    # A day offline, compressed: the backlog's rows carry the times they would have had.
    start_unix = time.time() - ticks / rate
    for n, seq in enumerate(range(first_seq + 1, first_seq + ticks + 1)):
        writer.submit(tick(test_ids, seq, start_unix + n / rate, rng))
    writer.close()
    rows = ticks * len(test_ids)
    print(f"backlog: {minutes:g} min of data, {rows:,} samples, written locally in "
          f"{time.monotonic() - began:.1f} s")
    top = copy_ceiling(url, test_ids, min(rows, 2_000_000))
    print(f"  ceiling: binary COPY of ready-made rows into the central samples table: "
          f"{top:,.0f} samples/s")
    reports: list[tuple[float, SyncReport]] = []
    drained = threading.Event()

    def on_report(result: SyncReport) -> None:
        reports.append((time.monotonic(), result))
        if result.caught_up:
            drained.set()

    producer = Producer(db, test_ids, rate, first_seq + ticks)
    target = CentralSqlTarget(CentralSqlSettings(url=url, station="bench"))
    stop = threading.Event()
    syncer = threading.Thread(target=run_sync, args=(target, db), kwargs={
        "name": "central", "interval_s": 0.1, "stop": stop, "on_report": on_report})
    began = time.monotonic()
    syncer.start()
    drained.wait()
    took = time.monotonic() - began
    time.sleep(3.0)  # live alone for a moment after the catch-up
    last_seq = producer.stop()
    stopped, seen = time.monotonic(), len(reports)
    # Until the target holds the last live rows too: caught up in a round begun after the stop.
    while sum(at > stopped and r.caught_up for at, r in reports[seen:]) < 2:
        time.sleep(0.05)
    stop.set()
    syncer.join()
    moved = sum(r.samples for at, r in reports if at - began <= took)
    live_lags = np.array([r.live_age_s for at, r in reports if at - began <= took
                          and r.live_age_s > 0])
    live_rate = len(test_ids) * rate
    print(f"  drained with live data going on: {moved:,} samples in {took:.1f} s = "
          f"{moved / took:,.0f} samples/s = {moved / took / top:.0%} of the ceiling, "
          f"{moved / took / live_rate:.1f}x the live rate ({live_rate:,.0f}/s); "
          f"one hour would drain in {took * 60 / minutes / 60:.1f} min")
    if len(live_lags):
        print(f"  live lag during the drain (oldest live row of each of {len(live_lags)} "
              f"rounds): p50 {np.percentile(live_lags, 50):.2f} s, "
              f"p95 {np.percentile(live_lags, 95):.2f} s, max {live_lags.max():.2f} s")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            held = connection.execute(sa.select(sa.func.count()).select_from(central.samples)
                                      .where(central.samples.c.origin == "bench")).scalar()
    finally:
        engine.dispose()
    print(f"  central holds {held:,} samples of the station's {len(test_ids) * last_seq:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="samples per channel per s")
    parser.add_argument("--seconds", type=float, default=20.0, help="live phase duration")
    parser.add_argument("--backlog-minutes", type=float, default=5.0)
    parser.add_argument("--central", help="central database URL (default: fresh PostgreSQL)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{Path(tmp) / 'station.sqlite3'}")
        try:
            with (fresh_postgres() if args.central is None
                  else contextmanager(lambda: iter([args.central]))()) as url:
                test_ids = start_tests(db, args.channels)
                seq = live(db, url, test_ids, args.rate, args.seconds)
                catch_up(db, url, test_ids, args.rate, args.backlog_minutes, seq)
        finally:
            db.close()


if __name__ == "__main__":
    main()
