"""One station per database: the lease a process holds while it runs tests on a station
database (``cellbench serve``, ``cellbench run``), so that a second one refuses to start
instead of driving, ending or resuming the first one's tests.

Each backend holds it by a lock that dies with the process, so a crashed station leaves nothing
to clean up: SQLite by an exclusive lock on a file beside the database (``flock``; ``msvcrt``
on Windows), PostgreSQL by a session advisory lock and MariaDB/MySQL by ``GET_LOCK``, each on a
connection of its own kept open for the lease's life. Who holds it (station, host, pid, since)
is written to the table ``station_leases`` once it is held, for the refusal to name.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import sqlalchemy as sa

from cellbench_core.storage import schema
from cellbench_core.storage.database import Database
from cellbench_core.storage.records import (
    StorageError,
    StorageFailure,
    driver_message,
    is_storage_fault,
)

#: PostgreSQL advisory lock key of the station lease (advisory locks are per database).
_PG_KEY = 0x63656C6C62656E63  # "cellbenc"


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a database's station lease."""

    station: str
    host: str
    pid: int
    since_unix_s: float

    def __str__(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since_unix_s))
        return f"station {self.station!r} (host {self.host}, pid {self.pid}, since {since})"


class LeaseHeld(StorageError):
    """Another process runs a station on this database."""

    def __init__(self, url: str, holder: LeaseHolder | None) -> None:
        self.holder = holder
        who = str(holder) if holder is not None else "another process"
        super().__init__(f"{url}: {who} already runs tests on this database; one station per "
                         "database (stop it first, or give this one a database of its own)")


class StationLease:
    """The station lease of ``db`` for ``station``: held from :meth:`acquire` (or entering the
    ``with`` block) until :meth:`release` or the process ends."""

    def __init__(self, db: Database, station: str) -> None:
        self.db, self.station = db, station
        self._file: IO[bytes] | None = None
        self._connection: sa.Connection | None = None
        self._unlock = sa.text("SELECT 1")  # what gives the server's lock back

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()

    def acquire(self, wait_s: float = 2.0) -> None:
        """Take the lease, trying for up to ``wait_s`` (a server notices a killed holder's
        session going in its own time), or raise :class:`LeaseHeld` naming who holds it.

        A station that holds the lease writes to the database: the lease is taken only once
        the database accepted a probe write (:meth:`Database.probe_writes`); else it is given
        back and :class:`StorageFailure` raised, before anything else changed."""
        deadline = time.monotonic() + wait_s
        while not self._try():
            if time.monotonic() >= deadline:
                raise LeaseHeld(self.db.engine.url.render_as_string(hide_password=True),
                                self.holder())
            time.sleep(0.2)
        try:
            self._record()
            self.db.probe_writes()
        except Exception as err:
            self.release()
            if not is_storage_fault(err):
                raise
            raise StorageFailure(
                f"the database does not accept writes ({driver_message(err)}): the station "
                "does not start, and its tests stay as they were until it does") from err

    def _try(self) -> bool:
        """Take the lease if it is free; whether it is held now."""
        if self._file is not None or self._connection is not None:
            return True
        backend = self.db.engine.dialect.name
        if backend == "sqlite":
            held = self._lock_file()
        else:
            connection = self.db.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT")
            if backend == "postgresql":
                query = sa.text("SELECT pg_try_advisory_lock(:key)").bindparams(key=_PG_KEY)
                self._unlock = sa.text("SELECT pg_advisory_unlock(:key)").bindparams(key=_PG_KEY)
            else:  # GET_LOCK is server-wide: the name says which database
                name = f"cellbench:{self.db.engine.url.database}"[:64]
                query = sa.text("SELECT GET_LOCK(:name, 0)").bindparams(name=name)
                self._unlock = sa.text("SELECT RELEASE_LOCK(:name)").bindparams(name=name)
            held = bool(connection.execute(query).scalar())
            if held:
                self._connection = connection
            else:
                connection.close()
        return held

    def release(self) -> None:
        """Give the lease up (idempotent); ending the process does the same."""
        if self._connection is not None:
            # Unlocked at once (a server ends a closed session's locks in its own time), and
            # the session ended rather than handed back to the pool.
            self._connection.execute(self._unlock)
            self._connection.invalidate()
            self._connection.close()
            self._connection = None
        if self._file is not None:
            self._file.close()  # and with the file's descriptor
            self._file = None

    def holder(self) -> LeaseHolder | None:
        """Who last took the lease (the holder, while it is held)."""
        table = schema.station_leases
        with self.db.engine.connect() as connection:
            row = connection.execute(sa.select(table)).first()
        if row is None:
            return None
        return LeaseHolder(row.station, row.host, row.pid, row.since_unix_s)

    def _record(self) -> None:
        table = schema.station_leases
        with self.db.engine.begin() as connection:
            connection.execute(table.delete())
            connection.execute(table.insert().values(
                station=self.station, host=socket.gethostname(), pid=os.getpid(),
                since_unix_s=time.time()))

    def _lock_file(self) -> bool:
        path = Path(self.db.engine.url.database or "")
        handle = open(path.with_name(path.name + ".station-lock"), "a+b")  # noqa: SIM115
        try:
            if sys.platform == "win32":
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True
