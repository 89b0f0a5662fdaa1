"""Station throughput: the highest sample rate a station sustains while persisting every sample,
beside the raw insert ceiling of the same database, measured in the same run.

For each database (a SQLite file; PostgreSQL and MariaDB/MySQL at CELLBENCH_TEST_POSTGRES_URL and
CELLBENCH_TEST_MYSQL_URL, loopback by default, each in a database created for the run and dropped
after it; an unreachable server is skipped with the reason):

- ceiling: pre-built sample rows inserted with plain DBAPI ``executemany`` (PostgreSQL: binary
  ``COPY``), ``--commit-rows`` rows per commit;
- station: a Runner on the real clock with simulated channels sampled every ``--period``,
  every sample committed by the SampleWriter. Each trial starts its tests, lets the station
  settle for ``--warmup`` s (starting 100,000 tests writes 100,000 tests, events and positions,
  which the writer catches up on first), then measures ``--seconds``. The channel count grows
  by half until the station falls behind in that window (more than 2 % of ticks a period late,
  fewer samples than the channels and period promise, or a commit later than 1 s after its
  samples), then is bisected down to ``--resolution``; the highest rate it kept up with is the
  result;
- the raw ceiling again, with as many tests as the station kept up with, one row of each per
  tick, ``--shaped-ticks`` ticks, into the table the station filled: the same rows the station
  wrote, without the station.

    .venv/bin/python bench/bench_station.py [--period 1] [--seconds 6] [--backends sqlite,...]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from cellbench_core.plan import parse_plan
from cellbench_core.runner import ChannelRef, Runner, TestRequest
from cellbench_core.storage import Database, SampleWriter, TestStart, open_database
from cellbench_core.storage.schema import samples
from cellbench_hal import RealClock
from cellbench_sim.channel import SimChannels, SimChannelSettings

SERVERS = {
    "postgresql": ("CELLBENCH_TEST_POSTGRES_URL",
                   "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    "mysql": ("CELLBENCH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/"),
}
RESTING = "name: resting\nsteps:\n  - Rest for 1000 hours\n"
#: Channels per simulated driver (one driver holds at most 100,000).
DRIVER_CHANNELS = 50_000
#: A commit later than this after its samples were taken counts as falling behind.
MAX_COMMIT_LATENCY_S = 1.0


class Unreachable(Exception):
    """The database server cannot be reached."""


@contextmanager
def database(backend: str, directory: Path) -> Iterator[str]:
    """A URL of an empty database on ``backend``, dropped afterwards (server databases)."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'station.sqlite3'}"
        return
    variable, default = SERVERS[backend]
    server = sa.make_url(os.environ.get(variable, default))
    name = f"cellbench_bench_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            charset = " CHARACTER SET utf8mb4" if backend == "mysql" else ""
            connection.exec_driver_sql(f"CREATE DATABASE {name}{charset}")
    except sa.exc.OperationalError as err:
        engine.dispose()
        raise Unreachable(f"{variable}: {err.orig}") from None
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            connection.exec_driver_sql(f"DROP DATABASE {name}{force}")
        engine.dispose()


