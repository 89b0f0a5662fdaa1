"""Reading a test's samples in ``seq`` order a chunk at a time, as numpy arrays: what exporters
and other readers of long tests use, so that memory stays bounded whatever the test's length."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from cellbench_core.storage import schema
from cellbench_core.storage.records import StorageError

if TYPE_CHECKING:  # the database module reads its samples with sample_arrays()
    from cellbench_core.storage.database import Database

#: Samples read per query unless the caller says: about 10 MB of arrays.
CHUNK_ROWS = 50_000

#: The sample columns a chunk holds (every column of ``samples`` but ``test_id``).
CHUNK_COLUMNS = tuple(c for c in schema.SAMPLE_COLUMNS if c != "test_id")


@dataclass
class SampleChunk:
    """Consecutive samples of one test: one numpy array per column of :data:`CHUNK_COLUMNS`
    (integer columns int64, the rest float64 with NaN for NULL) and one per aux signal present
    in the chunk (NaN where a sample has no value)."""

    columns: dict[str, np.ndarray]
    aux: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["seq"])


def sample_arrays(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Result rows of sample columns ``names`` as one numpy array per column (NULL as NaN)."""
    columns = zip(*rows, strict=True) if rows else ([] for _ in names)
    return {
        name: np.array(values, dtype=np.int64 if name in schema.SAMPLE_INT_COLUMNS else np.float64)
        for name, values in zip(names, columns, strict=True)
    }


def aux_names(db: Database, test_id: int) -> list[str]:
    """The names of every aux signal stored for the test so far, sorted."""
    aux = schema.sample_aux
    query = sa.select(aux.c.name).where(aux.c.test_id == int(test_id)).distinct()
    with db.engine.connect() as connection:
        return sorted(connection.execute(query).scalars())


def read_sample_chunk(db: Database, test_id: int, after_seq: int = 0,
                      limit: int = CHUNK_ROWS) -> SampleChunk:
    """Up to ``limit`` committed samples of the test with ``seq`` above ``after_seq``, in
    ``seq`` order (an empty chunk when there are none, or no such test).

    Samples and their aux values are committed together, so every aux value of a returned
    sample is returned too.
    """
    with db.engine.connect() as connection:
        return read_chunk_from(connection, schema.samples, schema.sample_aux,
                               lambda table: table.c.test_id == int(test_id), after_seq, limit)


def read_chunk_from(connection: sa.Connection, samples: sa.Table, sample_aux: sa.Table,
                    test: Callable[[sa.Table], sa.ColumnElement[bool]], after_seq: int = 0,
                    limit: int = CHUNK_ROWS) -> SampleChunk:
    """:func:`read_sample_chunk` over tables laid out like ``samples`` and ``sample_aux`` (a
    central database's copies, keyed by station as well), ``test(table)`` selecting the test's
    rows of either."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    query = (
        sa.select(*(samples.c[name] for name in CHUNK_COLUMNS))
        .where(test(samples), samples.c.seq > after_seq)
        .order_by(samples.c.seq)
        .limit(limit)
    )
    rows = connection.execute(query).all()
    columns = sample_arrays(CHUNK_COLUMNS, rows)
    found: dict[str, np.ndarray] = {}
    if rows:
        seq = columns["seq"]
        query = (
            sa.select(sample_aux.c.name, sample_aux.c.seq, sample_aux.c.value)
            .where(test(sample_aux), sample_aux.c.seq > after_seq,
                   sample_aux.c.seq <= int(seq[-1]))
            .order_by(sample_aux.c.name, sample_aux.c.seq)
        )
        for name, seqs, values in _group_by_name(connection.execute(query).all()):
            column = np.full(len(seq), np.nan)
            column[np.searchsorted(seq, seqs)] = values
            found[name] = column
    return SampleChunk(columns, found)


def sample_chunks(db: Database, test_id: int, after_seq: int = 0,
                  chunk_rows: int = CHUNK_ROWS) -> Iterator[SampleChunk]:
    """Every committed sample of the test above ``after_seq``, ``chunk_rows`` at a time in
    ``seq`` order; StorageError for an unknown test. Samples committed while iterating are
    included."""
    if db.test(test_id) is None:
        raise StorageError(f"no test with id {test_id} in the database")
    while True:
        chunk = read_sample_chunk(db, test_id, after_seq, chunk_rows)
        if not len(chunk):
            return
        yield chunk
        after_seq = int(chunk.columns["seq"][-1])


def _group_by_name(rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    start = 0
    for end in range(1, len(rows) + 1):
        if end == len(rows) or rows[end][0] != rows[start][0]:
            part = rows[start:end]
            yield (rows[start][0], np.array([r[1] for r in part], dtype=np.int64),
                   np.array([r[2] for r in part], dtype=np.float64))
            start = end


#: The columns :func:`recent_samples` returns unless told.
RECENT_COLUMNS = ("seq", "unix_time_s", "test_time_s", "voltage_v", "current_a",
                  "temperature_c", "step_index", "cycle")


def recent_samples(db: Database, test_id: int, span_s: float,
                   columns: Sequence[str] = RECENT_COLUMNS) -> dict[str, np.ndarray]:
    """The committed samples of the test's last ``span_s`` seconds of test time (the newest
    sample's ``test_time_s`` minus ``span_s`` on; ``0``: the newest sample alone), in ``seq``
    order, one numpy array per sample column of ``columns``; empty arrays when it has none
    (what a notifier shows of the moments before an alarm). Reads only the rows it returns,
    however long the test: by ``seq`` from the newest back, as far as the test's sample period
    says ``span_s`` reaches."""
    if not span_s >= 0:
        raise ValueError(f"span_s must be a number of seconds >= 0, not {span_s!r}")
    unknown = [c for c in columns if c not in CHUNK_COLUMNS]
    if unknown:
        raise ValueError(f"no sample column {unknown[0]!r}; there are {', '.join(CHUNK_COLUMNS)}")
    samples, tests = schema.samples, schema.tests
    test_id = int(test_id)
    with db.engine.connect() as connection:
        newest = connection.execute(
            sa.select(samples.c.seq, samples.c.test_time_s, tests.c.sample_period_s)
            .join(tests, tests.c.id == samples.c.test_id)
            .where(samples.c.test_id == test_id)
            .order_by(samples.c.seq.desc()).limit(1)).first()
        if newest is None:
            return sample_arrays(list(columns), [])
        last_seq, last_time, period = newest
        # Samples come one period apart (more apart after a pause, never closer).
        first_seq = last_seq - int(span_s / period) - 1
        query = (sa.select(*(samples.c[c] for c in columns))
                 .where(samples.c.test_id == test_id, samples.c.seq > first_seq,
                        samples.c.test_time_s >= last_time - span_s)
                 .order_by(samples.c.seq))
        return sample_arrays(list(columns), connection.execute(query).all())
