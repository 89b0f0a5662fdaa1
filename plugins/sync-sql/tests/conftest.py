"""A station database with running tests, central databases on each backend (a SQLite file, and
fresh databases on the PostgreSQL and MariaDB servers on loopback, from the workspace's
conftest.py), a TCP proxy that plays a server going away, and the comparison of both sides.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from cellbench_core.storage import (
    Database,
    SampleRows,
    SampleWriter,
    StepRow,
    TestEnd,
    TestStart,
    open_database,
    schema,
)
from cellbench_sync_sql import central


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server),
                        pytest.param("mysql", marks=pytest.mark.server)])
def central_url(request: pytest.FixtureRequest, tmp_path: Path,
                fresh_database: Callable[[str], str]) -> str:
    """A fresh, empty central database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.sqlite3'}"
    return fresh_database(request.param)


class Bench:
    """A station's database and writer: tests that run, write samples with an aux signal, finish
    steps, and end."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.writer = SampleWriter(db)
        self.seq: dict[int, int] = {}
        self.steps: dict[int, int] = {}
        self.rng = np.random.default_rng(11)
        if db.battery("cell-A") is None:
            db.add_battery("cell-A", "NMC", 2.5, voltage_max_v=4.2, voltage_min_v=2.5)

    def start(self, count: int) -> list[int]:
        """Start ``count`` tests on new channels."""
        first = len(self.seq)
        ids = self.db.start_tests([TestStart(
            name=f"cycle Ölbad {first + i}", channel=f"sim/{first + i}", driver="sim",
            battery="cell-A", plan_name="cycle", plan_source="cycle.yaml", plan_text="steps: []",
            sample_period_s=0.1, station="bench-1", start_unix_s=1.7e9) for i in range(count)])
        for test_id in ids:
            self.seq[test_id] = self.steps[test_id] = 0
        return ids

    def write(self, test_ids: list[int], ticks: int) -> None:
        """``ticks`` samples for each test (every second one with an aux value) and a finished
        step every 50 samples; committed when this returns."""
        for test_id in test_ids:
            first = self.seq[test_id] + 1
            seq = np.arange(first, first + ticks, dtype=np.int64)
            time_s = np.asarray(seq * 0.1, dtype=np.float64)
            n = len(seq)
            voltage = self.rng.uniform(2.5, 4.2, n)
            voltage[::7] = np.nan  # stored as NULL
            self.writer.submit(SampleRows(
                test_id=np.full(n, test_id, dtype=np.int64), seq=seq,
                test_time_s=time_s, unix_time_s=np.asarray(1.7e9 + time_s, dtype=np.float64),
                step_time_s=np.asarray((seq % 50) * 0.1, dtype=np.float64), voltage_v=voltage,
                current_a=self.rng.uniform(-5, 5, n), power_w=self.rng.uniform(-20, 20, n),
                temperature_c=self.rng.normal(25, 2, n), step_index=seq // 50,
                plan_line=seq // 50 + 3, cycle=seq // 200 + 1, ah=self.rng.normal(0, 1, n),
                wh=self.rng.normal(0, 4, n),
                aux={"cell_2_v": np.where(seq % 2 == 0, self.rng.uniform(2.5, 4.2, n),
                                          np.nan)}))
            self.seq[test_id] += ticks
            while (self.steps[test_id] + 1) * 50 <= self.seq[test_id]:
                no = self.steps[test_id] = self.steps[test_id] + 1
                self.writer.submit_step(StepRow(
                    test_id=test_id, step_no=no, step_index=no - 1, plan_line=no + 2, cycle=1,
                    mode="cc", text="Discharge at 1C until 2.5 V", start_seq=no * 50 - 49,
                    end_seq=no * 50, start_test_time_s=no * 5.0 - 4.9, end_test_time_s=no * 5.0,
                    ah=-0.1 * no, wh=float("nan"), end_reason="voltage <= 2.5 V"))
        self.writer.flush()

    def finish(self, test_ids: list[int]) -> None:
        """End the tests (status ``finished``)."""
        self.db.finish_tests([TestEnd(t, "finished", "plan complete", 1.7e9 + 999)
                              for t in test_ids])

    def close(self) -> None:
        """Stop the writer."""
        self.writer.close()


@pytest.fixture
def new_bench(tmp_path: Path) -> Iterator[Callable[[str], Bench]]:
    """``new_bench(name)``: a station database (a SQLite file) with a battery and a running
    writer; closed afterwards."""
    benches: list[Bench] = []

    def make(name: str) -> Bench:
        benches.append(Bench(open_database(f"sqlite:///{tmp_path / name}.sqlite3")))
        return benches[-1]

    yield make
    for station in benches:
        station.close()
        station.db.close()


@pytest.fixture
def bench(new_bench: Callable[[str], Bench]) -> Bench:
    """A station database with a battery and a running writer."""
    return new_bench("station")


def _normal(value: object) -> object:
    """Numbers as exact float text, so that 3 (INTEGER) and 3.0 (REAL) compare equal."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value).hex()
    return value


#: Tables whose rows are counted and hashed per test; the others are hashed whole.
PER_TEST = ("samples", "sample_aux", "steps")


def digests(url: str, station: str | None = None) -> dict[tuple[str, int], tuple[int, str]]:
    """Row count and SHA-256 of the rows, in key order: per table, and per test for samples,
    aux values and steps (key: (table, test id), 0 for a whole table). ``station`` reads a
    central database's rows of that station."""
    engine = sa.create_engine(url)
    hashes: dict[tuple[str, int], hashlib._Hash] = defaultdict(hashlib.sha256)
    counts: dict[tuple[str, int], int] = defaultdict(int)
    try:
        with engine.connect() as connection:
            for name in ("batteries", "channels", "tests", "events", *PER_TEST):
                table = schema.metadata.tables[name] if station is None else central.TABLES[name]
                columns = [c for c in table.columns if c.name != "origin"]
                keys = [c for c in table.primary_key.columns if c.name != "origin"]
                query = sa.select(*columns).order_by(*keys)
                if station is not None:
                    query = query.where(table.c.origin == station)
                for row in connection.execute(query):
                    key = (name, int(row.test_id) if name in PER_TEST else 0)
                    hashes[key].update(repr(tuple(map(_normal, row))).encode())
                    counts[key] += 1
    finally:
        engine.dispose()
    return {key: (counts[key], hashes[key].hexdigest()) for key in counts}


class Proxy:
    """A TCP proxy on loopback to a server: :meth:`stop` is the server going away mid-transfer
    (every connection cut, nothing listening), :meth:`start` its return on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen (on the same port as before, if started before) and forward connections."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        with self._lock:
            self._sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Cut every connection and stop listening."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):  # a listener, or a connection closed already
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # cut by stop()
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


Digests = dict[tuple[str, int], tuple[int, str]]


@pytest.fixture
def digest() -> Callable[..., Digests]:
    """:func:`digests`: ``digest(url, station=None)``."""
    return digests


@pytest.fixture
def proxied() -> Iterator[Callable[[str], tuple[Proxy, str]]]:
    """``proxied(url) -> (proxy, url through the proxy)``; every proxy stops afterwards."""
    proxies: list[Proxy] = []

    def make(url: str) -> tuple[Proxy, str]:
        parsed = sa.make_url(url)
        proxy = Proxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        proxy.start()
        proxies.append(proxy)
        return proxy, parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)

    yield make
    for proxy in proxies:
        proxy.stop()
