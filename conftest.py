"""Fixtures every test folder of the workspace shares: waiting for something to happen, fresh
databases on the PostgreSQL and MariaDB/MySQL servers running on loopback, the MQTT broker, a
`cellbench serve`
subprocess to watch or a station service served in this process until a test's condition holds,
the plans several test folders run (and the table loader plans with profile
tables are read with), and a station database that tests write
to as a running station would (for the sync targets).

Server URLs come from CELLBENCH_TEST_POSTGRES_URL and CELLBENCH_TEST_MYSQL_URL. An unreachable
server skips its tests, or fails them when the CI environment variable is set (CI must not pass
by skipping them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from cellbench_core.plan.tables import TableLoader, lookup_tables
from cellbench_core.plugins import loaded_plugins
from cellbench_core.service import StationService
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
from cellbench_core.storage.queue import QueueStatus, TestQueue

T = TypeVar("T")

# --- processes the tests start ----------------------------------------------------------------

#: The folder the started processes write their bytecode to, and the PYTHONDONTWRITEBYTECODE
#: it stands in for (put back at the end).
_PYCACHE: tuple[Path, str] | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Let the Python processes the tests start (``cellbench serve``, kill -9 rounds, emulators)
    reuse each other's bytecode where PYTHONDONTWRITEBYTECODE forbids writing it: without it
    every process compiles its ~3,000 modules again (~1 s of CPU each). The bytecode goes to a
    folder of this session outside the source tree, removed at its end, so the tree stays as
    clean as the variable keeps it."""
    global _PYCACHE
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
        _PYCACHE = (Path(tempfile.mkdtemp(prefix="cellbench-test-pycache-")),
                    os.environ.pop("PYTHONDONTWRITEBYTECODE"))
        os.environ["PYTHONPYCACHEPREFIX"] = str(_PYCACHE[0])


def pytest_unconfigure(config: pytest.Config) -> None:
    global _PYCACHE
    if _PYCACHE is not None:
        prefix, os.environ["PYTHONDONTWRITEBYTECODE"] = _PYCACHE
        del os.environ["PYTHONPYCACHEPREFIX"]
        shutil.rmtree(prefix, ignore_errors=True)
        _PYCACHE = None


# --- waiting ----------------------------------------------------------------------------------

#: How long a test waits for something before it fails: long enough for a loaded CI machine,
#: never reached when all is well.
PATIENCE_S = 60.0


#: What should get there: a process, or a callable that is false once it has ended.
Alive = subprocess.Popen[Any] | Callable[[], object]


class _Watch:
    """The end of one wait: what is awaited, when to give up, and what counts as there."""

    def __init__(self, what: str, check: Callable[[Any], object], alive: Alive | None,
                 timeout: float) -> None:
        self.what, self.check, self.timeout = what, check, timeout
        self.alive = (lambda: alive.poll() is None) if isinstance(alive, subprocess.Popen) \
            else alive
        self.deadline = time.monotonic() + timeout

    def reached(self, value: object) -> bool:
        """Whether ``value`` is what was awaited; fails once waiting is hopeless."""
        __tracebackhide__ = True
        if self.check(value):
            return True
        if self.alive is not None and not self.alive():
            raise AssertionError(f"gave up waiting for {self.what}: what should get there has "
                                 f"ended; last seen: {_shown(value)}")
        if time.monotonic() >= self.deadline:
            raise AssertionError(f"waited {self.timeout:g} s for {self.what}; "
                                 f"last seen: {_shown(value)}")
        return False


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 500 else f"{text[:150]} ... {text[-300:]}"


def _wait_until(condition: Callable[[], T], what: str, *, check: Callable[[T], object] = bool,
                alive: Alive | None = None, timeout: float = PATIENCE_S,
                interval: float = 0.02) -> T:
    __tracebackhide__ = True
    watch = _Watch(what, check, alive, timeout)
    while not watch.reached(value := condition()):
        time.sleep(interval)
    return value


async def _wait_until_async(condition: Callable[[], T | Awaitable[T]], what: str, *,
                            check: Callable[[T], object] = bool,
                            alive: Alive | None = None, timeout: float = PATIENCE_S,
                            interval: float = 0.02) -> T:
    __tracebackhide__ = True
    watch = _Watch(what, check, alive, timeout)
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if watch.reached(value):
            return value  # type: ignore[return-value]
        await asyncio.sleep(interval)


WaitUntil = Callable[..., Any]


