"""Database fixtures: a SQLite file per test, and a fresh database per session on the PostgreSQL
and MariaDB/MySQL servers running on loopback.

Server URLs come from CELLBENCH_TEST_POSTGRES_URL and CELLBENCH_TEST_MYSQL_URL. An unreachable
server skips its tests, or fails them when the CI environment variable is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cellbench_core.storage import Database, open_database
from cellbench_core.storage.schema import metadata

SERVERS = {
    "postgresql": (
        "CELLBENCH_TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        {"connect_timeout": 5},
    ),
    "mysql": (
        "CELLBENCH_TEST_MYSQL_URL",
        "mysql+pymysql://root@127.0.0.1:3306/",
        {"connect_timeout": 5},
    ),
}


def _server_database(backend: str) -> Iterator[str]:
    """Create a uniquely named database on the server, yield its URL, drop it afterwards."""
    variable, default, connect_args = SERVERS[backend]
    server_url = sa.make_url(os.environ.get(variable, default))
    name = f"cellbench_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", connect_args=connect_args)
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
    yield from _server_database("postgresql")


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """URL of a fresh MariaDB/MySQL database for this test session."""
    yield from _server_database("mysql")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.server),
        pytest.param("mysql", marks=pytest.mark.server),
    ]
)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on each backend; the server databases are emptied after each test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'cellbench.sqlite3'}"
        return
    url: str = request.getfixturevalue(f"{'postgres' if request.param == 'postgresql' else 'mysql'}_url")
    yield url
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                if sa.inspect(connection).has_table(table.name):
                    connection.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture
def db(storage_url: str) -> Iterator[Database]:
    """An open, migrated database on each backend."""
    database = open_database(storage_url)
    yield database
    database.close()