def ceiling(db: Database, rows: int, commit_rows: int, tests: int = 1000) -> float:
    """Rows per second of plain executemany (PostgreSQL: COPY) of ready-made sample rows of
    ``tests`` tests, one row of each per tick."""
    ids = db.start_tests([
        TestStart(name=f"raw {n}", channel=f"raw/{n}", driver="raw", battery=None,
                  plan_name="raw", plan_source="raw", plan_text="", sample_period_s=1.0,
                  station="bench", start_unix_s=time.time()) for n in range(tests)])
    ticks = rows // tests
    rng = np.random.default_rng(1)
    seq = np.repeat(np.arange(1, ticks + 1), tests)
    test_id = np.tile(np.array(ids), ticks)
    t = seq.astype(float)
    columns: list[list[Any]] = [
        test_id.tolist(), seq.tolist(), t.tolist(), (1.7e9 + t).tolist(), t.tolist(),
        (3 + rng.random(len(seq))).tolist(), (rng.random(len(seq)) - 0.5).tolist(),
        rng.random(len(seq)).tolist(), (25 + rng.random(len(seq))).tolist(),
        [0] * len(seq), [1] * len(seq), [0] * len(seq),
        rng.random(len(seq)).tolist(), rng.random(len(seq)).tolist()]
    data = list(zip(*columns, strict=True))
    dialect = db.engine.dialect
    names = ", ".join(c.name for c in samples.columns)
    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        started = time.perf_counter()
        for start in range(0, len(data), commit_rows):
            chunk = data[start:start + commit_rows]
            if dialect.name == "postgresql":
                with cursor.copy(f"COPY samples ({names}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["int4", "int8", *["float8"] * 7, "int4", "int4", "int4",
                                    "float8", "float8"])
                    for row in chunk:
                        copy.write_row(row)
            else:
                mark = "?" if dialect.paramstyle == "qmark" else "%s"
                cursor.executemany(f"INSERT INTO samples ({names}) VALUES "
                                   f"({', '.join([mark] * len(columns))})", chunk)
            connection.commit()
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return len(data) / elapsed


def sim_channels(count: int) -> tuple[list[SimChannels], list[ChannelRef]]:
    """``count`` simulated channels: as few drivers as hold them, and the channels' references
    (numbered from 1)."""
    drivers = [SimChannels(SimChannelSettings(count=min(DRIVER_CHANNELS, count - first)))
               for first in range(0, count, DRIVER_CHANNELS)]
    refs = [ChannelRef(k * DRIVER_CHANNELS + n + 1, d, "sim", n)
            for k, d in enumerate(drivers) for n in range(len(d.channels))]
    return drivers, refs


def station_trial(db: Database, channels: int, period: float, seconds: float, warmup: float
                  ) -> tuple[float, bool, str]:
    """Run ``channels`` real-time simulated channels, let them settle for ``warmup`` s after
    their tests started, then watch them for ``seconds``; return their sample rate, whether the
    station kept up with it (committing every sample), and why not."""
    plan = parse_plan(RESTING, source="resting.yaml")
    drivers, refs = sim_channels(channels)
    clock = RealClock()
    writer = SampleWriter(db)
    runner = Runner(db, writer, clock, sample_period_s=period)

    async def main() -> tuple[int, int, int, float]:
        for driver in drivers:
            await driver.open(clock)
        try:
            task = asyncio.create_task(runner.run([TestRequest(ref, plan) for ref in refs]))
            await asyncio.sleep(0)  # the tests start
            # Starting 100,000 tests writes 100,000 test rows, events and positions: the
            # station catches up on that first, which is start-up, not the rate it sustains.
            await asyncio.sleep(warmup)
            before = (runner.samples, runner.ticks, runner.overruns,
                      len(writer.commit_latency_s()))
            await asyncio.sleep(seconds)
            # Stopping thousands of tests commits their ends at once: not part of the window.
            latencies = writer.commit_latency_s()[before[3]:]
            window = (runner.samples - before[0], runner.ticks - before[1],
                      runner.overruns - before[2], max(latencies, default=math.inf))
            runner.stop(None, "benchmark over")
            await task
            return window
        finally:
            for driver in drivers:
                await driver.close()

    try:
        taken, ticks, late, latency = asyncio.run(main())
    finally:
        writer.close()
    promised = channels / period
    # The first and the last tick may fall outside the window: allow one tick less.
    expected = channels * (int(seconds / period) - 1)
    if late > 0.02 * ticks:  # a rare late tick (a GC pause) is no trend
        return promised, False, f"{late} of {ticks} ticks late"
    if taken < expected:
        return promised, False, f"{taken:,} of {expected:,} samples"
    if latency > MAX_COMMIT_LATENCY_S:
        return promised, False, f"a commit {latency:.2f} s after its samples"
    return promised, True, ""


