"""The central-sql target: the central copy equals the station's after re-delivered batches, a
server that goes away mid-sync, and SIGKILLed sync processes; and the comparison used for that
catches a lost batch."""

from __future__ import annotations

import functools
import random
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from cellbench_sdk.sync import SyncReport, refused_rows, run_sync
from cellbench_sdk.testing import SyncTargetContract
from cellbench_sync_sql import central
from cellbench_sync_sql.settings import CentralSqlSettings
from cellbench_sync_sql.target import CentralSqlTarget

STATION = "lab-1"


def sync(bench: Any, url: str, **settings: Any) -> None:
    """Run a fresh target until it holds everything committed."""
    target = CentralSqlTarget(CentralSqlSettings(url=url, station=STATION, **settings))
    run_sync(target, bench.db, name="central", once=True)


def equal(digest: Any, bench: Any, url: str) -> None:
    local, remote = digest(bench.db.url), digest(url, STATION)
    assert local == remote
    assert local[("samples", 1)][0] > 0 and local[("events", 0)][0] > 0


class TestCentralSql(SyncTargetContract):
    """The ``central-sql`` target keeps the sync-target contract on every kind of server, as a
    station builds it."""

    plugin = "cellbench_sync_sql.plugin"
    name = "central-sql"
    entry_point = "sync-sql"

    @pytest.fixture
    def settings(self, central_url: str) -> dict[str, Any]:
        return {"url": central_url, "station": STATION}


def test_the_url_is_checked() -> None:
    with pytest.raises(ValueError, match="not a SQLAlchemy database URL"):
        CentralSqlSettings(url="not a url")


def test_central_equals_local_in_small_batches_and_after_redelivery(
        bench: Any, central_url: str, digest: Any) -> None:
    tests = bench.start(3)
    bench.write(tests, 120)
    sync(bench, central_url, max_rows=100)  # several transactions
    equal(digest, bench, central_url)

    bench.write(tests, 80)
    bench.finish(tests[:1])
    bench.db.add_event(kind="alarm", message="T > 60 °C", test_id=tests[1], channel="sim/1",
                       unix_time_s=1.7e9 + 5)
    sync(bench, central_url)
    equal(digest, bench, central_url)
    before = digest(central_url, STATION)

    # Forced re-delivery: the central side forgets how far it got, everything comes again.
    engine = sa.create_engine(central_url)
    with engine.begin() as connection:
        connection.execute(sa.update(central.sync_tests).values(seq=0, step_no=0, final=False))
        connection.execute(sa.update(central.sync_stations).values(event_id=0))
    engine.dispose()
    sync(bench, central_url, max_rows=150)
    assert digest(central_url, STATION) == before
    equal(digest, bench, central_url)


def test_a_station_catching_up_sends_live_rows_first_and_every_row_once(
        bench: Any, central_url: str, digest: Any) -> None:
    tests = bench.start(3)
    bench.write(tests, 400)  # the backlog of a station that was offline
    target = CentralSqlTarget(CentralSqlSettings(url=central_url, station=STATION, max_rows=150))
    target.open()
    try:
        assert not target.sync_once(bench.db).caught_up  # 50 of each test's 400
        bench.write(tests, 5)  # measured meanwhile: live
        assert target.sync_once(bench.db).live_age_s > 0
        engine = sa.create_engine(central_url)
        samples = central.samples
        with engine.connect() as connection:
            held = connection.execute(
                sa.select(samples.c.test_id, sa.func.max(samples.c.seq), sa.func.count())
                .where(samples.c.origin == STATION).group_by(samples.c.test_id)
                .order_by(samples.c.test_id)).all()
        engine.dispose()
        # The live rows are there ahead of the backlog, which has come to 100 of 400.
        assert [tuple(row) for row in held] == [(test_id, 405, 105) for test_id in tests]
    finally:
        target.close()  # as if the station stopped here: the next target starts afresh
    sync(bench, central_url, max_rows=150)
    equal(digest, bench, central_url)


