"""Fixtures every test folder of the workspace shares: fresh databases on the PostgreSQL and
MariaDB/MySQL servers running on loopback, a `cellbench serve` subprocess to watch, and the
table loader that plans with profile tables are read with.

Server URLs come from CELLBENCH_TEST_POSTGRES_URL and CELLBENCH_TEST_MYSQL_URL. An unreachable
server skips its tests, or fails them when the CI environment variable is set (CI must not pass
by skipping them).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cellbench_core.plan.tables import TableLoader, lookup_tables
from cellbench_core.plugins import loaded_plugins

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


#: How long a test waits for a station subprocess to reach a state.
PATIENCE_S = 60.0


def _wait_for(query: str, db: Path, expected: object) -> None:
    """Poll the SQLite database ``db`` until ``query`` returns ``expected``."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        with sqlite3.connect(db) as con:
            found = con.execute(query).fetchall()
        if found == expected:
            return
        assert time.monotonic() < deadline, f"{query}: {found}, expected {expected}"
        time.sleep(0.05)


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


def _start_serving(station: Path) -> subprocess.Popen[str]:
    return _serve_until_ready(station)[0]


@pytest.fixture
def wait_for() -> Callable[[str, Path, object], None]:
    """``wait_for(query, sqlite_file, expected)``: poll until the query returns ``expected``."""
    return _wait_for


@pytest.fixture
def start_serving() -> Callable[[Path], subprocess.Popen[str]]:
    """``start_serving(station_file)``: a ready ``cellbench serve`` subprocess."""
    return _start_serving


@pytest.fixture
def serve_until_ready() -> Callable[[Path], tuple[subprocess.Popen[str], str]]:
    """``serve_until_ready(station_file)``: a ready ``cellbench serve`` subprocess and its
    ready line."""
    return _serve_until_ready
