"""The notifiers' outbox: rows of ``notify_outbox``, each a message a notifier has to deliver.

A notifier puts every message in the outbox before it tries to send it, so that a peer that is
down (a mail server, a broker) loses nothing: the message waits there, across restarts of the
station, until it is delivered, in the order it was put in. ``event_id`` is unique per notifier
and destination, so putting the same message in twice keeps one row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cellbench_core.storage import schema
from cellbench_core.storage.database import Database
from cellbench_core.text import check_name, check_text


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One message waiting in the outbox (status ``pending``)."""

    id: int
    notifier: str
    destination: str
    event_id: str
    created_unix_s: float
    payload: dict[str, Any]
    attempts: int
    next_attempt_unix_s: float
    last_error: str | None


class Outbox:
    """The outbox of the notifier named ``notifier`` in the database ``db`` (thread-safe, as
    :class:`Database` is)."""

    def __init__(self, db: Database, notifier: str) -> None:
        self.db = db
        self.notifier = check_name(notifier, "the notifier's name", length=schema.KIND_LENGTH)

    def put(self, destination: str, event_id: str, payload: Mapping[str, Any],
            created_unix_s: float) -> bool:
        """Add a message for ``destination`` ('' where the notifier has one peer); False if the
        outbox had it already (by ``event_id``), and then nothing changes."""
        return self.put_many([(destination, event_id, payload, created_unix_s)]) == 1

    def put_many(self, messages: Sequence[tuple[str, str, Mapping[str, Any], float]]) -> int:
        """Add several messages, each (destination, event_id, payload, created_unix_s) as
        :meth:`put` takes them, in one transaction and in this order; return how many were
        new (those the outbox had already are left as they are)."""
        rows = []
        for destination, event_id, payload, created_unix_s in messages:
            check_name(event_id, "event_id", length=schema.EVENT_ID_LENGTH)
            check_text(destination, "destination", length=schema.NAME_LENGTH)
            if not math.isfinite(created_unix_s):
                raise ValueError(f"created_unix_s must be finite, not {created_unix_s!r}")
            rows.append({"notifier": self.notifier, "destination": destination,
                         "event_id": event_id, "created_unix_s": created_unix_s,
                         "payload": json.dumps(payload), "status": "pending", "attempts": 0,
                         "next_attempt_unix_s": created_unix_s})
        if not rows:
            return 0
        table = schema.notify_outbox
        with self.db.engine.begin() as connection:
            have = {(row.destination, row.event_id) for row in connection.execute(
                sa.select(table.c.destination, table.c.event_id).where(
                    table.c.notifier == self.notifier,
                    table.c.event_id.in_({row["event_id"] for row in rows})))}
            new = []
            for row in rows:  # a message given twice is put once
                key = (row["destination"], row["event_id"])
                if key not in have:
                    have.add(key)
                    new.append(row)
            if new:
                connection.execute(sa.insert(table), new)
        return len(new)

    def pending(self, limit: int = 100) -> list[OutboxEntry]:
        """The oldest ``limit`` messages not yet delivered, in the order they were put in."""
        table = schema.notify_outbox
        query = (sa.select(table)
                 .where(table.c.notifier == self.notifier, table.c.status == "pending")
                 .order_by(table.c.id).limit(limit))
        with self.db.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [OutboxEntry(row["id"], row["notifier"], row["destination"], row["event_id"],
                            row["created_unix_s"], json.loads(row["payload"]), row["attempts"],
                            row["next_attempt_unix_s"], row["last_error"]) for row in rows]

    def count(self) -> int:
        """How many messages wait."""
        table = schema.notify_outbox
        query = sa.select(sa.func.count()).select_from(table).where(
            table.c.notifier == self.notifier, table.c.status == "pending")
        with self.db.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def delivered(self, ids: list[int], unix_time_s: float) -> None:
        """Mark the messages ``ids`` delivered."""
        self._finish(ids, "delivered", unix_time_s, None)

    def rejected(self, ids: list[int], unix_time_s: float, error: str) -> None:
        """Mark the messages ``ids`` refused for good by their peer (never retried)."""
        self._finish(ids, "rejected", unix_time_s, error)

    def _finish(self, ids: list[int], status: str, unix_time_s: float,
                error: str | None) -> None:
        table = schema.notify_outbox
        values: dict[str, Any] = {"status": status, "finished_unix_s": unix_time_s}
        if error is not None:
            values["last_error"] = error
        with self.db.engine.begin() as connection:
            connection.execute(sa.update(table).where(
                table.c.notifier == self.notifier, table.c.id.in_(ids)).values(values))

    def failed(self, ids: list[int], error: str, next_attempt_unix_s: float) -> None:
        """Count a failed attempt of the messages ``ids``: the next one is not before
        ``next_attempt_unix_s``."""
        table = schema.notify_outbox
        with self.db.engine.begin() as connection:
            connection.execute(sa.update(table).where(
                table.c.notifier == self.notifier, table.c.id.in_(ids)).values(
                attempts=table.c.attempts + 1, last_error=error,
                next_attempt_unix_s=next_attempt_unix_s))

    def due_now(self, unix_time_s: float) -> None:
        """Make every waiting message due at ``unix_time_s`` (the peer is known to be back)."""
        table = schema.notify_outbox
        with self.db.engine.begin() as connection:
            connection.execute(sa.update(table).where(
                table.c.notifier == self.notifier, table.c.status == "pending",
                table.c.next_attempt_unix_s > unix_time_s).values(
                next_attempt_unix_s=unix_time_s))

    def prune(self, finished_before_unix_s: float) -> int:
        """Delete the delivered and rejected messages finished before the given time; return
        how many."""
        table = schema.notify_outbox
        with self.db.engine.begin() as connection:
            result = connection.execute(sa.delete(table).where(
                table.c.notifier == self.notifier, table.c.status != "pending",
                table.c.finished_unix_s < finished_before_unix_s))
        return int(result.rowcount)