def test_comparison_catches_a_lost_batch(bench: Any, central_url: str, digest: Any) -> None:
    tests = bench.start(2)
    bench.write(tests, 100)
    sync(bench, central_url)
    equal(digest, bench, central_url)
    samples = central.samples
    engine = sa.create_engine(central_url)
    with engine.begin() as connection:
        connection.execute(sa.delete(samples).where(
            samples.c.test_id == tests[1], samples.c.seq.between(40, 59)))
    engine.dispose()
    local, remote = digest(bench.db.url), digest(central_url, STATION)
    differing = {key for key in local if local[key] != remote.get(key)}
    assert differing == {("samples", tests[1])}


def test_two_stations_share_one_central_database(bench: Any, new_bench: Any, central_url: str,
                                                 digest: Any) -> None:
    bench.write(bench.start(2), 60)
    other = new_bench()  # the same test ids, on another station
    other.write(other.start(3), 30)
    sync(bench, central_url)
    run_sync(CentralSqlTarget(CentralSqlSettings(url=central_url, station="lab-2")),
             other.db, name="central", once=True)
    assert digest(central_url, "lab-2") == digest(other.db.url)
    assert digest(central_url, STATION) == digest(bench.db.url)


@pytest.mark.server
@pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)
def test_server_going_away_mid_sync_raises_an_alarm_and_loses_nothing(
        bench: Any, central_url: str, digest: Any, proxied: Any, wait_until: Any) -> None:
    proxy, url = proxied(central_url)
    target = CentralSqlTarget(CentralSqlSettings(url=url, station=STATION, max_rows=200,
                                                 connect_timeout_s=1))
    stop = threading.Event()
    reports: list[SyncReport] = []
    runner = threading.Thread(target=run_sync, args=(target, bench.db), kwargs={
        "name": "central", "interval_s": 0.02, "alarm_after_s": 0.3, "max_backoff_s": 0.1,
        "stop": stop, "on_report": reports.append})
    runner.start()
    try:
        tests = bench.start(4)
        for _ in range(10):
            bench.write(tests, 30)
        proxy.stop()  # mid-sync: connections cut, nothing listening
        for _ in range(10):
            bench.write(tests, 30)
        wait_until(lambda: [e for e in bench.db.events() if e.kind == "alarm"], "an alarm event",
                   interval=0.05)
        bench.finish(tests[:2])
        proxy.start()
        written = len(bench.db.events())
        wait_until(lambda: reports and reports[-1].caught_up and len(bench.db.events()) > written,
                   "the target to catch up with the new events", interval=0.05)
    finally:
        stop.set()
        runner.join()
    run_sync(CentralSqlTarget(CentralSqlSettings(url=central_url, station=STATION)), bench.db,
             name="central", once=True)  # the sync_recovered event
    kinds = [e.kind for e in bench.db.events()]
    assert "alarm" in kinds and "sync_recovered" in kinds
    assert not refused_rows(bench.db)  # a cut connection retries the batch, refuses no row
    equal(digest, bench, central_url)


