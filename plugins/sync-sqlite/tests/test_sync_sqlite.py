"""The sqlite-backup target: the backup equals the station database, made from SQLite (backup
API, then increments) or from a server database; a reader of the backup always finds it
consistent while it is updated; a SIGKILLed backup process leaves a consistent file that
resumes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from cellbench_sdk.sync import refused_rows, run_sync
from cellbench_sdk.testing import SyncTargetContract
from cellbench_sync_sqlite.settings import SqliteBackupSettings
from cellbench_sync_sqlite.target import SqliteBackupTarget


def backup(bench: Any, path: Path, max_rows: int = 200_000) -> None:
    """Run a fresh target until the backup holds everything committed."""
    target = SqliteBackupTarget(SqliteBackupSettings(path=path, max_rows=max_rows))
    run_sync(target, bench.db, name="backup", once=True)


class TestSqliteBackup(SyncTargetContract):
    """The ``sqlite-backup`` target keeps the sync-target contract, as a station builds it."""

    plugin = "cellbench_sync_sqlite.plugin"
    name = "sqlite-backup"
    entry_point = "sync-sqlite"

    @pytest.fixture
    def settings(self, tmp_path: Path) -> dict[str, Any]:
        return {"path": str(tmp_path / "backup.sqlite3")}


def test_the_backup_file_is_a_required_setting() -> None:
    with pytest.raises(ValueError, match="path"):
        SqliteBackupSettings()  # type: ignore[call-arg]


def test_backup_equals_station_database(bench: Any, digest: Any, tmp_path: Path) -> None:
    path = tmp_path / "backup" / "station-backup.sqlite3"
    tests = bench.start(3)
    bench.write(tests, 100)
    backup(bench, path)  # the first copy: SQLite's backup API
    assert digest(f"sqlite:///{path}") == digest(bench.db.url)

    bench.write(tests, 70)
    bench.finish(tests[:2])
    bench.write(bench.start(1), 30)
    backup(bench, path, max_rows=40)  # increments, several transactions
    found = digest(f"sqlite:///{path}")
    assert found == digest(bench.db.url)
    rows = {table: sum(n for (name, _), (n, _) in found.items() if name == table)
            for table in ("samples", "steps")}
    assert rows == {"samples": 3 * 170 + 30, "steps": 3 * 3}  # a step per 50 samples

    bench.db.add_event(kind="alarm", message="door open", unix_time_s=1.7e9)
    backup(bench, path)
    assert digest(f"sqlite:///{path}") == digest(bench.db.url)
    assert not path.with_name(path.name + ".partial").exists()


@pytest.mark.server
def test_backup_of_a_postgresql_station_database(postgres_bench: Any, digest: Any,
                                                 tmp_path: Path) -> None:
    path = tmp_path / "backup.sqlite3"
    tests = postgres_bench.start(2)
    postgres_bench.write(tests, 80)
    backup(postgres_bench, path, max_rows=50)
    postgres_bench.finish(tests[:1])
    postgres_bench.write(tests[1:], 20)
    backup(postgres_bench, path)
    assert digest(f"sqlite:///{path}") == digest(postgres_bench.db.url)


def check_consistent(path: Path) -> int:
    """Open the backup as any SQLite tool would and check, in one read transaction, that it is
    whole: every test's samples numbered 1..n without gaps, every aux value and step within
    them. Return how many samples it holds."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        connection.execute("BEGIN")
        assert connection.execute("PRAGMA quick_check").fetchone() == ("ok",)
        for _test_id, count, first, last in connection.execute(
                "SELECT test_id, COUNT(*), MIN(seq), MAX(seq) FROM samples GROUP BY test_id"):
            assert (first, last) == (1, count)
        orphans = connection.execute(
            "SELECT COUNT(*) FROM sample_aux a WHERE NOT EXISTS (SELECT 1 FROM samples s "
            "WHERE s.test_id = a.test_id AND s.seq = a.seq)").fetchone()
        assert orphans == (0,)
        beyond = connection.execute(
            "SELECT COUNT(*) FROM steps st WHERE st.end_seq > (SELECT MAX(seq) FROM samples s "
            "WHERE s.test_id = st.test_id)").fetchone()
        assert beyond == (0,)
        (samples,) = connection.execute("SELECT COUNT(*) FROM samples").fetchone()
        connection.execute("COMMIT")
        return int(samples)
    finally:
        connection.close()


