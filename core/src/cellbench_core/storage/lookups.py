"""Finding rows by many keys at once: ``IN`` lists in slices under every database's limit on
parameters, or, for many names, the whole table (a start of 100,000 tests looks up 100,000
channel names)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

T = TypeVar("T")

#: Values per ``IN (...)`` list: under every database's limit on parameters (65,535 on
#: PostgreSQL), however many tests a station starts at once.
_IN_LIST_SIZE = 10_000


def chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``_IN_LIST_SIZE``."""
    for start in range(0, len(values), _IN_LIST_SIZE):
        yield values[start:start + _IN_LIST_SIZE]


#: What an ``IN`` list costs per name, in rows of a whole table read (about 7 on PostgreSQL,
#: 5 on SQLite, 2.5 on MariaDB: SQLAlchemy, the driver and the server each handle every
#: parameter). A station holds about as many channels as it starts tests at once.
_ROWS_PER_NAME = 4


def ids_by_name(connection: Connection, table: sa.Table, names: AbstractSet[str]
                ) -> dict[str, int]:
    """The ids of the rows of ``table`` (channels, batteries) with these ``names``, for those
    that exist: from ``IN`` lists of the names, or from the whole table where reading it costs
    less (its largest id stands for its size)."""
    size = connection.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
    if len(names) * _ROWS_PER_NAME > size:
        return {name: int(i) for name, i in connection.execute(
            sa.select(table.c.name, table.c.id)) if name in names}
    return {name: int(i) for part in chunks(sorted(names)) for name, i in connection.execute(
        sa.select(table.c.name, table.c.id).where(table.c.name.in_(part)))}