@pytest.mark.faults
@pytest.mark.server
@pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)
def test_rows_the_central_database_refuses_are_reported_and_everything_else_arrives(
        bench: Any, central_url: str, digest: Any) -> None:
    tests = bench.start(4)
    bench.write(tests, 120)
    nul_name, long_name = tests[1], tests[2]
    tests_table, events_table = central.tests.name, central.events.name
    # Written straight into the station database, past its checks (an older cellbench, or
    # another program): PostgreSQL holds no NUL in text, no server more than 255 characters.
    with bench.db.engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {tests_table} SET name = :n WHERE id = :i"),
                           {"n": "cycle\x00 1", "i": nul_name})
        connection.execute(sa.text(f"UPDATE {tests_table} SET name = :n WHERE id = :i"),
                           {"n": "x" * 300, "i": long_name})
        event_id = connection.execute(sa.text(
            f"INSERT INTO {events_table} (test_id, unix_time_s, kind, message, data) "
            "VALUES (:t, 1.7e9, 'message', :m, '{}') RETURNING id"),
            {"t": tests[0], "m": "operator\x00 note"}).scalar_one()
    postgresql = central_url.startswith("postgresql")
    expected = {("tests", f"id={long_name}", long_name)}
    if postgresql:
        expected |= {("tests", f"id={nul_name}", nul_name), ("events", f"id={event_id}", tests[0])}

    alarms: list[str] = []
    target = CentralSqlTarget(CentralSqlSettings(url=central_url, station=STATION, max_rows=100))
    run_sync(target, bench.db, name="central", once=True, on_alarm=alarms.append)
    records = refused_rows(bench.db)
    assert {(r.row.table, r.row.key, r.row.test_id) for r in records} == expected
    assert {r.target for r in records} == {"central"}
    assert all(r.row.reason for r in records)
    assert len(alarms) == len(expected)
    assert f"refused tests row id={long_name}" in " ".join(alarms)
    if postgresql:
        assert "0x00" in next(r.row.reason for r in records if r.row.key == f"id={nul_name}")

    # Later samples of every test follow, the changed test rows are refused again without a
    # second report, and so after a restart of the target.
    bench.write(tests, 80)
    bench.finish(tests)
    sync(bench, central_url, max_rows=100)
    sync(bench, central_url)
    assert len(refused_rows(bench.db)) == len(expected)
    local, remote = digest(bench.db.url), digest(central_url, STATION)
    differing = {key for key in local if local[key] != remote.get(key)}
    assert differing == ({("tests", 0), ("events", 0)} if postgresql else {("tests", 0)})
    engine = sa.create_engine(central_url)
    with engine.connect() as connection:
        held = set(connection.execute(sa.select(central.tests.c.id)).scalars())
    engine.dispose()
    assert held == set(tests) - {test_id for _, _, test_id in expected
                                 if test_id in (nul_name, long_name)}


#: A sync process, as `cellbench sync` runs it (without the command line's start-up time).
SYNC_PROCESS = f"""
import sys
from cellbench_core.storage import open_database
from cellbench_sdk.sync import refused_rows, run_sync
from cellbench_sync_sql.settings import CentralSqlSettings
from cellbench_sync_sql.target import CentralSqlTarget
target = CentralSqlTarget(CentralSqlSettings(url=sys.argv[2], station={STATION!r}, max_rows=200))
run_sync(target, open_database(sys.argv[1]), name="central", interval_s=0.01)
"""


def central_samples(url: str) -> int:
    """How many samples the central database holds (0 before its tables exist)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("samples"):
                return 0
            return int(connection.execute(sa.select(sa.func.count()).select_from(
                central.samples)).scalar_one())
    finally:
        engine.dispose()


def test_sigkilled_sync_processes_lose_and_duplicate_nothing(
        bench: Any, central_url: str, digest: Any, wait_until: Any) -> None:
    command = [sys.executable, "-c", SYNC_PROCESS, bench.db.url, central_url]
    tests = bench.start(3)
    rng = random.Random(5)

    def write_then_count(tests: list[int]) -> int:
        """Write a few samples more (for the sync process to copy), then count those copied."""
        bench.write(tests, rng.randint(1, 10))
        return central_samples(central_url)

    for _ in range(3):  # each time killed only once it is syncing
        before = central_samples(central_url)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(functools.partial(write_then_count, tests), "samples synced",
                       check=lambda n, b=before: n > b, alive=process, interval=0.1)
            for _ in range(rng.randint(0, 20)):
                bench.write(tests, rng.randint(1, 40))
        finally:
            process.kill()  # SIGKILL, wherever it is
            process.wait()
        bench.finish(tests[:1])
        tests = tests[1:] + bench.start(1)
    sync(bench, central_url)
    equal(digest, bench, central_url)


#: A station's sample writer: goes on from the committed samples of the given tests, and writes
#: ten samples per test every few milliseconds until it is killed.
STATION_PROCESS = """
import sys, time
import numpy as np
import sqlalchemy as sa
from cellbench_core.storage import SampleRows, SampleWriter, open_database
db = open_database(sys.argv[1])
ids = [int(a) for a in sys.argv[2:]]
with db.engine.connect() as connection:
    last = {t: connection.execute(sa.text(
        "SELECT COALESCE(MAX(seq), 0) FROM samples WHERE test_id = :t"), {"t": t}).scalar()
        for t in ids}
