"""A station's database as exporters, importers and sync targets use it.

Read a test with :class:`Database` (``tests()``, ``test(id)``, ``steps(id)``, ``events(id)``)
and its samples with :func:`sample_chunks`, a bounded chunk of numpy arrays at a time in
``seq`` order, so that no plugin writes its own SQL against the station's tables::

    from cellbench_sdk.storage import open_database, sample_chunks

    db = open_database("sqlite:///cellbench.db")
    for chunk in sample_chunks(db, test_id, chunk_rows=10_000):
        print(chunk.columns["seq"][-1], chunk.columns["voltage_v"].max(), sorted(chunk.aux))

Importers write tests with :meth:`Database.start_tests` / :meth:`Database.finish_tests` and
their samples and steps through a :class:`SampleWriter`. :mod:`schema` holds the tables
(docs/schema.md) for targets that keep a copy of them; :func:`copy_rows` inserts rows into
PostgreSQL the fastest way.
"""

from cellbench_core.events import TestStatus
from cellbench_core.storage import (
    CHUNK_ROWS,
    BatteryRecord,
    CycleRecord,
    Database,
    DatabaseOpenError,
    EventRecord,
    SampleChunk,
    SampleRows,
    SampleWriter,
    StepRecord,
    StepRow,
    StorageError,
    TestEnd,
    TestRecord,
    TestStart,
    aux_names,
    open_database,
    read_chunk_from,
    read_sample_chunk,
    recent_samples,
    sample_chunks,
    schema,
    upgrade,
)
from cellbench_core.storage.pgcopy import copy_rows, copy_statement, copy_types
from cellbench_core.storage.records import AUX_NAME_LENGTH

__all__ = [
    "AUX_NAME_LENGTH",
    "CHUNK_ROWS",
    "BatteryRecord",
    "CycleRecord",
    "Database",
    "DatabaseOpenError",
    "EventRecord",
    "SampleChunk",
    "SampleRows",
    "SampleWriter",
    "StepRecord",
    "StepRow",
    "StorageError",
    "TestEnd",
    "TestRecord",
    "TestStart",
    "TestStatus",
    "aux_names",
    "copy_rows",
    "copy_statement",
    "copy_types",
    "open_database",
    "read_chunk_from",
    "read_sample_chunk",
    "recent_samples",
    "sample_chunks",
    "schema",
    "upgrade",
]