def test_backup_is_consistent_whenever_another_connection_reads_it(
        bench: Any, digest: Any, tmp_path: Path, wait_until: Any) -> None:
    path = tmp_path / "backup.sqlite3"
    tests = bench.start(4)
    bench.write(tests, 10)
    stop = threading.Event()
    target = SqliteBackupTarget(SqliteBackupSettings(path=path, max_rows=60))
    syncer = threading.Thread(target=run_sync, args=(target, bench.db), kwargs={
        "name": "backup", "interval_s": 0.005, "stop": stop})
    syncer.start()
    seen: set[int] = set()  # sizes of the backup the reader saw

    def read_while_writing() -> list[int]:
        nonlocal tests
        bench.write(tests, 15)
        if len(seen) == 6 and len(tests) == 4:
            bench.finish(tests[:2])
            tests = tests[2:]
        if path.exists():
            seen.add(check_consistent(path))
        return sorted(seen)

    try:
        wait_until(read_while_writing, "the backup to grow through 12 sizes",
                   check=lambda sizes: len(sizes) >= 12, interval=0.005)
    finally:
        stop.set()
        syncer.join()
    backup(bench, path)
    assert digest(f"sqlite:///{path}") == digest(bench.db.url)


#: A backup process, as `cellbench sync --target sqlite-backup` runs it.
BACKUP_PROCESS = """
import sys
from pathlib import Path
from cellbench_core.storage import open_database
from cellbench_sdk.sync import refused_rows, run_sync
from cellbench_sync_sqlite.settings import SqliteBackupSettings
from cellbench_sync_sqlite.target import SqliteBackupTarget
target = SqliteBackupTarget(SqliteBackupSettings(path=Path(sys.argv[2]), max_rows=40))
run_sync(target, open_database(sys.argv[1]), name="backup", interval_s=0.01)
"""


def test_sigkilled_backup_process_leaves_a_consistent_file_that_resumes(
        bench: Any, digest: Any, tmp_path: Path, wait_until: Any) -> None:
    path = tmp_path / "backup.sqlite3"
    tests = bench.start(3)
    bench.write(tests, 20)

    def backed_up() -> int:
        """Samples in the backup, after writing a few more to the station."""
        backed = check_consistent(path) if path.exists() else 0
        bench.write(tests, 5)
        return backed

    for kill_after in (20, 45):
        process = subprocess.Popen([sys.executable, "-c", BACKUP_PROCESS, bench.db.url,
                                    str(path)])
        try:
            wait_until(backed_up, f"{kill_after * 3} samples in the backup",
                       check=lambda n, k=kill_after: n >= k * 3, alive=process, interval=0.01)
        finally:
            process.kill()
            process.wait()
        check_consistent(path)
    backup(bench, path)
    assert digest(f"sqlite:///{path}") == digest(bench.db.url)


@pytest.mark.faults
def test_a_row_the_backup_refuses_is_reported_and_everything_else_arrives(
        bench: Any, digest: Any, tmp_path: Path) -> None:
    path = tmp_path / "backup.sqlite3"
    tests = bench.start(3)
    bench.write(tests, 60)
    backup(bench, path)
    # A rule of the backup file the station's database does not have (as another program
    # might add): it refuses a test name.
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TRIGGER refuse_name BEFORE INSERT ON tests WHEN NEW.name GLOB '*forbidden*' "
            "BEGIN SELECT RAISE(ABORT, 'this backup refuses the name'); END")
    connection.close()
    refused, nul_name = tests[1], tests[2]
    with bench.db.engine.begin() as connection:  # past the station's checks
        connection.exec_driver_sql("UPDATE tests SET name = ? WHERE id = ?",
                                   ("forbidden", refused))
        connection.exec_driver_sql("UPDATE tests SET name = ? WHERE id = ?",
                                   ("cycle\x00 2", nul_name))
    bench.write(tests, 40)
    alarms: list[str] = []
    target = SqliteBackupTarget(SqliteBackupSettings(path=path))
    run_sync(target, bench.db, name="backup", once=True, on_alarm=alarms.append)
    [record] = refused_rows(bench.db, "backup")
    assert (record.row.table, record.row.key, record.row.test_id) == (
        "tests", f"id={refused}", refused)
    assert record.row.reason == "this backup refuses the name"
    assert alarms == [f"sync target backup refused tests row id={refused} and goes on without "
                      "it: this backup refuses the name"]
    bench.finish(tests)
    backup(bench, path)  # a restart: the changed row is refused again, not reported again
    assert len(refused_rows(bench.db)) == 1
    local, copy = digest(bench.db.url), digest(f"sqlite:///{path}")
    assert {key for key in local if local[key] != copy.get(key)} == {("tests", 0)}
    with sqlite3.connect(path) as connection:
        names = dict(connection.execute("SELECT id, name FROM tests").fetchall())
    connection.close()
    assert names[refused] == "cycle Ölbad 1"  # the last copy it took
    assert names[nul_name] == "cycle\x00 2"  # SQLite holds a NUL: nothing refused there