writer = SampleWriter(db)
while True:
    for t in ids:
        seq = np.arange(last[t] + 1, last[t] + 11, dtype=np.int64)
        x = np.asarray(seq * 0.1, dtype=np.float64)
        writer.submit(SampleRows(
            test_id=np.full(10, t, dtype=np.int64), seq=seq, test_time_s=x, unix_time_s=x,
            step_time_s=x, voltage_v=x, current_a=x, power_w=x, temperature_c=x,
            step_index=seq, plan_line=seq, cycle=seq, ah=x, wh=x, aux={"t2_c": x}))
        last[t] += 10
    time.sleep(0.005)
"""


def local_samples(bench: Any) -> int:
    with bench.db.engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT COUNT(*) FROM samples").scalar_one())


# The central side's part in this is the same on every backend (the other tests cover them).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigkilled_station_loses_nothing_centrally(bench: Any, central_url: str,
                                                   digest: Any, wait_until: Any) -> None:
    tests = bench.start(3)
    target = CentralSqlTarget(CentralSqlSettings(url=central_url, station=STATION, max_rows=300))
    stop = threading.Event()
    syncer = threading.Thread(target=run_sync, args=(target, bench.db), kwargs={
        "name": "central", "interval_s": 0.01, "stop": stop})
    syncer.start()
    rng = random.Random(9)
    try:
        for _ in range(3):
            before = local_samples(bench)
            station = subprocess.Popen(
                [sys.executable, "-c", STATION_PROCESS, bench.db.url, *map(str, tests)])
            try:
                wait_until(lambda: local_samples(bench), "samples from the station",
                           check=lambda n, b=before: n > b,
                           alive=station, interval=0.01)
                time.sleep(rng.uniform(0, 0.3))
            finally:
                station.kill()  # SIGKILL, wherever the station is
                station.wait()
    finally:
        stop.set()
        syncer.join()
    sync(bench, central_url)
    equal(digest, bench, central_url)
    with bench.db.engine.connect() as connection:  # the station itself lost nothing either
        for count, last in connection.exec_driver_sql(
                "SELECT COUNT(*), MAX(seq) FROM samples GROUP BY test_id"):
            assert count == last


def test_a_central_database_of_an_older_cellbench_gets_the_new_columns_and_the_view(
        bench: Any, central_url: str) -> None:
    """Centrals made before steps had charge, discharge and temperature columns (and before
    the cycles view) are brought up to date when a station connects, rows kept."""
    engine = sa.create_engine(central_url)
    new = ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh", "temperature_min_c",
           "temperature_max_c")
    with engine.begin() as connection:
        central.metadata.create_all(connection)
        connection.execute(sa.text("DROP VIEW IF EXISTS cycles"))
        for name in new:
            connection.execute(sa.text(f"ALTER TABLE steps DROP COLUMN {name}"))
    tests = bench.start(1)
    bench.write(tests, 60)
    bench.finish(tests)
    sync(bench, central_url)
    with engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("steps")}
        assert set(new) <= columns
        rows = connection.execute(sa.text(
            "SELECT origin, test_id, cycle, steps FROM cycles")).fetchall()
    engine.dispose()
    local = bench.db.cycles(tests[0])
    assert [(r[0], r[2], r[3]) for r in rows] == [(STATION, c.cycle, c.steps) for c in local]