def search(db: Database, backend: str, args: argparse.Namespace) -> tuple[float, int, str]:
    """Grow the channel count (x1.5) until the station falls behind, then bisect between the
    last count it kept up with and the first it did not, down to ``--resolution``; return the
    best rate it kept up with, its channel count, and the first count it fell behind at."""
    channels, kept, best = args.start_channels, 0, 0.0
    failed: tuple[int, str] | None = None
    while True:
        try:
            rate, ok, reason = station_trial(db, channels, args.period, args.seconds,
                                               args.warmup)
        except sa.exc.DBAPIError as err:
            ok, reason, rate = False, f"failed: {err.orig}", channels / args.period
        print(f"  {backend}: {channels:,} channels, {rate:,.0f} samples/s: "
              f"{'kept up' if ok else reason}", flush=True)
        if ok:
            best, kept = rate, channels
        else:
            failed = (channels, reason)
        if failed is None:
            if channels >= args.max_channels:
                return best, kept, f"stopped at --max-channels {args.max_channels:,}"
            channels = min(channels * 3 // 2, args.max_channels)
            continue
        if failed[0] - kept <= args.resolution * failed[0]:
            return best, kept, f"{failed[0]:,} channels fell behind: {failed[1]}"
        channels = (kept + failed[0]) // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--period", type=float, default=1.0, help="sample period, s")
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="length of each trial's measured window")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds each trial settles after its tests started, unmeasured")
    parser.add_argument("--start-channels", type=int, default=4000)
    parser.add_argument("--max-channels", type=int, default=200_000)
    parser.add_argument("--ceiling-rows", type=int, default=500_000)
    parser.add_argument("--commit-rows", type=int, default=20_000)
    parser.add_argument("--shaped-ticks", type=int, default=6,
                        help="rows per test of the ceiling measured with the kept test count")
    parser.add_argument("--backends", default="sqlite,postgresql,mysql")
    parser.add_argument("--resolution", type=float, default=0.05,
                        help="bisect until the kept and the failed count are this close")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        if backend != "sqlite" and backend not in SERVERS:
            parser.error(f"--backends: {backend!r} is not sqlite, postgresql or mysql")
    print(f"sample period {args.period:g} s, {args.warmup:g} s settling and {args.seconds:g} s "
          "measured per trial")
    print(f"{'database':<11} {'raw ceiling':>14} {'station':>14} {'channels':>9} "
          f"{'of ceiling':>11}")
    with tempfile.TemporaryDirectory() as directory:
        for backend in args.backends.split(","):
            try:
                with database(backend, Path(directory)) as url:
                    db = open_database(url)
                    try:
                        raw = ceiling(db, args.ceiling_rows, args.commit_rows)
                        print(f"  {backend}: raw ceiling {raw:,.0f} rows/s", flush=True)
                        best, kept, why = search(db, backend, args)
                        # The same raw inserts, as many tests as the station kept up with: how
                        # much of the difference is the scatter of that many tests' rows.
                        shaped = ceiling(db, max(args.ceiling_rows, args.shaped_ticks * kept),
                                         args.commit_rows,
                                         tests=kept) if kept else math.nan
                        print(f"  {backend}: raw ceiling with {kept:,} tests {shaped:,.0f} "
                              "rows/s", flush=True)
                    finally:
                        db.close()
            except Unreachable as err:
                print(f"{backend:<11} skipped: server unreachable ({err})")
                continue
            print(f"{backend:<11} {raw:>10,.0f} r/s {best:>10,.0f} r/s {kept:>9,} "
                  f"{best / raw:>10.0%}   ({why}); {best / shaped:.0%} of the ceiling with "
                  f"{kept:,} tests")


if __name__ == "__main__":
    main()
