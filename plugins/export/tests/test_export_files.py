"""The ``basytec-files`` sync target: each test's file follows the running test, carries on
after a restart or a crash mid-line without repeating a sample, and ends up equal to a one-shot
export."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cellbench_core.plugins import PluginManager
from cellbench_core.storage import SampleRows, SampleWriter, TestEnd, open_database
from cellbench_export import BdfFormat, write_basytec, write_bdf
from cellbench_export.files import BasytecFilesTarget
from cellbench_sdk import Kind
from cellbench_sdk.sync import SyncReport, run_sync
from cellbench_sdk.testing import SyncTargetContract

StartTest = Callable[..., int]
Batch = Callable[..., SampleRows]

AUX = {"chamber_temperature_c": 30.0}


def make_target(folder: Path) -> BasytecFilesTarget:
    manager = PluginManager()
    manager.load()
    target = manager.registry.get(Kind.SYNC_TARGET, "basytec-files").create(
        {"folder": str(folder), "station": "lab-7"})
    assert isinstance(target, BasytecFilesTarget)
    return target


def test_settings_are_checked() -> None:
    manager = PluginManager()
    manager.load()
    descriptor = manager.registry.get(Kind.SYNC_TARGET, "basytec-files")
    with pytest.raises(ValueError, match="folder"):
        descriptor.create({})
    with pytest.raises(ValueError, match="station"):
        descriptor.create({"folder": "out", "station": "../elsewhere"})


def test_files_follow_running_tests_across_restarts_and_end_complete(
        tmp_path: Path, start_test: StartTest, batch: Batch) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'station.db'}")
    first, second = start_test(db, name="first"), start_test(db, name="second")
    writer = SampleWriter(db)
    folder = tmp_path / "files"

    def grow(first_seq: int, rows: int, step: int, **aux: float) -> None:
        for test_id in (first, second):
            writer.submit(batch(test_id, first_seq, rows, step, aux=aux))
        writer.flush()

    for round_no, (first_seq, step) in enumerate(((1, 0), (41, 1))):
        stop, moved = threading.Event(), threading.Event()
        rows: list[int] = []

        def count(report: SyncReport, rows: list[int] = rows, moved: threading.Event = moved
                  ) -> None:
            rows.append(report.rows)
            if sum(rows) >= 80:  # 40 samples of each test
                moved.set()

        target = make_target(folder)
        thread = threading.Thread(target=run_sync, args=(target, db), kwargs={
            "name": "files", "interval_s": 0.01, "stop": stop, "on_report": count})
        thread.start()
        try:
            grow(first_seq, 25, step, bms_soc=0.5)
            if round_no:  # a new aux signal: the file is rewritten with its column
                grow(first_seq + 25, 15, step, bms_soc=0.5, **AUX)
            else:
                grow(first_seq + 25, 15, step, bms_soc=0.5)
            assert moved.wait(30), rows  # the running sync wrote them while the test ran
        finally:
            stop.set()
            thread.join()
        # What one sync left must be what a fresh export of the running test writes.
        run_sync(target, db, name="files", once=True)
        for test_id in (first, second):
            write_basytec(db, test_id, tmp_path / "now.txt")
            assert target.path(test_id).read_bytes() == (tmp_path / "now.txt").read_bytes()
        # A crash in the middle of appending a line: the next start cuts it off.
        with target.path(first).open("ab") as file:
            file.write(b"81\t81\t24.11.2026 ")

    writer.submit_call(lambda: db.finish_tests([TestEnd(first, "finished", "done", 1.7e9 + 500)]))
    grow(81, 10, 2, bms_soc=0.5, **AUX)
    writer.submit_call(lambda: db.finish_tests([TestEnd(second, "stopped", "by hand", 1.7e9 + 9)]))
    writer.close()
    run_sync(make_target(folder), db, name="files", once=True)
    for test_id in (first, second):
        write_basytec(db, test_id, tmp_path / "end.txt")
        assert make_target(folder).path(test_id).read_bytes() == (
            tmp_path / "end.txt").read_bytes()
    assert b"~Status:    finished" in make_target(folder).path(first).read_bytes()
    # A file whose test has ended is left alone, and a stranger's file is replaced.
    ended = make_target(folder).path(first)
    ended.write_bytes(ended.read_bytes() + b"kept as it is\n")
    make_target(folder).path(second).write_bytes(b"not a result file\n")
    run_sync(make_target(folder), db, name="files", once=True)
    assert ended.read_bytes().endswith(b"kept as it is\n")
    assert make_target(folder).path(second).read_bytes() == (tmp_path / "end.txt").read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == [f"lab-7-{first}.txt",
                                                         f"lab-7-{second}.txt"]
    db.close()


@pytest.mark.parametrize("form", ["parquet", "csv"])
def test_bdf_files_appear_complete_once_each_test_ends(
        tmp_path: Path, start_test: StartTest, batch: Batch, form: str) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'station.db'}")
    ended, running = start_test(db, name="ended"), start_test(db, name="running")
    writer = SampleWriter(db)
    for test_id in (ended, running):
        writer.submit(batch(test_id, 1, 30, 0, aux={"bms_soc": 0.5}))
    writer.submit_call(lambda: db.finish_tests([TestEnd(ended, "finished", "done", 1.7e9)]))
    writer.close()
    manager = PluginManager()
    manager.load()
    descriptor = manager.registry.get(Kind.SYNC_TARGET, "bdf-files")
    folder = tmp_path / "bdf"
    target = descriptor.create({"folder": str(folder), "station": "lab-7", "format": form})
    run_sync(target, db, name="bdf", once=True)
    assert [p.name for p in folder.iterdir()] == [f"lab-7-{ended}.{form}"]
    write_bdf(db, ended, tmp_path / f"one-shot.{form}", BdfFormat(form))
    assert (folder / f"lab-7-{ended}.{form}").read_bytes() == (
        tmp_path / f"one-shot.{form}").read_bytes()
    # An existing file is a test already written: a restarted target leaves it alone.
    (folder / f"lab-7-{ended}.{form}").write_bytes(b"kept")
    run_sync(descriptor.create({"folder": str(folder), "station": "lab-7", "format": form}),
             db, name="bdf", once=True)
    assert (folder / f"lab-7-{ended}.{form}").read_bytes() == b"kept"
    db.close()


class TestBasytecFiles(SyncTargetContract):
    """The ``basytec-files`` target keeps the sync-target contract, as a station builds it."""

    plugin = "cellbench_export.plugin"
    name = "basytec-files"
    entry_point = "export"

    @pytest.fixture
    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"folder": str(tmp_path / "results"), "station": "lab-7"}


class TestBdfFiles(TestBasytecFiles):
    """The ``bdf-files`` target keeps the sync-target contract, in both file formats."""

    name = "bdf-files"

    @pytest.fixture(params=["parquet", "csv"])
    def settings(self, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
        return {"folder": str(tmp_path / "results"), "station": "lab-7", "format": request.param}
