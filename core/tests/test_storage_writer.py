"""The sample writer and reading samples and steps back, on every backend (see conftest.py)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pytest
import sqlalchemy as sa

from cellbench_core.storage import (
    Database,
    PositionRow,
    SampleRows,
    SampleWriter,
    StepRow,
    StorageError,
)

NewTest = Callable[..., int]
MakeRows = Callable[..., SampleRows]

# Long enough for the writer thread to reach its INSERT and block on a lock held by the test;
# the assertions hold whether or not it got there.
SETTLE_S = 0.3


def _select(rows: SampleRows, test_id: int, name: str) -> np.ndarray:
    column: np.ndarray = getattr(rows, name)
    selected: np.ndarray = column[rows.test_id == test_id]
    return selected


@contextlib.contextmanager
def _samples_locked(db: Database) -> Iterator[None]:
    """Hold a lock that keeps other connections from inserting samples."""
    with db.engine.connect() as connection:
        name = db.engine.dialect.name
        if name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif name == "postgresql":
            connection.exec_driver_sql("LOCK TABLE samples IN SHARE MODE")
        else:
            connection.exec_driver_sql("LOCK TABLES samples READ")
        try:
            yield
        finally:
            if name == "mysql":
                connection.exec_driver_sql("UNLOCK TABLES")
            connection.rollback()


def _count(db: Database, table: str, where: str = "1 = 1") -> int:
    with db.engine.connect() as connection:
        return int(
            connection.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE {where}")).scalar_one()
        )


def test_samples_round_trip_exactly(db: Database, new_test: NewTest, make_rows: MakeRows) -> None:
    first, second = new_test(), new_test()
    batches = [make_rows([first, second], 1, 30), make_rows([first, second], 31, 20)]
    writer = SampleWriter(db)
    for batch in batches:
        writer.submit(batch)
    writer.close()
    assert writer.committed() == {first: 50, second: 50}

    stored = db.samples(first)
    assert list(stored) == [
        "seq", "test_time_s", "unix_time_s", "step_time_s", "voltage_v", "current_a",
        "power_w", "temperature_c", "step_index", "plan_line", "cycle", "ah", "wh",
    ]  # fmt: skip
    for name, column in stored.items():
        expected = np.concatenate([_select(batch, first, name) for batch in batches])
        assert column.dtype == (np.int64 if expected.dtype.kind == "i" else np.float64), name
        np.testing.assert_array_equal(column, expected, err_msg=name)
    chosen = db.samples(second, ["voltage_v", "seq"])
    assert list(chosen) == ["voltage_v", "seq"]
    np.testing.assert_array_equal(chosen["seq"], np.arange(1, 51))


def test_reading_samples_names_what_is_wrong(db: Database, new_test: NewTest) -> None:
    test_id = new_test()
    assert all(len(column) == 0 for column in db.samples(test_id).values())
    with pytest.raises(ValueError, match=f"test {test_id} has no sample column 'volts'"):
        db.samples(test_id, ["volts"])
    with pytest.raises(StorageError, match="no test with id 4242"):
        db.samples(4242)


def test_aux_values_are_stored_where_present(
    db: Database, new_test: NewTest, make_rows: MakeRows
) -> None:
    test_id = new_test()
    rows = make_rows([test_id], 1, 10, aux=True)
    with contextlib.closing(SampleWriter(db)) as writer:
        writer.submit(rows)
    assert _count(db, "sample_aux") == 5  # the NaN half is not stored
    stored = db.samples(test_id)
    np.testing.assert_array_equal(stored["cell_2_v"], rows.aux["cell_2_v"])
    np.testing.assert_array_equal(
        db.samples(test_id, ["cell_2_v"])["cell_2_v"], rows.aux["cell_2_v"]
    )


def test_non_finite_measurements_are_stored_as_null(
    db: Database, new_test: NewTest, make_rows: MakeRows
) -> None:
    test_id = new_test()
    rows = make_rows([test_id], 1, 4)
    rows.temperature_c[[0, 2]] = np.nan
    rows.voltage_v[1] = np.inf
    with contextlib.closing(SampleWriter(db)) as writer:
        writer.submit(rows)
    assert _count(db, "samples", "temperature_c IS NULL") == 2
    assert _count(db, "samples", "voltage_v IS NULL") == 1
    stored = db.samples(test_id, ["temperature_c", "voltage_v"])
    np.testing.assert_array_equal(np.isnan(stored["temperature_c"]), [True, False, True, False])
    np.testing.assert_array_equal(np.isnan(stored["voltage_v"]), [False, True, False, False])


def test_numpy_columns_are_stored_as_plain_numbers(
    db: Database, new_test: NewTest, make_rows: MakeRows
) -> None:
    test_id = new_test()
    rows = make_rows([test_id], 1, 3)
    rows.cycle = rows.cycle.astype(np.int32)  # any integer width is accepted
    rows.current_a = rows.current_a.astype(np.float32)
    with contextlib.closing(SampleWriter(db)) as writer:
        writer.submit(rows)
        writer.submit_step(
            StepRow(
                test_id,
                np.int64(1),  # type: ignore[arg-type]
                0,
                3,
                1,
                "cc",
                "cc",
                1,
                3,
                0.0,
                np.float64(0.3),
                0.1,
                0.4,
                "time",
            )
        )
    with db.engine.connect() as connection:
        seq, cycle, voltage, current = connection.execute(
            sa.text("SELECT seq, cycle, voltage_v, current_a FROM samples WHERE seq = 1")
        ).one()
        step_no, end_time = connection.execute(
            sa.text("SELECT step_no, end_test_time_s FROM steps")
        ).one()
        if db.engine.dialect.name == "sqlite":
            kinds = connection.execute(
                sa.text(
                    "SELECT DISTINCT typeof(seq), typeof(cycle), typeof(voltage_v) FROM samples"
                )
            ).all()
            assert [tuple(k) for k in kinds] == [("integer", "integer", "real")]
    assert (type(seq), type(cycle), type(voltage), type(current)) == (int, int, float, float)
    assert (type(step_no), type(end_time)) == (int, float)
    assert (seq, cycle, voltage, current) == (1, 1, rows.voltage_v[0], float(rows.current_a[0]))


def test_steps_round_trip(db: Database, new_test: NewTest, make_rows: MakeRows) -> None:
    test_id = new_test()
    first = StepRow(
        test_id=test_id,
        step_no=1,
        step_index=0,
        plan_line=4,
        cycle=1,
        mode="cc",
        text="Charge at 1C until 4.2 V",
        start_seq=1,
        end_seq=10,
        start_test_time_s=0.0,
        end_test_time_s=0.9,
        ah=0.125,
        wh=0.5,
        end_reason="voltage >= 4.2 V",
    )
    second = replace(first, step_no=2, step_index=1, start_seq=11, end_seq=20, ah=0.0, wh=np.nan)
    with contextlib.closing(SampleWriter(db)) as writer:
        writer.submit(make_rows([test_id], 1, 10))
        writer.submit_step(first)
        writer.submit(make_rows([test_id], 11, 10))
        writer.submit_step(second)
    stored = db.steps(test_id)
    assert stored[0] == first
    assert replace(stored[1], wh=0.0) == replace(second, wh=0.0)
    assert np.isnan(stored[1].wh)  # NaN is stored as NULL and read back as NaN
    assert db.steps(test_id + 1) == []


def test_interleaved_tests_keep_their_own_sequences(
    db: Database, new_test: NewTest, make_rows: MakeRows
) -> None:
    test_ids = [new_test(f"t{n}") for n in range(12)]
    expected: dict[int, list[np.ndarray]] = {t: [] for t in test_ids}
    seq = dict.fromkeys(test_ids, 1)
    commits: list[dict[int, int]] = []
    producers = [test_ids[:7], test_ids[5:]]  # two runners, two tests shared: separate ticks
    with contextlib.closing(SampleWriter(db, on_commit=commits.append)) as writer:
        for tick in range(40):
            group = producers[tick % 2] if tick % 5 else test_ids
            rows = make_rows(group, 1, 1)
            rows.seq[:] = [seq[t] for t in group]
            for t in group:
                expected[t].append(rows.voltage_v[rows.test_id == t])
                seq[t] += 1
            writer.submit(rows)
    assert writer.committed() == {t: seq[t] - 1 for t in test_ids}
    assert commits  # called after each commit with the positions it made
    assert {k: v for c in commits for k, v in c.items()} == writer.committed()
    for t in test_ids:
        stored = db.samples(t, ["seq", "voltage_v"])
        np.testing.assert_array_equal(stored["seq"], np.arange(1, seq[t]))
        np.testing.assert_array_equal(stored["voltage_v"], np.concatenate(expected[t]))


def test_committed_advances_only_after_commit(
    db: Database, new_test: NewTest, make_rows: MakeRows
) -> None:
    test_id = new_test()
    seen: list[tuple[int, int]] = []

    def check_visible(positions: dict[int, int]) -> None:
        # Acknowledged rows must already be visible to every other connection.
        seen.append((positions[test_id], _count(db, "samples", f"test_id = {test_id}")))

    writer = SampleWriter(db, on_commit=check_visible)
    try:
        with _samples_locked(db):
            writer.submit(make_rows([test_id], 1, 5))
            with pytest.raises(TimeoutError, match="5 sample rows still uncommitted"):
                writer.flush(timeout=SETTLE_S)
            assert writer.committed() == {}
            assert seen == []
        writer.flush()
        assert writer.committed() == {test_id: 5}
        for tick in range(6, 30):
            writer.submit(make_rows([test_id], tick, 1))
        writer.flush()
    finally:
        writer.close()
    assert writer.committed() == {test_id: 29}
    assert all(acknowledged <= visible for acknowledged, visible in seen)
    latencies = writer.commit_latency_s()
    assert len(latencies) == len(seen)
    assert all(latency >= 0.0 for latency in latencies)


def test_a_writer_failure_is_raised_not_swallowed(
    db: Database, new_test: NewTest, make_rows: MakeRows
) -> None:
    test_id = new_test()
    writer = SampleWriter(db)
    writer.submit(make_rows([test_id], 1, 3))
    writer.flush()
    writer.submit(make_rows([test_id], 3, 2))  # seq 3 again: violates the primary key
    with pytest.raises(StorageError, match="the sample writer failed") as failure:
        writer.flush()
    assert "IntegrityError" in repr(failure.value) or "UniqueViolation" in repr(failure.value)
    with pytest.raises(StorageError, match="the sample writer failed"):
        writer.submit(make_rows([test_id], 5, 1))
    with pytest.raises(StorageError, match="the sample writer failed"):
        writer.close()
    with pytest.raises(StorageError, match="the sample writer failed"):
        writer.close()
    assert writer.committed() == {test_id: 3}
    assert _count(db, "samples") == 3  # the failed transaction left nothing behind


def test_submit_blocks_while_too_many_rows_are_pending(
    db: Database, new_test: NewTest, make_rows: MakeRows
) -> None:
    test_id = new_test()
    entered, release = threading.Event(), threading.Event()

    def hold(_positions: dict[int, int]) -> None:
        entered.set()
        release.wait()

    writer = SampleWriter(db, max_pending_rows=10, on_commit=hold)
    try:
        writer.submit(make_rows([test_id], 1, 5))
        assert entered.wait(30)  # committed; the writer thread now waits in on_commit
        writer.submit(make_rows([test_id], 6, 6))  # 6 pending
        blocked = threading.Thread(target=writer.submit, args=(make_rows([test_id], 12, 5),))
        blocked.start()
        blocked.join(SETTLE_S)
        assert blocked.is_alive()  # 6 + 5 rows would exceed max_pending_rows
        with pytest.raises(TimeoutError):
            writer.flush(timeout=0.01)
        release.set()
        blocked.join()
        writer.flush()
        assert writer.committed() == {test_id: 16}
    finally:
        release.set()
        writer.close()
    # A single batch larger than the limit still goes through when nothing else is pending.
    with contextlib.closing(SampleWriter(db, max_pending_rows=2)) as big:
        big.submit(make_rows([test_id], 17, 4))
    assert _count(db, "samples") == 20


def test_flush_and_close_are_idempotent(
    db: Database, new_test: NewTest, make_rows: MakeRows
) -> None:
    test_id = new_test()
    writer = SampleWriter(db)
    writer.flush()
    writer.submit(make_rows([test_id], 1, 2))
    writer.flush()
    writer.flush()
    writer.close()
    writer.close()
    writer.flush()
    with pytest.raises(StorageError, match="the sample writer is closed"):
        writer.submit(make_rows([test_id], 3, 1))
    with pytest.raises(StorageError, match="the sample writer is closed"):
        writer.submit_step(StepRow(test_id, 1, 0, 1, 1, "rest", "", 1, 2, 0.0, 0.1, 0.0, 0.0, ""))
    assert writer.committed() == {test_id: 2}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"voltage_v": np.zeros(2)}, r"SampleRows.voltage_v has 2 rows but test_id has 3"),
        ({"seq": np.arange(3.0)}, r"SampleRows.seq must hold signed integer numbers, not float64"),
        ({"cycle": np.ones(3, np.uint64)}, r"SampleRows.cycle must hold signed integer numbers"),
        ({"ah": np.zeros((3, 1))}, r"SampleRows.ah must be a one-dimensional numpy array"),
        ({"aux": {"x": np.zeros(2)}}, r"SampleRows.aux\['x'\] has 2 rows"),
        ({"aux": {"cycle": np.zeros(3)}}, r"'cycle' is the name of a sample column"),
        ({"aux": {"x" * 65: np.zeros(3)}}, r"a signal name must be a string of 1 to 64"),
    ],
)
def test_bad_sample_rows_are_named(
    make_rows: MakeRows, change: dict[str, object], message: str
) -> None:
    rows = make_rows([1, 2, 3], 1, 1)
    with pytest.raises(ValueError, match=message):
        replace(rows, **change)  # type: ignore[arg-type]


def test_deferred_calls_run_after_the_samples_before_them(
    db: Database, new_test: NewTest, make_rows: MakeRows
) -> None:
    test_id = new_test()
    seen: list[int] = []
    with contextlib.closing(SampleWriter(db)) as writer:
        writer.submit(make_rows([test_id], 1, 7))
        writer.submit_call(lambda: seen.append(_count(db, "samples", f"test_id = {test_id}")))
        writer.submit_call(lambda: db.finish_test(test_id, "finished", "plan complete", 1.0))
        writer.submit(make_rows([test_id], 8, 3))
        writer.flush()
        assert seen == [7]  # the call saw every sample submitted before it, none after
        assert writer.committed() == {test_id: 10}
    finished = db.test(test_id)
    assert finished is not None and finished.end_reason == "plan complete"


def test_a_failing_deferred_call_is_raised(db: Database) -> None:
    writer = SampleWriter(db)
    writer.submit_call(lambda: db.finish_test(424242, "finished", "x", 1.0))
    with pytest.raises(StorageError, match="no test with id 424242"):
        writer.flush()
    with pytest.raises(StorageError):
        writer.close()


def test_batch_makes_one_transaction_and_rolls_back_whole(db: Database) -> None:
    with db.batch():
        db.ensure_channel("b1", "sim", {})
        db.ensure_channel("b2", "sim", {})
    assert _count(db, "channels", "name IN ('b1', 'b2')") == 2
    with pytest.raises(StorageError), db.batch():
        db.ensure_channel("b3", "sim", {})
        db.add_battery("dup", "NMC", 1.0)
        db.add_battery("dup", "NMC", 1.0)
    assert _count(db, "channels", "name = 'b3'") == 0
    assert db.battery("dup") is None


def test_positions_replace_each_tests_previous_one(db: Database, new_test: NewTest) -> None:
    """More positions than one statement takes, two per test in one commit and a third in the
    next: each test keeps only its newest."""
    tests = [new_test(name=f"t{n}") for n in range(150)]
    writer = SampleWriter(db)
    try:
        for step in (1, 2):
            writer.submit_positions([
                PositionRow(test_id, step, 10 * step, 1.7e9 + step,
                            {"step": step, "note": "ünïcode"}) for test_id in tests])
        writer.flush()
        writer.submit_positions([PositionRow(tests[7], 3, 30, 1.7e9 + 3, {"step": 3})])
        writer.flush()
    finally:
        writer.close()
    assert _count(db, "test_positions") == len(tests)
    for test_id in tests:
        position = db.position(test_id)
        assert position is not None
        if test_id == tests[7]:
            assert (position.step_no, position.start_seq, position.state) == (3, 30, {"step": 3})
        else:
            assert (position.step_no, position.start_seq) == (2, 20)
            assert position.unix_time_s == 1.7e9 + 2
            assert position.state == {"step": 2, "note": "ünïcode"}


def test_postgresql_plans_each_statement_for_its_parameters(db: Database) -> None:
    """A prepared IN-list lookup planned once for any parameters compares every row with the
    whole list: the engine asks PostgreSQL for a plan per execution instead."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL setting")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW plan_cache_mode").scalar_one() == (
            "force_custom_plan")
