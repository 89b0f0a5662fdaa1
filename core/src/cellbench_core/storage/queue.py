"""The test queue: rows in ``test_queue`` that ask a station to run a plan on a channel.

Any tool may insert a row with status ``queued`` (docs/schema.md); the station claims it with a
conditional update, so that two stations (or two loops of one) never start the same row twice.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from cellbench_core.storage import schema
from cellbench_core.storage.database import Database
from cellbench_core.storage.records import StorageError
from cellbench_core.text import TextError, check_identifier, check_name, check_text


class QueueStatus(StrEnum):
    """Where a queued test stands; stored in ``test_queue.status``."""

    QUEUED = "queued"  # waiting for its channel
    RUNNING = "running"  # claimed by the station; ``test_id`` names its test once started
    FINISHED = "finished"  # the plan ran to its end
    STOPPED = "stopped"  # an operator or a safety limit stopped it
    FAILED = "failed"  # the plan was refused, or a device or the station failed; see ``error``
    CANCELLED = "cancelled"  # withdrawn before it started
    INTERRUPTED = "interrupted"  # the station died while it ran and did not resume it


#: The statuses a row ends in.
FINAL_STATUSES = frozenset(QueueStatus) - {QueueStatus.QUEUED, QueueStatus.RUNNING}


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One row of ``test_queue``; ``plan`` is the plan file's text."""

    id: int
    channel: int
    plan: str
    plan_source: str | None
    battery: str | None
    name: str | None
    status: QueueStatus
    created_unix_s: float
    started_unix_s: float | None
    finished_unix_s: float | None
    test_id: int | None
    error: str | None
    #: Why the row cannot be run as it stands (any program may write the table): the station
    #: marks such a row failed with this reason and goes on with the others.
    problem: str | None = None


