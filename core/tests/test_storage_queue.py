"""The test queue and the live-data view, on every backend."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from cellbench_core.storage import Database, SampleRows, SampleWriter, StorageError
from cellbench_core.storage.queue import QueueStatus, TestQueue

NewTest = Callable[..., int]
MakeRows = Callable[..., SampleRows]


def test_queue_lifecycle(db: Database, new_test: NewTest) -> None:
    queue = TestQueue(db)
    first = queue.add(3, "name: a\n", plan_source="a.yaml", battery=None, name="cap check",
                      created_unix_s=1.0)
    second = queue.add(1, "name: b\n", created_unix_s=2.0)
    assert [(e.id, e.channel, e.status) for e in queue.entries()] == [
        (first, 3, QueueStatus.QUEUED), (second, 1, QueueStatus.QUEUED)]
    assert queue.claim(first, 10.0)
    assert not queue.claim(first, 11.0)  # already running
    test_id = new_test()
    queue.started(first, test_id)
    queue.end(first, QueueStatus.FINISHED, 20.0)
    queue.cancel(second, 12.0)
    with pytest.raises(StorageError, match=f"queue entry {second} is cancelled, not queued"):
        queue.cancel(second)
    with pytest.raises(StorageError, match=f"no queue entry {second + 99}"):
        queue.cancel(second + 99)
    assert not queue.claim(second, 13.0)
    done = queue.entry(first)
    assert done is not None
    assert (done.status, done.test_id, done.started_unix_s, done.finished_unix_s) == (
        QueueStatus.FINISHED, test_id, 10.0, 20.0)
    assert queue.entries([QueueStatus.QUEUED]) == []


def test_third_party_insert_needs_only_channel_plan_and_time(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO test_queue (channel, plan, created_unix_s) "
                                   "VALUES (2, 'name: x', 5.0)"))
    [entry] = TestQueue(db).entries()
    assert (entry.channel, entry.status, entry.battery) == (2, QueueStatus.QUEUED, None)
    # MariaDB reports a failed CHECK as an OperationalError, the others as IntegrityError.
    with pytest.raises(sa.exc.DBAPIError), db.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO test_queue (channel, plan, created_unix_s, "
                                   "status) VALUES (2, 'x', 5.0, 'bogus')"))


@pytest.mark.parametrize(("args", "message"), [
    ((0, "name: x"), "channel must be a station channel number"),
    ((1, "  "), "the plan is empty"),
])
def test_bad_queue_entries_are_refused(db: Database, args: tuple[int, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TestQueue(db).add(*args)


def test_concurrent_claims_start_each_entry_once(db: Database) -> None:
    queue = TestQueue(db)
    ids = [queue.add(1 + n % 4, f"name: p{n}\n") for n in range(40)]
    won: list[list[int]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def claimer(k: int) -> None:
        barrier.wait()
        for entry_id in ids:
            if queue.claim(entry_id, float(k)):
                won[k].append(entry_id)

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = sorted(i for w in won for i in w)
    assert claimed == ids
    assert all(e.status is QueueStatus.RUNNING for e in queue.entries())


def test_live_samples_view_shows_the_latest_sample_of_running_tests(
        db: Database, new_test: NewTest, make_rows: MakeRows) -> None:
    running, ended = new_test("running"), new_test("ended")
    writer = SampleWriter(db)
    try:
        writer.submit(make_rows([running, ended], 1, 5))
        writer.flush()
    finally:
        writer.close()
    db.finish_test(ended, "finished", "plan complete", 2e9)
    with db.engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT test_id, test_name, seq FROM live_samples ORDER BY test_id")).all()
    assert [tuple(r) for r in rows] == [(running, "running", 5)]


def test_the_documented_queue_queries_work(db: Database) -> None:
    """The SQL that docs/schema.md gives third-party tools, as written there."""
    with db.engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO test_queue (channel, plan, plan_source, battery, created_unix_s) "
            "VALUES (3, :plan_text, 'capacity-check.yaml', NULL, :now_unix_s)"),
            {"plan_text": "name: x\n", "now_unix_s": 1.0})
    [entry] = TestQueue(db).entries()
    with db.engine.begin() as connection:
        row = connection.execute(sa.text(
            "SELECT status, test_id, error FROM test_queue WHERE id = :queue_id"),
            {"queue_id": entry.id}).one()
        assert tuple(row) == ("queued", None, None)
        overview = connection.execute(sa.text(
            "SELECT q.channel, q.status, COUNT(*) AS entries, MIN(q.created_unix_s) AS oldest "
            "FROM test_queue q WHERE q.status IN ('queued', 'running') "
            "GROUP BY q.channel, q.status ORDER BY q.channel")).all()
        assert [tuple(r) for r in overview] == [(3, "queued", 1, 1.0)]
        cancel = sa.text("UPDATE test_queue SET status = 'cancelled', "
                         "finished_unix_s = :now_unix_s "
                         "WHERE id = :queue_id AND status = 'queued'")
        params = {"queue_id": entry.id, "now_unix_s": 2.0}
        assert connection.execute(cancel, params).rowcount == 1
        assert connection.execute(cancel, params).rowcount == 0
