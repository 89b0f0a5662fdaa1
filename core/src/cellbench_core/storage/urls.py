"""Database URLs: the one check made before any database is opened (by a command, a station or
a sync), and errors that say what is wrong with a URL and how to fix it."""

from __future__ import annotations

import sqlalchemy as sa

#: The driver each server backend is used with (installed with cellbench), for URLs that name a
#: backend without it or with a driver that is not installed.
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
            "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}

#: What a database URL looks like, for messages about one that is not.
EXAMPLES = ("sqlite:///lab.db, postgresql+psycopg://user@host/db or "
            "mysql+pymysql://user:password@host/db")


class DatabaseOpenError(ValueError):
    """A database cannot be opened: a malformed URL, a driver that is not installed, a database
    that does not exist or cannot be reached. The message names the URL (without its password),
    the problem, and the fix."""


def shown(url: str | sa.URL) -> str:
    """``url`` without its password, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return str(url)


def checked_url(url: str) -> sa.URL:
    """``url`` parsed, with its dialect and driver known to be installed; otherwise a
    :class:`DatabaseOpenError` naming the problem and the URL to use instead."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        # "sqlite:lab.db" or "lab.db": a SQLite file is meant; suggest its URL (an absolute
        # path keeps its leading slash: sqlite:////abs/lab.db).
        file = url.removeprefix("sqlite:")
        hint = (f"for a SQLite file write sqlite:///{file}" if "://" not in url
                else f"expected e.g. {EXAMPLES}")
        raise DatabaseOpenError(f"{url!r} is not a database URL; {hint}") from None
    backend = parsed.get_backend_name()
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except sa.exc.NoSuchModuleError:
        raise DatabaseOpenError(_with_driver(parsed, f"there is no database type "
                                                     f"{parsed.drivername!r}")) from None
    except ImportError as err:
        raise DatabaseOpenError(_with_driver(
            parsed, f"its driver {err.name or parsed.get_driver_name()!r} is not installed"
        )) from None
    if backend == "sqlite":
        path = parsed.database
        if not path or path == ":memory:" or parsed.query.get("mode") == "memory":
            raise DatabaseOpenError(
                f"{shown(parsed)}: an in-memory SQLite database cannot be shared with the "
                "sample writer thread; give a file path, e.g. sqlite:///lab.db")
    return parsed


def _with_driver(parsed: sa.URL, problem: str) -> str:
    driver = _DRIVERS.get(parsed.get_backend_name())
    if driver is None:
        return f"{shown(parsed)}: {problem}; expected e.g. {EXAMPLES}"
    fixed = parsed.set(drivername=driver)
    return f"{shown(parsed)}: {problem}; write {driver}:// instead: {shown(fixed)}"


def unavailable(parsed: sa.URL, error: sa.exc.DBAPIError) -> DatabaseOpenError:
    """The error for a server that refused ``parsed``'s database: a database that does not exist
    (with how to create it), or the server's own reason."""
    reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
    code = error.orig.args[0] if error.orig is not None and error.orig.args else None
    backend = parsed.get_backend_name()
    missing = (backend == "postgresql" and "does not exist" in reason) or \
        (backend in ("mysql", "mariadb") and code == 1049)
    if missing:
        name = parsed.database
        create = (f"createdb -h {parsed.host or 'localhost'} -U {parsed.username or 'postgres'}"
                  f" {name}" if backend == "postgresql"
                  else f"mysql -h {parsed.host or 'localhost'} -e 'CREATE DATABASE {name}'")
        return DatabaseOpenError(
            f"{shown(parsed)}: the database {name!r} does not exist; create it ({create}), "
            f"then cellbench db upgrade --db {shown(parsed)} creates its tables")
    return DatabaseOpenError(f"cannot open the database {shown(parsed)}: {reason}")
