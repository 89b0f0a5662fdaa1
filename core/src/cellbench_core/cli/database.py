"""``cellbench db``, and how every command finds a station's database (``--db``, ``--station``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from cellbench_core.cli.app import app
from cellbench_core.cli.console import console, fail
from cellbench_core.station import StationError, load_station
from cellbench_core.storage import Database, DatabaseOpenError, open_database, upgrade
from cellbench_core.storage.urls import shown

DEFAULT_URL = "sqlite:///cellbench.db"

#: ``--db URL``: the database to use, overriding the station file's.
DbOption = Annotated[str | None, typer.Option(
    "--db", help="Database URL, e.g. sqlite:///lab.db, postgresql+psycopg://host/db or "
                 "mysql+pymysql://user@host/db. Overrides the station file's.",
    show_default=False)]
#: ``--station FILE``: the station whose database to use.
StationOption = Annotated[Path | None, typer.Option(
    "--station", help="Station file (TOML) whose database to use.", show_default=False)]

db_app = typer.Typer(help="The station database: schema upgrades.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def database_url(db: str | None, station: Path | None) -> str:
    """The URL ``--db`` gives, else the station file's, else ``sqlite:///cellbench.db``; a bad
    station file ends the command (exit 2)."""
    if db:
        return db
    if station is None:
        return DEFAULT_URL
    try:
        return load_station(station).station.database
    except StationError as err:
        fail(str(err), code=2)


@contextmanager
def opened(url: str, *, create: bool = False, busy_timeout_s: float = 30.0
           ) -> Iterator[Database]:
    """The database at ``url``, migrated to the newest schema. For reading (the default) a
    missing SQLite file or a database without the cellbench schema is refused; ``create`` (for
    commands that write) creates them. A database that cannot be opened ends the command with
    a one-line error naming the problem and the fix (exit 2). On SQLite a write waits up to
    ``busy_timeout_s`` for another program's write lock."""
    try:
        database = open_database(url, create=create, busy_timeout_s=busy_timeout_s)
    except DatabaseOpenError as err:
        fail(str(err), code=2)
    try:
        yield database
    finally:
        database.close()


@db_app.command("upgrade")
def upgrade_command(db: DbOption = None, station: StationOption = None) -> None:
    """Create or upgrade the database schema to this cellbench's version (Alembic migrations).

    Safe to repeat. Stations upgrade their database when they start; run this to prepare a
    database beforehand (for example on a server, before third-party tools use it).

    Example: cellbench db upgrade --db postgresql+psycopg://cellbench@db.lab/cellbench
    """
    url = database_url(db, station)
    try:
        before, after = upgrade(url)
    except DatabaseOpenError as err:
        fail(str(err), code=2)
    if before == after:
        console.print(f"{shown(url)}: schema is up to date (revision {after})", highlight=False)
    else:
        console.print(f"{shown(url)}: schema upgraded from revision {before or 'none'} to "
                      f"{after}", highlight=False)