@pytest.fixture
def wait_until() -> WaitUntil:
    """``wait_until(condition, what, *, check=bool, alive=None, timeout=PATIENCE_S,
    interval=0.02)``: call ``condition()`` every ``interval`` seconds until ``check`` accepts
    its value, and return that value. Fails naming ``what`` was awaited and the last value seen
    after ``timeout`` seconds, or at once when what should get there has ended: ``alive``, a
    process that has exited, or a callable that returns false."""
    return _wait_until


@pytest.fixture
def wait_until_async() -> WaitUntil:
    """``await wait_until_async(...)``: :func:`wait_until` on an event loop; ``condition`` may
    return an awaitable (``lambda: asyncio.to_thread(query)``), which is awaited."""
    return _wait_until_async


def _rows(query: str, db: Path | str | sa.Engine) -> list[tuple[Any, ...]]:
    if isinstance(db, sa.Engine):
        with db.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(query))]
    engine = sa.create_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    try:
        return _rows(query, engine)
    finally:
        engine.dispose()


def _wait_for_rows(query: str, db: Path | str | sa.Engine, expected: object, **options: Any
                   ) -> list[tuple[Any, ...]]:
    __tracebackhide__ = True
    if callable(expected):
        check, what = expected, f"{query} to return the rows awaited"
    else:
        check, what = (lambda rows: rows == expected), f"{query} to return {expected}"
    return _wait_until(lambda: _rows(query, db), what, check=check,
                       **{"interval": 0.05, **options})


@pytest.fixture
def wait_for_rows() -> Callable[..., list[tuple[Any, ...]]]:
    """``wait_for_rows(query, db, expected, **wait_until_options)``: poll until ``query`` on
    ``db`` (a SQLite file, a database URL or an engine) returns the rows ``expected`` (or rows
    that the predicate ``expected`` accepts), and return them."""
    return _wait_for_rows


# --- server databases -------------------------------------------------------------------------

SERVERS = {
    "postgresql": ("CELLBENCH_TEST_POSTGRES_URL",
                   "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    "mysql": ("CELLBENCH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/"),
}


def server_database(backend: str) -> Iterator[str]:
    """Create a uniquely named database on the server, yield its URL, drop it afterwards."""
    variable, default = SERVERS[backend]
    server_url = sa.make_url(os.environ.get(variable, default))
    name = f"cellbench_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            charset = " CHARACTER SET utf8mb4" if backend == "mysql" else ""
            connection.exec_driver_sql(f"CREATE DATABASE {name}{charset}")
    except sa.exc.OperationalError as exc:
        engine.dispose()
        where = server_url.render_as_string(hide_password=True)
        reason = f"{backend} server at {where} ({variable}) is unreachable: {exc.orig}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            connection.exec_driver_sql(f"DROP DATABASE {name}{force}")
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session."""
    yield from server_database("postgresql")


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """URL of a fresh MariaDB/MySQL database for this test session."""
    yield from server_database("mysql")


@pytest.fixture(scope="session")
def tables() -> TableLoader:
    """The installed lookup plugin's table loader, as a station hands it to the plan parser."""
    return lookup_tables(loaded_plugins().registry)


@pytest.fixture
def fresh_database() -> Iterator[Callable[[str], str]]:
    """``fresh_database("postgresql" | "mysql") -> URL``: an empty database for this test only,
    dropped afterwards."""
    made: list[Iterator[str]] = []

    def make(backend: str) -> str:
        made.append(server_database(backend))
        return next(made[-1])

    yield make
    for generator in made:
        next(generator, None)  # runs the drop


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server),
                        pytest.param("mysql", marks=pytest.mark.server)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path,
                 fresh_database: Callable[[str], str]) -> str:
    """A fresh, empty database on each backend: a new SQLite file, and a new database on each
    server (parametrise it indirectly to choose the backends)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / f'database-{uuid.uuid4().hex[:8]}.sqlite3'}"
    return fresh_database(request.param)


# --- the MQTT broker --------------------------------------------------------------------------

#: Mosquitto on the development and CI machines; CELLBENCH_TEST_MQTT ("host:port") names another.
MQTT_BROKER = ("CELLBENCH_TEST_MQTT", "127.0.0.1:1883")


@pytest.fixture(scope="session")
def mqtt_broker() -> tuple[str, int]:
    """(host, port) of the MQTT broker on loopback; skips the test when it is unreachable (fails
    it under CI)."""
    variable, default = MQTT_BROKER
    host, _, port = os.environ.get(variable, default).rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        reason = f"MQTT broker at {host}:{port} ({variable}) is unreachable: {err}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return host, int(port)
# --- cellbench as a process -------------------------------------------------------------------

#: The command line as a user starts it: the installed ``cellbench`` script, beside this Python.
CELLBENCH = [str(Path(sys.executable).with_name("cellbench"))]


def _cellbench(*args: str | Path, cwd: Path | None = None, stdin: str | None = None,
               columns: int = 100) -> subprocess.CompletedProcess[str]:
    __tracebackhide__ = True
    result = subprocess.run([*CELLBENCH, *map(str, args)], cwd=cwd, input=stdin, text=True,
                            capture_output=True, timeout=PATIENCE_S, check=False,
                            env={**os.environ, "COLUMNS": str(columns)})
    if "Traceback" in result.stdout + result.stderr:
        raise AssertionError(f"cellbench {' '.join(map(str, args))} printed a traceback:\n"
                             f"{result.stdout}{result.stderr}")
    return result


@pytest.fixture
def cellbench() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cellbench(*args, cwd=None, stdin=None, columns=100)``: run the installed ``cellbench``
    with ``args`` in a new process on a terminal ``columns`` wide and return it once it has
    ended (its output as text); fails when it printed a traceback anywhere."""
    return _cellbench


