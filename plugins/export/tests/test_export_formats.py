"""The download formats offered through the SDK (``cellbench_export_formats``): found by
``export_formats()``, streamed a piece per chunk, and byte for byte the files the exporters
write."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cellbench_core.storage import SampleRows, SampleWriter, TestEnd, open_database
from cellbench_export import BdfFormat, write_basytec, write_bdf
from cellbench_sdk.export import export_formats
from cellbench_sdk.storage import aux_names, sample_chunks

StartTest = Callable[..., int]
Batch = Callable[..., SampleRows]


def test_every_format_streams_the_file_the_exporters_write(
        tmp_path: Path, start_test: StartTest, batch: Batch) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'formats.db'}")
    test_id = start_test(db)
    writer = SampleWriter(db)
    for step, first in enumerate((1, 41, 81)):
        writer.submit(batch(test_id, first, 40, step, aux={"chamber_temperature_c": 30.0}))
    writer.close()
    db.finish_tests([TestEnd(test_id, "finished", "done", 1_700_000_200.0)])
    formats = export_formats()
    assert sorted(formats) == ["basytec", "bdf-csv", "bdf-parquet"]
    test = db.test(test_id)
    assert test is not None
    written = {"basytec": tmp_path / "t.txt", "bdf-csv": tmp_path / "t.csv",
               "bdf-parquet": tmp_path / "t.parquet"}
    write_basytec(db, test_id, written["basytec"])
    write_bdf(db, test_id, written["bdf-csv"], BdfFormat.CSV)
    write_bdf(db, test_id, written["bdf-parquet"], BdfFormat.PARQUET)
    aux = aux_names(db, test_id)
    for name, form in formats.items():
        assert written[name].suffix == form.suffix
        pieces = list(form.encode(test, aux, sample_chunks(db, test_id, chunk_rows=50)))
        assert len(pieces) >= 3  # a piece per chunk of samples: streamed
        if name == "bdf-parquet":  # its row groups are the chunks: compare the tables
            streamed = pq.read_table(io.BytesIO(b"".join(pieces)))
            assert streamed.equals(pq.read_table(written[name]))
            assert streamed.num_rows == 120
        else:  # (a bool: pytest's diff of two long files would take minutes)
            assert (b"".join(pieces) == written[name].read_bytes()) is True, name
    stream = io.BytesIO()
    size = formats["bdf-csv"].write(test, aux, sample_chunks(db, test_id), stream)
    assert size == len(stream.getvalue()) == written["bdf-csv"].stat().st_size


def test_a_format_that_cannot_hold_an_aux_signal_fails_before_its_first_piece(
        tmp_path: Path, start_test: StartTest, batch: Batch) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'aux.db'}")
    test_id = start_test(db)
    writer = SampleWriter(db)
    writer.submit(batch(test_id, 1, 5, 0, aux={"Voltage / V": 1.0}))
    writer.close()
    test = db.test(test_id)
    assert test is not None
    pieces = export_formats()["bdf-csv"].encode(test, aux_names(db, test_id),
                                                sample_chunks(db, test_id))
    with pytest.raises(ValueError, match="aux signal 'Voltage / V' has the name of a BDF"):
        next(pieces)
