"""A serving station (StationService) takes its tests from the test queue, on every backend."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
import sqlalchemy as sa

from cellbench_core.events import TestStatus
from cellbench_core.plugins import PluginManager
from cellbench_core.service import StationService
from cellbench_core.station import Station, station_from_dict
from cellbench_core.storage import Database
from cellbench_core.storage.queue import QueueStatus, TestQueue
from cellbench_hal import Clock, VirtualClock


def make_service(db: Database, channels: int = 4, clock: Clock | None = None,
                 poll: str = "0.05 s") -> StationService:
    config = station_from_dict({
        "station": {"name": "svc", "database": db.url, "sample_period": "10 s",
                    "queue_poll_interval": poll},
        "channels": [{"driver": "sim", "settings": {"count": channels, "seed": 3}}],
    })
    manager = PluginManager()
    manager.load()
    return StationService(Station(config, manager), db, clock or VirtualClock(), manager.hook)


@pytest.mark.faults
def test_queued_tests_run_and_bad_entries_fail_with_a_reason(
        db: Database, serve_until: Callable[..., None], shared_plan: Callable[[str], str]) -> None:
    short = shared_plan("short")
    db.add_battery("cell-A", "NMC", 2.5, voltage_max_v=4.25, voltage_min_v=2.45)
    queue = TestQueue(db)
    first = queue.add(1, short, plan_source="short.yaml", battery="cell-A", name="first")
    second = queue.add(1, short, plan_source="short.yaml", name="second")  # waits for ch 1
    other = queue.add(2, short)
    bad_plan = queue.add(3, "name: x\nsteps:\n  - Discharge at 1C\n", plan_source="bad.yaml")
    no_channel = queue.add(9, short)
    no_battery = queue.add(4, short, battery="nope")
    # Starts in the same batch as the good ones and is refused there: they start regardless.
    too_big = queue.add(4, "name: big\nsteps:\n  - Charge at 500 A for 1 minute\n",
                        plan_source="big.yaml")
    # Rows other programs wrote as SQLite keeps anything: checked as they are read.
    written: dict[int, str] = {}
    if db.engine.dialect.name == "sqlite":
        with db.engine.begin() as connection:
            for channel, name, problem in (
                    ("abc", None, "channel 'abc' is not a station channel number"),
                    (2, "x\x00", "name holds the control character U+0000")):
                written[connection.execute(sa.text(
                    "INSERT INTO test_queue (channel, plan, name, status, created_unix_s) "
                    "VALUES (:channel, :plan, :name, 'queued', 0) RETURNING id"),
                    {"channel": channel, "plan": short, "name": name}).scalar_one()] = problem
    service = make_service(db)
    serve_until(service)
    entries = {e.id: e for e in queue.entries()}
    for entry_id, problem in written.items():
        assert entries[entry_id].status is QueueStatus.FAILED
        assert problem in (entries[entry_id].error or "")
    for entry_id in (first, second, other):
        entry = entries[entry_id]
        assert entry.status is QueueStatus.FINISHED and entry.error is None
        assert entry.test_id is not None
        test = db.test(entry.test_id)
        assert test is not None and test.status is TestStatus.FINISHED
        assert test.channel == str(entry.channel)
        assert len(db.samples(entry.test_id, ["seq"])["seq"]) == 18  # 3 minutes at 10 s
    tests = {t.id: t for t in db.tests()}
    assert tests[entries[first].test_id].battery == "cell-A"  # type: ignore[index]
    assert tests[entries[first].test_id].name == "first"  # type: ignore[index]
    one, two = (tests[entries[e].test_id] for e in (first, second))  # type: ignore[index]
    assert two.start_unix_s >= one.end_unix_s  # type: ignore[operator]
    assert len(tests) == 3  # the refused entries started nothing
    refused = {
        bad_plan: "bad.yaml:3: steps[0]: this step could run forever",
        no_channel: "channel 9 does not exist (this station has channels 1-4)",
        no_battery: "no battery named 'nope'",
        too_big: "big.yaml:3: 500 A is beyond channel 4's range",
    }
    for entry_id, message in refused.items():
        assert entries[entry_id].status is QueueStatus.FAILED
        assert message in (entries[entry_id].error or "")
        assert entries[entry_id].test_id is None


def test_concurrent_queue_writers_start_every_entry_once(
        db: Database, serve_until: Callable[..., None], shared_plan: Callable[[str], str]) -> None:
    short = shared_plan("short")
    queue = TestQueue(db)
    per_writer = 4

    def write(k: int) -> None:
        for n in range(per_writer):
            queue.add(1 + (k + n) % 4, short, name=f"w{k}-{n}")

    def writers() -> None:
        threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    service = make_service(db)
    serve_until(service, lambda: len(queue.entries()) == 16 and not queue.entries(
        [QueueStatus.QUEUED, QueueStatus.RUNNING]), writers)
    entries = queue.entries()
    assert {e.status for e in entries} == {QueueStatus.FINISHED}
    test_ids = [e.test_id for e in entries]
    assert len(set(test_ids)) == 16
    assert sorted(t.id for t in db.tests()) == sorted(test_ids)  # type: ignore[type-var]


def test_queued_tests_picked_up_together_start_at_one_tick(
        db: Database, serve_until: Callable[..., None], shared_plan: Callable[[str], str]) -> None:
    channels = 100
    queue = TestQueue(db)
    ids = [queue.add(channel, shared_plan("short")) for channel in range(1, channels + 1)]
    serve_until(make_service(db, channels=channels))
    entries = [queue.entry(entry_id) for entry_id in ids]
    assert all(e is not None and e.status is QueueStatus.FINISHED for e in entries)
    test_ids = [e.test_id for e in entries if e is not None and e.test_id is not None]
    assert len(set(test_ids)) == channels
    # Claimed in one transaction and started at one tick: one start time, and every first
    # sample one sample period later, on the station's virtual clock.
    starts = {t.start_unix_s for t in db.tests()}
    assert len(starts) == 1
    first_samples = {float(db.samples(test_id, ["unix_time_s"])["unix_time_s"][0])
                     for test_id in test_ids}
    assert first_samples == {starts.pop() + 10.0}


@pytest.mark.server
def test_postgres_notification_wakes_the_station(
        postgres_url: str, serve_until: Callable[..., None],
        shared_plan: Callable[[str], str]) -> None:
    from cellbench_core.storage import open_database

    db = open_database(postgres_url)
    try:
        queue = TestQueue(db)
        service = make_service(db, poll="1 h")  # only a notification can wake it in time

        def insert() -> None:
            with db.engine.begin() as connection:
                connection.execute(sa.text(
                    "INSERT INTO test_queue (channel, plan, created_unix_s) "
                    "VALUES (1, :plan, 0)"), {"plan": shared_plan("short")})

        serve_until(service, lambda: bool(queue.entries([QueueStatus.FINISHED])), insert)
    finally:
        with db.engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM test_queue"))
        db.close()


def test_shutdown_stops_running_tests_with_every_output_off(
        db: Database, serve_until: Callable[..., None], shared_plan: Callable[[str], str]) -> None:
    queue = TestQueue(db)
    ids = [queue.add(channel, shared_plan("long")) for channel in (1, 2, 3)]
    service = make_service(db, channels=3, clock=VirtualClock(speed=50.0))
    driver = service.station.drivers[0][1]
    measured: list[np.ndarray] = []
    close = service.station.close

    async def measure_then_close() -> None:
        measured.append((await driver.measure()).current_a)
        await close()

    service.station.close = measure_then_close  # type: ignore[method-assign]

    def all_running_with_samples() -> bool:
        entries = queue.entries([QueueStatus.RUNNING])
        return len(entries) == 3 and all(
            e.test_id is not None and len(db.samples(e.test_id, ["seq"])["seq"]) > 0
            for e in entries)

    serve_until(service, all_running_with_samples)
    assert measured and np.all(measured[0] == 0.0)
    for entry_id in ids:
        entry = queue.entry(entry_id)
        assert entry is not None and entry.status is QueueStatus.STOPPED
        assert entry.error == "station stopped"
        test = db.test(entry.test_id)  # type: ignore[arg-type]
        assert test is not None and test.status is TestStatus.STOPPED
