"""Storage faults end in a safe, explained state: a database that does not accept writes (a full
disk, another program holding SQLite's write lock) is retried for ``storage_retry`` with an
alarm; beyond that every output goes off, the tests end (recorded where the database still
takes it), and the station exits with its documented code and a one-line reason. A restart
refuses to start while the database still does not accept writes, and resumes once it does."""

from __future__ import annotations

import asyncio
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.cli.console import EXIT_STORAGE_FAILED
from cellbench_core.events import Alarm, TestStatus
from cellbench_core.hookspecs import hookimpl
from cellbench_core.plan import parse_plan
from cellbench_core.plugins import PluginManager
from cellbench_core.runner import ChannelRef, Runner, TestRequest
from cellbench_core.service import StationService
from cellbench_core.station import Station, load_station, station_from_dict
from cellbench_core.storage import Database, SampleWriter, StorageFailure, open_database
from cellbench_core.storage.queue import TestQueue
from cellbench_hal import ChannelDriver, ChannelInfo, Clock, SampleBatch, Step, VirtualClock
from cellbench_sim.channel import SimChannels, SimChannelSettings

pytestmark = pytest.mark.faults

PLAN = """
name: long rest
capacity: 2.5 Ah
steps:
  - Rest for 100 hours
"""


class Outputs(ChannelDriver):
    """Simulated channels that remember which outputs were switched off."""

    virtual_time_ok = True
    name = "sim"

    def __init__(self, count: int) -> None:
        self.inner = SimChannels(SimChannelSettings(count=count))
        self.off: list[int] = []

    @property
    def channels(self) -> Sequence[ChannelInfo]:
        return self.inner.channels

    async def open(self, clock: Clock) -> None:
        await self.inner.open(clock)

    async def close(self) -> None:
        await self.inner.close()

    async def apply(self, channel: int, step: Step) -> None:
        await self.inner.apply(channel, step)

    async def output_off(self, channel: int) -> None:
        self.off.append(channel)
        await self.inner.output_off(channel)

    async def measure(self) -> SampleBatch:
        return await self.inner.measure()


class Alarms:
    """A plugin that keeps the alarms' messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    @hookimpl
    def cellbench_alarm(self, event: Alarm) -> None:
        self.messages.append(event.message)


def write_lock(path: Path) -> sqlite3.Connection:
    """Another program's connection to the SQLite file at ``path``, holding its write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def samples(db: Database) -> dict[int, tuple[int, int, int]]:
    """Per test: how many samples are committed, and the lowest and highest seq."""
    with db.engine.connect() as connection:
        return {int(t): (int(n), int(lo), int(hi)) for t, n, lo, hi in connection.exec_driver_sql(
            "SELECT test_id, COUNT(*), MIN(seq), MAX(seq) FROM samples GROUP BY test_id")}


def statuses(db: Database) -> list[str]:
    return [t.status.value for t in db.tests()]


def run_with_a_lock(tmp_path: Path, *, retry_s: float, hold_s: float | None
                    ) -> tuple[Database, Outputs, Runner, Alarms, BaseException | None]:
    """Two channels resting on a virtual clock; once samples are committed another program
    takes the write lock, for ``hold_s`` (None: for good). The runner stops the tests when
    the lock has gone (or fails on it)."""
    path = tmp_path / "station.db"
    db = open_database(f"sqlite:///{path}", busy_timeout_s=0.1)
    driver = Outputs(2)
    alarms = Alarms()
    manager = PluginManager()
    manager.register("alarms", alarms)
    writer = SampleWriter(db, retry_s=retry_s)
    clock = VirtualClock()
    runner = Runner(db, writer, clock, sample_period_s=1.0, hooks=manager.hook)
    plan = parse_plan(PLAN, "rest.yaml")
    lock: list[sqlite3.Connection] = []

    async def main() -> None:
        await driver.open(clock)
        refs = [ChannelRef(n + 1, driver, "sim", n) for n in range(2)]
        task = asyncio.create_task(runner.run([TestRequest(ref, plan) for ref in refs]))
        while len(writer.committed()) < 2 and not task.done():
            await asyncio.sleep(0.01)
        lock.append(write_lock(path))
        if hold_s is not None:
            await asyncio.sleep(hold_s)
            lock.pop().rollback()
            while writer.trouble is not None and not task.done():
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # a few commits more
            runner.stop(None, "stopped by operator")
        try:
            await task
        finally:
            await driver.close()

    error: BaseException | None = None
    try:
        asyncio.run(main())
    except StorageFailure as failure:
        error = failure
    finally:
        for other in lock:
            other.rollback()
        try:
            writer.close()
        except StorageFailure:
            assert error is not None, "the writer failed, and run() did not say so"
    return db, driver, runner, alarms, error