@functools.cache
def _app_with_plugin_commands() -> typer.Typer:
    """The ``cellbench`` application with the commands plugins add, added once, as ``main``
    adds them in a process."""
    from cellbench_core.cli import app

    loaded_plugins().hook.cellbench_cli(app=app)
    return app


def _cellbench_in_process(*args: str | Path, cwd: Path | None = None, stdin: str | None = None,
                          columns: int = 100) -> subprocess.CompletedProcess[str]:
    __tracebackhide__ = True
    app = _app_with_plugin_commands()
    with contextlib.chdir(cwd or Path.cwd()):
        result = CliRunner().invoke(app, list(map(str, args)), input=stdin,
                                    env={"COLUMNS": str(columns)})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(*result.exc_info))
        raise AssertionError(f"cellbench {' '.join(map(str, args))} raised:\n{result.output}"
                             f"{trace}")
    if "Traceback" in result.output:
        raise AssertionError(f"cellbench {' '.join(map(str, args))} printed a traceback:\n"
                             f"{result.output}")
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cellbench_in_process() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cellbench_in_process(*args, cwd=None, stdin=None, columns=100)``: the ``cellbench``
    fixture's command run in this process by Typer's test runner, without the ~2 s a new
    process spends importing; the same result (exit code, stdout, stderr apart). Fails on an
    exception the command let out, as ``cellbench`` fails on a printed traceback. What only a
    process shows (the entry point, signals, an exit code set by the interpreter) needs
    ``cellbench``."""
    return _cellbench_in_process


@pytest.fixture
def start_cellbench() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``start_cellbench(*args)``: the installed ``cellbench`` started with ``args`` in a new
    process, its output piped as text; killed at the end of the test if it still runs."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str | Path) -> subprocess.Popen[str]:
        started.append(subprocess.Popen([*CELLBENCH, *map(str, args)], text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


# --- cellbench serve --------------------------------------------------------------------------

def _serve_until_ready(station: Path) -> tuple[subprocess.Popen[str], str]:
    """``cellbench serve --station STATION`` started in a subprocess, once it is ready, and
    its ready line."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from cellbench_core.cli import main; main()", "serve",
         "--station", str(station)], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:  # warnings about interrupted tests may come first
        if " ready: " in line:
            # Keep reading its log, or the station blocks once the pipe is full.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, line
    raise AssertionError(f"cellbench serve exited with {process.wait()} before it was ready")


@pytest.fixture
def serve_until_ready() -> Iterator[Callable[[Path], tuple[subprocess.Popen[str], str]]]:
    """``serve_until_ready(station_file)``: a ready ``cellbench serve`` subprocess and its
    ready line; killed at the end of the test if it still runs."""
    started: list[subprocess.Popen[str]] = []

    def serve(station: Path) -> tuple[subprocess.Popen[str], str]:
        process, line = _serve_until_ready(station)
        started.append(process)
        return process, line

    yield serve
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def start_serving(serve_until_ready: Callable[[Path], tuple[subprocess.Popen[str], str]]
                  ) -> Callable[[Path], subprocess.Popen[str]]:
    """``start_serving(station_file)``: a ready ``cellbench serve`` subprocess; killed at the
    end of the test if it still runs."""
    return lambda station: serve_until_ready(station)[0]


ServeUntil = Callable[..., None]


