"""A station database with running tests (a SQLite file, or a fresh PostgreSQL database on the
server on loopback, from the workspace's conftest.py), and the comparison of a database with its
backup.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from cellbench_core.storage import (
    Database,
    SampleRows,
    SampleWriter,
    StepRow,
    TestEnd,
    TestStart,
    open_database,
    schema,
)


class Bench:
    """A station's database and writer: tests that run, write samples with an aux signal, finish
    steps, and end."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.writer = SampleWriter(db)
        self.seq: dict[int, int] = {}
        self.steps: dict[int, int] = {}
        self.rng = np.random.default_rng(3)
        db.add_battery("cell-A", "LFP", 3.0)

    def start(self, count: int) -> list[int]:
        """Start ``count`` tests on new channels."""
        first = len(self.seq)
        ids = self.db.start_tests([TestStart(
            name=f"cycle {first + i}", channel=f"sim/{first + i}", driver="sim",
            battery="cell-A", plan_name="cycle", plan_source="cycle.yaml", plan_text="steps: []",
            sample_period_s=0.1, station="bench-1", start_unix_s=1.7e9) for i in range(count)])
        self.seq.update(dict.fromkeys(ids, 0))
        self.steps.update(dict.fromkeys(ids, 0))
        return ids

    def write(self, test_ids: list[int], ticks: int) -> None:
        """``ticks`` samples for each test, with an aux value on every second one, and a step
        summary over them; committed when this returns."""
        for test_id in test_ids:
            first = self.seq[test_id] + 1
            seq = np.arange(first, first + ticks, dtype=np.int64)
            n = len(seq)
            time_s = np.asarray(seq * 0.1, dtype=np.float64)
            values = self.rng.uniform(2.5, 4.2, (7, n))
            self.writer.submit(SampleRows(
                test_id=np.full(n, test_id, dtype=np.int64), seq=seq, test_time_s=time_s,
                unix_time_s=np.asarray(1.7e9 + time_s, dtype=np.float64), step_time_s=time_s,
                voltage_v=values[0], current_a=values[1], power_w=values[2],
                temperature_c=values[3], step_index=seq // 50, plan_line=seq // 50 + 3,
                cycle=seq // 200 + 1, ah=values[4], wh=values[5],
                aux={"cell_2_v": np.where(seq % 2 == 0, values[6], np.nan)}))
            self.steps[test_id] += 1
            self.writer.submit_step(StepRow(
                test_id=test_id, step_no=self.steps[test_id], step_index=0,
                plan_line=3, cycle=1, mode="cc", text="Charge at 1C until 4.2 V",
                start_seq=first, end_seq=int(seq[-1]), start_test_time_s=float(time_s[0]),
                end_test_time_s=float(time_s[-1]), ah=0.5, wh=1.9, end_reason="voltage"))
            self.seq[test_id] += ticks
        self.writer.flush()

    def finish(self, test_ids: list[int]) -> None:
        """End the tests (status ``finished``)."""
        self.db.finish_tests([TestEnd(t, "finished", "plan complete", 1.7e9 + 999)
                              for t in test_ids])


def _bench(url: str) -> Iterator[Bench]:
    station = Bench(open_database(url))
    yield station
    station.writer.close()
    station.db.close()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    """A station database in a SQLite file, with a battery and a running writer."""
    yield from _bench(f"sqlite:///{tmp_path / 'station.sqlite3'}")


@pytest.fixture
def postgres_bench(fresh_database: Callable[[str], str]) -> Iterator[Bench]:
    """A station database in a fresh PostgreSQL database, with a battery and a running writer."""
    yield from _bench(fresh_database("postgresql"))


def _normal(value: object) -> object:
    """Numbers as exact float text, so that 3 (INTEGER) and 3.0 (REAL) compare equal."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value).hex()
    return value


def digests(url: str) -> dict[str, tuple[int, str]]:
    """Per copied table: row count and SHA-256 of the rows in key order."""
    engine = sa.create_engine(url)
    found: dict[str, tuple[int, str]] = {}
    try:
        with engine.connect() as connection:
            for name in ("batteries", "channels", "tests", "events", "samples", "sample_aux",
                         "steps"):
                table = schema.metadata.tables[name]
                digest, count = hashlib.sha256(), 0
                for row in connection.execute(
                        sa.select(table).order_by(*table.primary_key.columns)):
                    digest.update(repr(tuple(map(_normal, row))).encode())
                    count += 1
                found[name] = (count, digest.hexdigest())
    finally:
        engine.dispose()
    return found


@pytest.fixture
def digest() -> Callable[[str], dict[str, tuple[int, str]]]:
    """:func:`digests`: ``digest(url)``."""
    return digests

