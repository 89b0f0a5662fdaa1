"""Database fixtures: every test on each backend — a SQLite file per test, and the session's
databases on the PostgreSQL and MariaDB/MySQL servers (from the workspace's conftest.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from cellbench_core.storage import Database, SampleRows, TestStart, open_database
from cellbench_core.storage.schema import metadata

SERVER_FIXTURES = {"postgresql": "postgres_url", "mysql": "mysql_url"}  # ../../conftest.py


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.server),
        pytest.param("mysql", marks=pytest.mark.server),
    ]
)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on each backend; the server databases are emptied after each test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'cellbench.sqlite3'}"
        return
    url: str = request.getfixturevalue(SERVER_FIXTURES[request.param])
    yield url
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                if sa.inspect(connection).has_table(table.name):
                    connection.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture
def db(storage_url: str) -> Iterator[Database]:
    """An open, migrated database on each backend."""
    database = open_database(storage_url)
    yield database
    database.close()


NewTest = Callable[..., int]
MakeRows = Callable[..., SampleRows]


@pytest.fixture
def new_test(db: Database) -> NewTest:
    """Create a running test on its own channel: ``new_test(name="t", battery=None) -> id``."""

    def create(name: str = "test", battery: str | None = None) -> int:
        channel = f"sim/{uuid.uuid4().hex[:8]}"
        db.ensure_channel(channel, "sim", {"cells": 1})
        start = TestStart(name=name, channel=channel, driver="sim", battery=battery,
                          plan_name="cycle", plan_source="plans/cycle.yaml",
                          plan_text="steps: []\n", sample_period_s=0.1, station="bench-1",
                          start_unix_s=1.7e9)
        return db.start_tests([start])[0]

    return create


@pytest.fixture
def make_rows() -> MakeRows:
    """Build interleaved samples: ``make_rows(test_ids, first_seq, ticks, aux=False)`` gives
    ``ticks`` rows per test (one per test per tick), random measurements."""
    rng = np.random.default_rng(7)

    def make(test_ids: Sequence[int], first_seq: int, ticks: int, aux: bool = False) -> SampleRows:
        seq = np.repeat(np.arange(first_seq, first_seq + ticks, dtype=np.int64), len(test_ids))
        n = len(seq)
        time_s = np.asarray(seq * 0.1, dtype=np.float64)
        return SampleRows(
            test_id=np.tile(np.asarray(test_ids, dtype=np.int64), ticks),
            seq=seq,
            test_time_s=time_s,
            unix_time_s=np.asarray(1.7e9 + time_s, dtype=np.float64),
            step_time_s=np.asarray(time_s % 60.0, dtype=np.float64),
            voltage_v=rng.uniform(2.5, 4.2, n),
            current_a=rng.uniform(-5.0, 5.0, n),
            power_w=rng.uniform(-20.0, 20.0, n),
            temperature_c=rng.normal(25.0, 2.0, n),
            step_index=seq // 10,
            plan_line=seq // 10 + 3,
            cycle=seq // 100 + 1,
            ah=rng.normal(0.0, 1.0, n),
            wh=rng.normal(0.0, 4.0, n),
            aux={"cell_2_v": np.where(seq % 2 == 0, rng.uniform(2.5, 4.2, n), np.nan)}
            if aux
            else {},
        )

    return make