@pytest.fixture
def serve_until(wait_until_async: Callable[..., Any]) -> ServeUntil:
    """``serve_until(service, done=None, during=None)``: serve ``service`` until ``done()``
    holds (asked off the event loop; by default: until its test queue has nothing queued or
    running), calling ``during`` in a thread once the station is ready; then shut it down.
    Fails if the station stops by itself first."""

    def serve(service: StationService, done: Callable[[], object] | None = None,
              during: Callable[[], None] | None = None) -> None:
        queue = TestQueue(service.db)

        def settled() -> bool:
            return not queue.entries([QueueStatus.QUEUED, QueueStatus.RUNNING])

        async def main() -> None:
            task = asyncio.create_task(service.serve())
            await asyncio.wait({task, asyncio.create_task(service.ready.wait())},
                               return_when=asyncio.FIRST_COMPLETED)
            if during is not None:
                await asyncio.to_thread(during)
            try:
                await wait_until_async(lambda: asyncio.to_thread(done or settled),
                                       "the station to get there", alive=lambda: not task.done())
            except AssertionError:
                if task.done():
                    await task  # its own error, if it failed, says more
                raise
            service.shutdown()
            await task

        asyncio.run(main())

    return serve


# --- plans ------------------------------------------------------------------------------------

#: Plans that tests in several folders run; a plan only one test file runs stays in that file.
SHARED_PLANS = Path(__file__).parent / "tests" / "plans"


@pytest.fixture(scope="session")
def shared_plan() -> Callable[[str], str]:
    """``shared_plan("short")``: the text of ``tests/plans/short.yaml`` (``short``: three minutes
    of charge and discharge; ``long``: a ten-hour discharge)."""
    return lambda name: (SHARED_PLANS / f"{name}.yaml").read_text(encoding="utf-8")


# --- a station database, written as a running station would -----------------------------------

class Bench:
    """A station's database and writer: tests that run, write samples with an aux signal, finish
    steps, and end."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.writer = SampleWriter(db)
        self.seq: dict[int, int] = {}
        self.steps: dict[int, int] = {}
        self.rng = np.random.default_rng(11)
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
        """``ticks`` samples for each test (every second one with an aux value, every seventh
        voltage missing) and a finished step every 50 samples; committed when this returns."""
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
        """Stop the writer and close the database."""
        self.writer.close()
        self.db.close()


@pytest.fixture
def new_bench(tmp_path: Path) -> Iterator[Callable[..., Bench]]:
    """``new_bench(url=None)``: a :class:`Bench` on the database at ``url`` (by default a new
    SQLite file), with a battery and a running writer; closed afterwards."""
    benches: list[Bench] = []

    def make(url: str | None = None) -> Bench:
        url = url or f"sqlite:///{tmp_path / f'station-{len(benches)}.sqlite3'}"
        benches.append(Bench(open_database(url)))
        return benches[-1]

    yield make
    for bench in benches:
        bench.close()


@pytest.fixture
def bench(new_bench: Callable[..., Bench]) -> Bench:
    """A station database in a SQLite file, with a battery and a running writer."""
    return new_bench()


def _normal(value: object) -> object:
    """Numbers as exact float text, so that 3 (INTEGER) and 3.0 (REAL) compare equal."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value).hex()
    return value


#: Tables whose rows are counted and hashed per test; the others are hashed whole.
PER_TEST = ("samples", "sample_aux", "steps")

Digests = dict[tuple[str, int], tuple[int, str]]


def _digests(url: str, station: str | None = None) -> Digests:
    """Row count and SHA-256 of the rows, in key order: per table, and per test for samples,
    aux values and steps (key: (table, test id), 0 for a whole table). ``station`` reads a
    central database's rows of that station (those whose ``origin`` is ``station``), without
    the ``origin`` column."""
    engine = sa.create_engine(url)
    hashes: dict[tuple[str, int], hashlib._Hash] = defaultdict(hashlib.sha256)
    counts: dict[tuple[str, int], int] = defaultdict(int)
    try:
        with engine.connect() as connection:
            for name in ("batteries", "channels", "tests", "events", *PER_TEST):
                # A central table is the station's with ``origin`` added: the same columns.
                table = schema.metadata.tables[name]
                query = sa.select(table).order_by(*table.primary_key.columns)
                if station is not None:
                    query = query.where(sa.column("origin") == station)
                for row in connection.execute(query):
                    key = (name, int(row.test_id) if name in PER_TEST else 0)
                    hashes[key].update(repr(tuple(map(_normal, row))).encode())
                    counts[key] += 1
    finally:
        engine.dispose()
    return {key: (counts[key], hashes[key].hexdigest()) for key in counts}


@pytest.fixture
def digest() -> Callable[..., Digests]:
    """``digest(url, station=None)``: a database's content, to compare with another's: per
    table (key ``(table, 0)``), and per test for samples, aux values and steps (key
    ``(table, test id)``), the row count and a SHA-256 of the rows in key order. ``station``
    reads the rows a central database holds for that station."""
    return _digests