def test_a_write_lock_held_beyond_the_retry_window_stops_every_output_first(
        tmp_path: Path) -> None:
    db, driver, runner, alarms, error = run_with_a_lock(tmp_path, retry_s=0.5, hold_s=None)
    assert isinstance(error, StorageFailure)
    message = str(error)
    assert message.startswith("the database has not accepted writes for ")
    assert "(database is locked)" in message and "every output is off" in message
    assert "\n" not in message
    assert sorted(driver.off[:2]) == [0, 1]  # every output off, before anything else
    assert [runner.latest(n).outcome.status for n in (1, 2)] == [TestStatus.FAILED] * 2
    [alarm] = alarms.messages
    assert alarm.startswith("the database does not accept writes (database is locked)")
    # The lock held on while the ends were to be recorded: both tests are left as they were
    # (a restart resumes or ends them), every sample committed is whole.
    assert statuses(db) == ["running", "running"]
    assert "stay running in the database" in message
    for count, first, last in samples(db).values():
        assert (first, last) == (1, count)
    db.close()


def test_a_write_lock_released_within_the_window_loses_no_sample(tmp_path: Path) -> None:
    db, driver, runner, alarms, error = run_with_a_lock(tmp_path, retry_s=30.0, hold_s=0.5)
    assert error is None
    assert sorted(driver.off) == [0, 1]  # stopped by the operator
    [alarm] = alarms.messages
    assert "retrying for up to 30 s, then every test stops" in alarm
    assert statuses(db) == ["stopped", "stopped"]
    assert [e.kind for e in db.events()].count("storage_recovered") == 1
    for test_id, (count, first, last) in samples(db).items():
        assert (first, last) == (1, count), f"test {test_id}: a sample was lost or repeated"
        assert count > runner.ticks // 2  # samples taken while the lock was held are there too
    db.close()


# --- cellbench serve in a process of its own ------------------------------------------------

CHANNELS = 2
PATIENCE_S = 60.0


