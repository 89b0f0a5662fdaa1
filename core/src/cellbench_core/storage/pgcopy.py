"""PostgreSQL's binary ``COPY ... FROM STDIN``, the fastest way rows enter a PostgreSQL table
(psycopg 3): the statement and the column types for a table, and a copy of rows.

The station's sample writer and the ``central-sql`` sync target both insert this way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa


def copy_statement(dialect: sa.Dialect, table: sa.Table) -> str:
    """``COPY table (columns...) FROM STDIN (FORMAT BINARY)``, every column in table order."""
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c.name) for c in table.columns)
    return f"COPY {quote(table.name)} ({names}) FROM STDIN (FORMAT BINARY)"


def copy_types(table: sa.Table) -> list[str]:
    """The PostgreSQL type name of each column of ``table``, as a binary COPY needs them."""
    return [_pg_type(column) for column in table.columns]


def copy_rows(cursor: Any, dialect: sa.Dialect, table: sa.Table,
              rows: Iterable[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (values in table column order, None for NULL) into ``table`` with one
    binary COPY on ``cursor``, a psycopg 3 cursor."""
    with cursor.copy(copy_statement(dialect, table)) as copy:
        copy.set_types(copy_types(table))
        for row in rows:
            copy.write_row(row)


def _pg_type(column: sa.Column[Any]) -> str:
    if isinstance(column.type, sa.BigInteger):
        return "int8"
    if isinstance(column.type, sa.Integer):
        return "int4"
    if isinstance(column.type, sa.Double):
        return "float8"
    if isinstance(column.type, sa.Boolean):
        return "bool"
    return "text"
