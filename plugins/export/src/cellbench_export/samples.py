"""Reading a test's samples from the database in ``seq`` order, a chunk at a time, and the
per-step counters both file formats derive from them."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from cellbench_core.storage import Database, StorageError, schema

#: Samples read per query: bounds the memory an export of a long test needs.
CHUNK_ROWS = 50_000

#: The sample columns an export reads (everything but ``test_id``).
COLUMNS = tuple(c for c in schema.SAMPLE_COLUMNS if c != "test_id")


@dataclass
class Chunk:
    """Consecutive samples of one test: one numpy array per sample column (NULL as NaN) and one
    per aux signal present in the chunk (NaN where a sample has no value)."""

    columns: dict[str, np.ndarray]
    aux: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["seq"])


def aux_names(db: Database, test_id: int) -> list[str]:
    """The names of all aux signals stored for the test so far, sorted."""
    aux = schema.sample_aux
    query = sa.select(aux.c.name).where(aux.c.test_id == int(test_id)).distinct()
    with db.engine.connect() as connection:
        return sorted(connection.execute(query).scalars())


def read_chunk(db: Database, test_id: int, after_seq: int, limit: int = CHUNK_ROWS) -> Chunk:
    """Up to ``limit`` samples of the test with ``seq`` above ``after_seq``, in ``seq`` order.

    Samples and their aux values are committed together, so every aux value of a returned
    sample is returned too.
    """
    samples, aux = schema.samples, schema.sample_aux
    query = (
        sa.select(*(samples.c[name] for name in COLUMNS))
        .where(samples.c.test_id == int(test_id), samples.c.seq > after_seq)
        .order_by(samples.c.seq)
        .limit(limit)
    )
    with db.engine.connect() as connection:
        rows = connection.execute(query).all()
        columns = _arrays(COLUMNS, rows)
        found: dict[str, np.ndarray] = {}
        if rows:
            seq = columns["seq"]
            query = (
                sa.select(aux.c.name, aux.c.seq, aux.c.value)
                .where(aux.c.test_id == int(test_id), aux.c.seq > after_seq,
                       aux.c.seq <= int(seq[-1]))
                .order_by(aux.c.name, aux.c.seq)
            )
            for name, seqs, values in _group_by_name(connection.execute(query).all()):
                column = np.full(len(seq), np.nan)
                column[np.searchsorted(seq, seqs)] = values
                found[name] = column
    return Chunk(columns, found)


def read_all(db: Database, test_id: int, after_seq: int = 0) -> Iterator[Chunk]:
    """Every sample of the test above ``after_seq``, chunk by chunk; StorageError for an
    unknown test."""
    if db.test(test_id) is None:
        raise StorageError(f"no test with id {test_id} in the database")
    while True:
        chunk = read_chunk(db, test_id, after_seq)
        if not len(chunk):
            return
        yield chunk
        after_seq = int(chunk.columns["seq"][-1])


def _arrays(names: tuple[str, ...], rows: Sequence[Sequence[object]]) -> dict[str, np.ndarray]:
    values = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return {
        name: np.array(column, dtype=np.int64 if name in schema.SAMPLE_INT_COLUMNS
                       else np.float64)
        for name, column in zip(names, values, strict=True)
    }


def _group_by_name(rows: Sequence[Sequence[Any]]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    start = 0
    for end in range(1, len(rows) + 1):
        if end == len(rows) or rows[end][0] != rows[start][0]:
            part = rows[start:end]
            yield (rows[start][0], np.array([r[1] for r in part], dtype=np.int64),
                   np.array([r[2] for r in part], dtype=np.float64))
            start = end


@dataclass
class StepCounter:
    """Derives from consecutive samples what the sample table leaves implicit: where a step
    starts, the executed-step count, and charge and energy since the start of the test.

    A sample starts a new step when its step index, plan line or cycle differs from the
    previous sample's, or its step time does not increase. Feed chunks in ``seq`` order; the
    counter carries its state from one chunk to the next.
    """

    step_no: int = 0
    _previous: tuple[int, int, int, float] | None = None
    _ah_before: float = 0.0  # charge of all finished steps
    _wh_before: float = 0.0
    _last_ah: float = 0.0  # charge of the current step so far
    _last_wh: float = 0.0

    def update(self, columns: dict[str, np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each sample: whether it starts a step, the step count (from 1), and the net
        charge [Ah] and energy [Wh] since the start of the test (positive when charging)."""
        rows = len(columns["seq"])
        starts = np.zeros(rows, dtype=bool)
        count = np.zeros(rows, dtype=np.int64)
        net_ah = np.zeros(rows)
        net_wh = np.zeros(rows)
        keys = zip(columns["step_index"].tolist(), columns["plan_line"].tolist(),
                   columns["cycle"].tolist(), columns["step_time_s"].tolist(), strict=True)
        ahs, whs = columns["ah"].tolist(), columns["wh"].tolist()
        for i, key in enumerate(keys):
            previous = self._previous
            if previous is None or key[:3] != previous[:3] or key[3] <= previous[3]:
                starts[i] = True
                self.step_no += 1
                self._ah_before += self._last_ah
                self._wh_before += self._last_wh
                self._last_ah = self._last_wh = 0.0
            self._previous = key
            # A sample without a valid Ah or Wh value keeps the step's last valid one.
            if math.isfinite(ahs[i]):
                self._last_ah = ahs[i]
            if math.isfinite(whs[i]):
                self._last_wh = whs[i]
            count[i] = self.step_no
            net_ah[i] = self._ah_before + self._last_ah
            net_wh[i] = self._wh_before + self._last_wh
        return starts, count, net_ah, net_wh
