"""The central database's Alembic migrations (see env.py), and how a revision changes the
schema while stations keep writing.

Every step of a revision is idempotent: on MariaDB/MySQL each DDL statement commits on its
own, so a revision interrupted half-way (the process killed) is simply run again, skipping
what it already made.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op


def create_table_if_missing(name: str, *columns: Any) -> None:
    """``op.create_table(name, *columns)`` unless the table exists."""
    if not sa.inspect(op.get_bind()).has_table(name):
        op.create_table(name, *columns)


def create_view_if_missing(name: str, create: str) -> None:
    """Run ``create`` (a ``CREATE VIEW name ...`` statement) unless the view exists."""
    if name not in sa.inspect(op.get_bind()).get_view_names():
        op.execute(create)


def create_index_online(name: str, table: str, columns: list[str]) -> None:
    """Create index ``name`` on ``table`` without blocking the stations' inserts and deletes,
    unless a valid one exists already (so an interrupted upgrade can simply run again).

    PostgreSQL: ``CREATE INDEX CONCURRENTLY``, outside a transaction (an invalid index left by
    an interrupted build is dropped first); MariaDB/MySQL: an in-place build with ``LOCK=NONE``;
    elsewhere a plain ``CREATE INDEX``.
    """
    bind = op.get_bind()
    dialect = bind.dialect.name
    quote = bind.dialect.identifier_preparer.quote
    listed = ", ".join(quote(column) for column in columns)
    if dialect == "postgresql":
        with op.get_context().autocommit_block():
            valid = bind.execute(sa.text(
                "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(:name)"),
                {"name": name}).scalar()
            if valid:
                return
            if valid is not None:
                op.execute(f"DROP INDEX CONCURRENTLY {quote(name)}")
            op.execute(f"CREATE INDEX CONCURRENTLY {quote(name)} ON {quote(table)} ({listed})")
        return
    if any(index["name"] == name for index in sa.inspect(bind).get_indexes(table)):
        return
    online = " ALGORITHM=INPLACE LOCK=NONE" if dialect in ("mysql", "mariadb") else ""
    op.execute(f"CREATE INDEX {quote(name)} ON {quote(table)} ({listed}){online}")


def drop_index_online(name: str, table: str) -> None:
    """Drop index ``name`` of ``table`` (concurrently on PostgreSQL)."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        quoted = bind.dialect.identifier_preparer.quote(name)
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quoted}")
        return
    op.drop_index(name, table_name=table)