class TestQueue:
    """The test queue of the database ``db``."""

    __test__ = False  # not a pytest test class

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, channel: int, plan: str, *, plan_source: str | None = None,
            battery: str | None = None, name: str | None = None,
            created_unix_s: float | None = None) -> int:
        """Queue ``plan`` (the plan file's text) for station channel ``channel``; return the id."""
        if isinstance(channel, bool) or not isinstance(channel, int) or channel < 1:
            raise ValueError(f"channel must be a station channel number (1, 2, ...), "
                             f"not {channel!r}")
        if not check_text(plan, "the plan").strip():
            raise ValueError("the plan is empty")
        if plan_source is not None:
            check_text(plan_source, "plan_source", length=schema.NAME_LENGTH)
        if battery is not None:
            check_identifier(battery, "battery")
        if name is not None:
            check_name(name, "name")
        row = {"channel": channel, "plan": plan, "plan_source": plan_source,
               "battery": battery, "name": name, "status": QueueStatus.QUEUED.value,
               "created_unix_s": time.time() if created_unix_s is None else created_unix_s}
        with self.db.engine.begin() as connection:
            key = connection.execute(sa.insert(schema.test_queue).values(row)).inserted_primary_key
        assert key is not None  # a single-row insert always has one
        return int(key[0])

    def entries(self, statuses: Collection[QueueStatus] | None = None) -> list[QueueEntry]:
        """Rows in id order, all or only those with one of ``statuses``."""
        table = schema.test_queue
        query = sa.select(table).order_by(table.c.id)
        if statuses is not None:
            query = query.where(table.c.status.in_([s.value for s in statuses]))
        with self.db.engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query).mappings()]

    def entry(self, entry_id: int) -> QueueEntry | None:
        """The row with this id, or None."""
        query = sa.select(schema.test_queue).where(schema.test_queue.c.id == entry_id)
        with self.db.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return None if row is None else _entry(row)

    def cancel(self, entry_id: int, unix_time_s: float | None = None) -> None:
        """Withdraw a queued row; StorageError if it does not exist or has already started."""
        if not self._move(entry_id, QueueStatus.QUEUED, status=QueueStatus.CANCELLED.value,
                          finished_unix_s=time.time() if unix_time_s is None else unix_time_s):
            found = self.entry(entry_id)
            if found is None:
                raise StorageError(f"no queue entry {entry_id}")
            raise StorageError(f"queue entry {entry_id} is {found.status}, not queued; "
                               "only queued entries can be cancelled")

    def claim(self, entry_id: int, unix_time_s: float) -> bool:
        """Move a row from queued to running; False if someone else claimed or cancelled it."""
        return self._move(entry_id, QueueStatus.QUEUED, status=QueueStatus.RUNNING.value,
                          started_unix_s=unix_time_s)

    def claim_many(self, entry_ids: Sequence[int], unix_time_s: float) -> list[int]:
        """:meth:`claim` each row, all in one transaction (a station picking up a thousand
        rows commits once); the ids claimed, in the order given."""
        table = schema.test_queue
        values = {"status": QueueStatus.RUNNING.value, "started_unix_s": unix_time_s}
        with self.db.engine.begin() as connection:
            if not connection.dialect.update_returning:  # MariaDB: one UPDATE per row
                moved = [entry_id for entry_id in entry_ids if connection.execute(
                    sa.update(table).where(table.c.id == entry_id,
                                           table.c.status == QueueStatus.QUEUED.value)
                    .values(**values)).rowcount == 1]
                return moved
            claimed: set[int] = set()
            for start in range(0, len(entry_ids), _IN_LIST_IDS):
                # The same conditional UPDATE, for many rows: each row moves once, whoever asks.
                claimed.update(connection.execute(
                    sa.update(table).where(table.c.id.in_(entry_ids[start:start + _IN_LIST_IDS]),
                                           table.c.status == QueueStatus.QUEUED.value)
                    .values(**values).returning(table.c.id)).scalars())
        return [entry_id for entry_id in entry_ids if entry_id in claimed]

    def started(self, entry_id: int, test_id: int) -> None:
        """Record the test a running row started."""
        self._move(entry_id, QueueStatus.RUNNING, test_id=test_id)

    def started_many(self, started: Sequence[tuple[int, int]]) -> None:
        """:meth:`started` for each ``(entry_id, test_id)``, in one transaction."""
        if not started:
            return
        table = schema.test_queue
        with self.db.engine.begin() as connection:
            connection.execute(
                sa.update(table).where(table.c.id == sa.bindparam("entry_id"),
                                       table.c.status == QueueStatus.RUNNING.value)
                .values(test_id=sa.bindparam("new_test_id")),
                [{"entry_id": entry_id, "new_test_id": test_id} for entry_id, test_id in started])

    def end(self, entry_id: int, status: QueueStatus, unix_time_s: float,
            error: str | None = None) -> None:
        """Record how a claimed row ended (``error`` says why, for failures and stops)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"a queue entry ends as one of "
                             f"{', '.join(sorted(FINAL_STATUSES))}; not {status!r}")
        self._move(entry_id, QueueStatus.RUNNING, status=status.value,
                   finished_unix_s=unix_time_s, error=error)

    def _move(self, entry_id: int, current: QueueStatus, **values: object) -> bool:
        # One conditional UPDATE: the database serialises concurrent writers on the row, and
        # exactly one of them sees it in ``current``.
        table = schema.test_queue
        update = (sa.update(table).where(table.c.id == entry_id, table.c.status == current.value)
                  .values(**values))
        with self.db.engine.begin() as connection:
            return connection.execute(update).rowcount == 1


#: Ids per ``IN (...)`` list: below every database's parameter limit.
_IN_LIST_IDS = 1000


def _entry(row: sa.RowMapping) -> QueueEntry:
    """A row as an entry, checked as the untrusted input it is (SQLite keeps whatever a
    program writes, 'abc' in ``channel`` included)."""
    values = dict(row)
    values["status"] = QueueStatus(values["status"])  # a CHECK constraint holds it
    channel = values["channel"]
    problem = None
    if isinstance(channel, bool) or not isinstance(channel, int) or channel < 1:
        problem = f"channel {channel!r} is not a station channel number (1, 2, ...)"
        values["channel"] = 0
    else:
        try:
            check_text(values["plan"], "plan")
            if values["plan_source"] is not None:
                check_text(values["plan_source"], "plan_source", length=schema.NAME_LENGTH)
            if values["battery"] is not None:
                check_identifier(values["battery"], "battery")
            if values["name"] is not None:
                check_name(values["name"], "name")
        except TextError as error:
            problem = str(error)
    return QueueEntry(**values, problem=problem)
