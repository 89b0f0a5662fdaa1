"""Battery Data Format (BDF) files: one row per sample, columns labelled ``Quantity / unit``,
as CSV or Parquet. The columns are documented in docs/export.md."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from cellbench_export.samples import StepCounter
from cellbench_sdk.export import Pieces
from cellbench_sdk.storage import Database, SampleChunk, aux_names, sample_chunks

#: BDF column label -> the sample column it holds; the derived ones are computed.
COLUMNS = {
    "Test Time / s": "test_time_s",
    "Unix Time / s": "unix_time_s",
    "Voltage / V": "voltage_v",
    "Current / A": "current_a",
    "Power / W": "power_w",
    "Cycle Count / 1": "cycle",
    "Step Count / 1": None,
    "Step Index / 1": "step_index",
    "Step Time / s": "step_time_s",
    "Step Capacity / Ah": "ah",
    "Step Energy / Wh": "wh",
    "Net Capacity / Ah": None,
    "Net Energy / Wh": None,
    "Surface Temperature T1 / degC": "temperature_c",
}


class BdfFormat(StrEnum):
    """The file formats a BDF table can be written in."""

    CSV = "csv"
    PARQUET = "parquet"


def _table(chunk: SampleChunk, counter: StepCounter, aux: list[str]) -> pa.Table:
    c = chunk.columns
    _, count, net_ah, net_wh = counter.update(c)
    derived = {"Step Count / 1": count, "Net Capacity / Ah": net_ah, "Net Energy / Wh": net_wh}
    arrays = {}
    for label, column in COLUMNS.items():
        values = derived[label] if column is None else c[column]
        # No value is a null in the file, never NaN (which BDF readers would take as a value).
        mask = np.isnan(values) if values.dtype.kind == "f" else None
        arrays[label] = pa.array(values, mask=mask)
    missing = np.full(len(chunk), np.nan)
    for name in aux:
        values = chunk.aux.get(name, missing)
        arrays[name] = pa.array(values, mask=np.isnan(values))
    return pa.table(arrays)


def _schema(aux: list[str]) -> pa.Schema:
    fields = [pa.field(label, pa.int64() if label.endswith("/ 1") else pa.float64())
              for label in COLUMNS]
    return pa.schema(fields + [pa.field(name, pa.float64()) for name in aux])


def encode_bdf(test_id: int, aux: Sequence[str], chunks: Iterable[SampleChunk],
               form: BdfFormat) -> Iterator[bytes]:
    """A test's BDF file a piece at a time (a piece per chunk of samples; a Parquet file's
    footer comes last). ValueError before the first piece for an aux signal named like a BDF
    column."""
    clash = [name for name in aux if name in COLUMNS]
    if clash:
        raise ValueError(f"test {test_id}: aux signal {clash[0]!r} has the name of a BDF column")
    schema = _schema(list(aux))
    counter = StepCounter()
    sink = Pieces()
    writer: pq.ParquetWriter | pa_csv.CSVWriter
    if form is BdfFormat.PARQUET:
        writer = pq.ParquetWriter(sink, schema)
    else:
        writer = pa_csv.CSVWriter(sink, schema)
    rows = 0
    with writer:
        for chunk in chunks:
            # Aux signals that appeared after the aux names were read belong to a later export.
            writer.write_table(_table(chunk, counter, list(aux)).cast(schema))
            rows += len(chunk)
            yield sink.take()
        if not rows:  # a header (or Parquet schema) even for a test without samples
            writer.write_table(schema.empty_table())
    yield sink.take()


def write_bdf(db: Database, test_id: int, path: Path, form: BdfFormat) -> int:
    """Write the test's samples as committed so far as a BDF file; return the number of rows.

    The file is written under a temporary name and renamed into place when complete.
    """
    path = Path(path)
    aux = aux_names(db, test_id)
    temporary = path.with_name(path.name + ".tmp")
    rows = 0

    def counted() -> Iterator[SampleChunk]:
        nonlocal rows
        for chunk in sample_chunks(db, test_id):
            rows += len(chunk)
            yield chunk

    try:
        with temporary.open("wb") as file:
            for piece in encode_bdf(test_id, aux, counted(), form):
                file.write(piece)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return rows
