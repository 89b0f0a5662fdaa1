"""Storage: the SQL database every measurement goes to (SQLite by default, or MariaDB/MySQL or
PostgreSQL by SQLAlchemy URL), its schema and migrations, and the batching sample writer.

The schema is public and documented for other tools in docs/schema.md.
"""

from cellbench_core.storage.database import Database, open_database, upgrade
from cellbench_core.storage.outbox import Outbox, OutboxEntry
from cellbench_core.storage.reading import (
    CHUNK_ROWS,
    SampleChunk,
    aux_names,
    read_chunk_from,
    read_sample_chunk,
    recent_samples,
    sample_chunks,
)
from cellbench_core.storage.records import (
    BatteryRecord,
    CycleRecord,
    EventRecord,
    PositionRecord,
    PositionRow,
    SampleRows,
    StartWithdrawn,
    StepRecord,
    StepRow,
    StorageError,
    StorageFailure,
    TestEnd,
    TestRecord,
    TestStart,
)
from cellbench_core.storage.urls import DatabaseOpenError
from cellbench_core.storage.writer import SampleWriter

__all__ = [
    "CHUNK_ROWS",
    "BatteryRecord",
    "CycleRecord",
    "Database",
    "DatabaseOpenError",
    "EventRecord",
    "Outbox",
    "OutboxEntry",
    "PositionRecord",
    "PositionRow",
    "SampleChunk",
    "SampleRows",
    "SampleWriter",
    "StartWithdrawn",
    "StepRecord",
    "StepRow",
    "StorageError",
    "StorageFailure",
    "TestEnd",
    "TestRecord",
    "TestStart",
    "aux_names",
    "open_database",
    "read_chunk_from",
    "read_sample_chunk",
    "recent_samples",
    "sample_chunks",
    "upgrade",
]