class Served:
    """``cellbench serve`` in a subprocess (with at most ``file_limit`` bytes per file, as a
    full disk allows no more), its stderr collected line by line."""

    def __init__(self, station: Path, file_limit: int | None = None) -> None:
        def limit() -> None:
            if file_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill

        self.process = subprocess.Popen(
            [sys.executable, "-c", "from cellbench_core.cli import main; main()", "serve",
             "--station", str(station)], stderr=subprocess.PIPE, text=True, preexec_fn=limit)
        self.lines: list[str] = []

    def wait_ready(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if " ready: " in line:
                return
        raise AssertionError(f"serve exited with {self.process.wait()} before it was ready:\n"
                             + "".join(self.lines))

    def exit(self, stop: bool = False) -> tuple[int, list[str]]:
        """Its exit code and stderr lines (after SIGTERM with ``stop``)."""
        if stop:
            self.process.send_signal(signal.SIGTERM)
        _, rest = self.process.communicate(timeout=PATIENCE_S)
        self.lines += rest.splitlines(keepends=True)
        assert "Traceback" not in "".join(self.lines), "".join(self.lines)
        return self.process.returncode, self.lines


@pytest.fixture
def served() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(station: Path, file_limit: int | None = None) -> Served:
        started.append(Served(station, file_limit))
        return started[-1]

    yield start
    for one in started:
        if one.process.poll() is None:
            one.process.kill()
            one.process.communicate()


def station_with_queued_tests(tmp_path: Path, speed: str) -> tuple[Path, Path]:
    """A station file (virtual clock, ``on_restart = "resume"``, retries for 1 s) and its
    database, with a long rest queued on every channel."""
    db = tmp_path / "station.db"
    station = tmp_path / "station.toml"
    station.write_text(f"""\
[station]
name = "faulty"
database = "sqlite:///{db}"
clock = "virtual"
{speed}
queue_poll_interval = "0.05 s"
on_restart = "resume"
storage_retry = "1 s"

[[channels]]
driver = "sim"
[channels.settings]
count = {CHANNELS}
""", encoding="utf-8")
    database = open_database(f"sqlite:///{db}")
    for channel in range(1, CHANNELS + 1):
        TestQueue(database).add(channel, PLAN, plan_source="rest.yaml")
    database.close()
    return station, db


def state(db: Path) -> tuple[list[tuple[int, str]], dict[int, tuple[int, int, int]]]:
    """The tests (id, status) and their committed samples, read beside a lock or a full disk."""
    reader = open_database(f"sqlite:///{db}", create=False)
    try:
        return [(t.id, t.status.value) for t in reader.tests()], samples(reader)
    finally:
        reader.close()


def wait_for_samples(db: Path, beyond: dict[int, tuple[int, int, int]] | None = None) -> None:
    """Until every channel's test has committed samples (beyond those of ``beyond``)."""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        _, counts = state(db)
        if len(counts) == CHANNELS and all(
                beyond is None or counts[t][2] > beyond[t][2] for t in counts):
            return
        time.sleep(0.05)
    raise AssertionError(f"no samples beyond {beyond}: {state(db)}")


def serve_here(station: Path, db: Path, beyond: dict[int, tuple[int, int, int]] | None
               ) -> None:
    """Serve ``station`` in this process until its tests committed samples ``beyond`` these
    (None: until it is ready), then stop it as SIGTERM does."""
    config = load_station(station)
    manager = PluginManager()
    manager.load()
    database = open_database(config.station.database)
    service = StationService(Station(config, manager, base_dir=station.parent), database,
                             config.station.make_clock(), manager.hook)

    async def main() -> None:
        task = asyncio.create_task(service.serve())
        ready = asyncio.create_task(service.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        assert not task.done(), task.exception()
        if beyond is not None:
            await asyncio.to_thread(wait_for_samples, db, beyond)
        service.shutdown()
        await task

    try:
        asyncio.run(main())
    finally:
        database.close()


def the_error(lines: list[str]) -> str:
    """The one error line a command printed."""
    [error] = [line for line in lines if line.startswith("error:")]
    return error


def test_serve_with_the_write_lock_held_stops_safely_refuses_to_restart_then_resumes(
        tmp_path: Path, served: Callable[..., Served]) -> None:
    station, db = station_with_queued_tests(tmp_path, "speed = 100")
    first = served(station)
    first.wait_ready()
    wait_for_samples(db)
    other = write_lock(db)
    try:
        code, lines = first.exit()
        assert code == EXIT_STORAGE_FAILED
        error = the_error(lines)
        assert "the database has not accepted writes for " in error
        assert "(database is locked)" in error and "every output is off" in error
        assert any("does not accept writes (database is locked): retrying for up to 1 s" in line
                   for line in lines)  # the alarm, while it retried
        before = state(db)
        assert [status for _, status in before[0]] == ["running"] * CHANNELS  # resumable

        # The lock still held: nothing starts (in this process: it is quick).
        result = CliRunner().invoke(app, ["serve", "--station", str(station)])
        assert result.exit_code == EXIT_STORAGE_FAILED
        assert ("Traceback" not in result.output and result.exception is None) or \
            isinstance(result.exception, SystemExit)
        assert "does not accept writes (database is locked): the station does not start" in \
            the_error(result.stderr.splitlines())
        assert state(db) == before
    finally:
        other.rollback()
        other.close()

    again = served(station)
    again.wait_ready()
    wait_for_samples(db, beyond=before[1])
    code, lines = again.exit(stop=True)
    assert code == 0, "".join(lines)
    tests, counts = state(db)
    assert [status for _, status in tests] == ["stopped"] * CHANNELS
    for count, first_seq, last_seq in counts.values():
        assert (first_seq, last_seq) == (1, count)  # resumed: no sample lost or repeated


def test_serve_on_a_full_disk_stops_safely_refuses_to_restart_then_starts_again(
        tmp_path: Path, served: Callable[..., Served]) -> None:
    station, db = station_with_queued_tests(tmp_path, "")  # as fast as it goes
    room = db.stat().st_size + (3 << 20)  # the database may grow by about 3 MB, no more
    first = served(station, file_limit=room)
    first.wait_ready()
    code, lines = first.exit()  # the disk fills up
    assert code == EXIT_STORAGE_FAILED
    error = the_error(lines)
    assert "the database has not accepted writes for " in error and "every output is off" in error
    before = state(db)
    assert before[1], "no sample was committed before the disk was full"
    # A full disk may still take the few bytes of the tests' ends, or not: the line says which.
    statuses = {status for _, status in before[0]}
    if "ended as failed" in error:
        assert statuses == {"failed"}
        reader = open_database(f"sqlite:///{db}", create=False)
        assert all(t.end_reason.startswith("the station stopped: the database has not accepted "
                                           "writes") for t in reader.tests())
        reader.close()
    else:
        assert "stay running in the database until the next start" in error
        assert statuses == {"running"}

    # Still (nearly) full: room for less than the start's probe write. Nothing starts.
    code, lines = served(station, file_limit=512 << 10).exit()
    assert code == EXIT_STORAGE_FAILED
    assert "the station does not start" in the_error(lines)
    assert state(db) == before

    # Room again: the station starts (here, in this process: it is quicker) and resumes.
    serve_here(station, db, beyond=before[1] if statuses == {"running"} else None)
    tests, counts = state(db)
    assert {status for _, status in tests} == {"stopped" if statuses == {"running"} else "failed"}
    for count, first_seq, last_seq in counts.values():
        assert (first_seq, last_seq) == (1, count)


def test_a_serving_station_whose_queue_cannot_be_written_stops_with_the_reason(
        tmp_path: Path) -> None:
    path = tmp_path / "station.db"
    db = open_database(f"sqlite:///{path}", busy_timeout_s=0.1)
    config = station_from_dict({
        "station": {"name": "idle", "database": db.url, "queue_poll_interval": "0.05 s",
                    "storage_retry": "0.5 s"},
        "channels": [{"driver": "sim", "settings": {"count": 1}}]})
    manager = PluginManager()
    manager.load()
    service = StationService(Station(config, manager), db, VirtualClock(), manager.hook)

    async def main() -> None:
        task = asyncio.create_task(service.serve())
        await service.ready.wait()
        # Another program queues a test and at once holds the write lock: the station, idle,
        # cannot claim it (the only write it makes).
        other = write_lock(path)
        other.execute("INSERT INTO test_queue (channel, plan, status, created_unix_s) "
                      "VALUES (1, ?, 'queued', 0)", (PLAN,))
        other.execute("COMMIT")
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StorageFailure, match=r"has not accepted the test queue's reads "
                                                     r"and writes for \d+ s \(database is locked"):
                await asyncio.wait_for(task, PATIENCE_S)
        finally:
            other.rollback()
            other.close()

    asyncio.run(main())
    [entry] = TestQueue(db).entries()
    assert entry.status.value == "queued"  # nothing started, nothing half-done
    assert db.tests() == []
    db.close()


def test_run_on_a_locked_database_starts_nothing(tmp_path: Path) -> None:
    db = tmp_path / "station.db"
    open_database(f"sqlite:///{db}").close()
    station = tmp_path / "station.toml"
    station.write_text(f'[station]\ndatabase = "sqlite:///{db}"\nstorage_retry = "0.2 s"\n'
                       'clock = "virtual"\n[[channels]]\ndriver = "sim"\n', encoding="utf-8")
    plan = tmp_path / "rest.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    other = write_lock(db)
    try:
        result = CliRunner().invoke(app, ["run", str(plan), "--station", str(station)])
    finally:
        other.rollback()
        other.close()
    assert result.exit_code == EXIT_STORAGE_FAILED, result.output
    assert "does not accept writes (database is locked): the station does not start" in \
        the_error(result.stderr.splitlines())
    assert state(db) == ([], {})
