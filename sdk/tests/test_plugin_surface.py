"""The SDK's plugin surface beyond device drivers: chunked sample reads, the replacing write of
sync changes, the notifier base class and the station name for plugin commands."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer

from cellbench_core.plugins import PluginManager
from cellbench_sdk import Alarm, PlanMessage, StepChanged, TestFinished, TestStarted, TestStatus
from cellbench_sdk.cli import station_name
from cellbench_sdk.notify import EVENT_HOOKS, Notifier
from cellbench_sdk.storage import (
    Database,
    SampleRows,
    SampleWriter,
    StorageError,
    TestStart,
    open_database,
    read_sample_chunk,
    sample_chunks,
)
from cellbench_sdk.sync import IN_LIST_KEYS, Changes, Row, write_changes


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'station.db'}")
    yield database
    database.close()


def _store_test(db: Database, samples: int) -> int:
    """A test with ``samples`` samples; aux ``cell_c`` on every third sample from seq 2."""
    [test_id] = db.start_tests([TestStart(
        name="t", channel="bench/1", driver="sim", battery=None, plan_name="p",
        plan_source="p.yaml", plan_text="", sample_period_s=1.0, station="lab",
        start_unix_s=1_700_000_000.0)])
    seq = np.arange(1, samples + 1, dtype=np.int64)
    floats = seq.astype(np.float64)
    ints = np.zeros(samples, dtype=np.int64)
    aux = np.full(samples, np.nan)
    aux[1::3] = floats[1::3] / 10
    writer = SampleWriter(db)
    writer.submit(SampleRows(
        test_id=np.full(samples, test_id, dtype=np.int64), seq=seq, test_time_s=floats,
        unix_time_s=floats + 1.7e9, step_time_s=floats, voltage_v=floats,
        current_a=floats, power_w=floats, temperature_c=floats, step_index=ints,
        plan_line=ints, cycle=ints, ah=floats, wh=floats, aux={"cell_c": aux}))
    writer.close()
    return test_id


def test_sample_chunks_read_a_test_in_order_a_bounded_chunk_at_a_time(db: Database) -> None:
    test_id = _store_test(db, 10)
    chunks = list(sample_chunks(db, test_id, chunk_rows=4))
    assert [chunk.columns["seq"].tolist() for chunk in chunks] == [
        [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert chunks[0].columns["seq"].dtype == np.int64
    assert "test_id" not in chunks[0].columns
    # An aux signal comes with each chunk holding a value of it, NaN where a sample has none.
    np.testing.assert_array_equal(chunks[1].aux["cell_c"], [0.5, np.nan, np.nan, 0.8])
    assert chunks[2].aux == {}
    assert [c.columns["seq"].tolist() for c in sample_chunks(db, test_id, after_seq=8)] == [
        [9, 10]]
    assert len(read_sample_chunk(db, test_id, after_seq=10)) == 0
    with pytest.raises(StorageError, match="no test with id 99"):
        next(sample_chunks(db, 99))
    with pytest.raises(ValueError, match="limit must be at least 1"):
        read_sample_chunk(db, test_id, limit=0)


class _Recorder:
    """A row sink that records what it is asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def delete_ids(self, table: str, ids: list[int]) -> None:
        self.calls.append(("delete_ids", table, (ids[0], ids[-1], len(ids))))

    def delete_ranges(self, table: str, key: str, ranges: list[tuple[int, int, int]]) -> None:
        self.calls.append(("delete_ranges", f"{table}.{key}", ranges))

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        self.calls.append(("insert", table, len(rows)))

    def savepoint(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


def test_write_changes_replaces_rows_by_key_in_foreign_key_order() -> None:
    changes = Changes(
        batteries=[(i,) for i in range(IN_LIST_KEYS + 5, 0, -1)],  # any order, chunked sorted
        tests=[(7,)],
        samples=[(7, 3), (7, 4), (9, 1)],
        steps=[(9, 2)],
        sample_ranges={9: (1, 1), 7: (3, 4)},
        step_ranges={9: (2, 2)},
    )
    sink = _Recorder()
    write_changes(changes, sink)
    assert sink.calls == [
        ("delete_ids", "batteries", (1, IN_LIST_KEYS, IN_LIST_KEYS)),
        ("delete_ids", "batteries", (IN_LIST_KEYS + 1, IN_LIST_KEYS + 5, 5)),
        ("insert", "batteries", IN_LIST_KEYS + 5),
        ("delete_ids", "tests", (7, 7, 1)),
        ("insert", "tests", 1),
        ("delete_ranges", "samples.seq", [(7, 3, 4), (9, 1, 1)]),
        ("insert", "samples", 3),
        ("delete_ranges", "sample_aux.seq", [(7, 3, 4), (9, 1, 1)]),
        ("delete_ranges", "steps.step_no", [(9, 2, 2)]),
        ("insert", "steps", 1),
    ]


class _Kept(Notifier):
    """Passes on test starts and ends only."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def test_started(self, event: TestStarted) -> None:
        self.seen.append(f"started {event.test_id}")

    def test_finished(self, event: TestFinished) -> None:
        self.seen.append(f"{event.status} {event.test_id}")


def test_a_notifier_receives_the_events_it_overrides_through_the_hooks() -> None:
    manager = PluginManager()
    notifier = _Kept()
    manager.hooks.register(notifier, name="notifiers[0] (kept)")
    manager.hooks.check_pending()  # every hook the base class implements has a spec
    assert {impl.plugin_name for name in EVENT_HOOKS
            for impl in getattr(manager.hook, name).get_hookimpls()} == {"notifiers[0] (kept)"}
    hook = manager.hook
    hook.cellbench_test_started(event=TestStarted(3, "1", "t", "p", None, 0.0))
    hook.cellbench_step_changed(event=StepChanged(3, "1", 1, 4, 0, "Rest", 1.0))
    hook.cellbench_message(event=PlanMessage(3, "1", 5, "swap the cell"))
    hook.cellbench_alarm(event=Alarm("1", 3, "too hot"))
    hook.cellbench_test_finished(event=TestFinished(3, "1", TestStatus.STOPPED, "by hand", 2.0))
    assert notifier.seen == ["started 3", "stopped 3"]
    assert notifier.close() is None


def test_station_name_comes_from_the_station_file(tmp_path: Path) -> None:
    station = tmp_path / "station.toml"
    station.write_text('[station]\nname = "lab-7"\n')
    assert station_name(station) == "lab-7"
    assert station_name(None)
    with pytest.raises(typer.Exit) as raised:
        station_name(tmp_path / "missing.toml")
    assert raised.value.exit_code == 2
