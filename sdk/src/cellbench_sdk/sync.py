"""What a sync-target plugin implements and builds on (docs/sync.md).

A descriptor of kind ``Kind.SYNC_TARGET`` builds a :class:`SyncTarget` from its settings; the
station calls ``open()``, then ``sync_once(local)`` again and again, and ``close()``. A target
that copies the station's tables keeps a :class:`ChangeFeed` started at the :class:`Positions`
its destination holds, writes each :meth:`ChangeFeed.read` in one destination transaction with
:func:`write_changes` (through its own :class:`RowSink`), then :meth:`ChangeFeed.advance`\\ s
and returns :func:`report`. :func:`run_sync` runs a target the way the station does.
"""

from cellbench_core.synctargets import (
    IN_LIST_KEYS,
    ChangeFeed,
    Changes,
    Positions,
    RefusalRecord,
    RefusedRow,
    Row,
    RowSink,
    SyncReport,
    SyncTarget,
    TestPosition,
    in_chunks,
    is_refusal,
    refused_rows,
    report,
    run_sync,
    write_changes,
)

__all__ = [
    "IN_LIST_KEYS",
    "ChangeFeed",
    "Changes",
    "Positions",
    "RefusalRecord",
    "RefusedRow",
    "Row",
    "RowSink",
    "SyncReport",
    "SyncTarget",
    "TestPosition",
    "in_chunks",
    "is_refusal",
    "refused_rows",
    "report",
    "run_sync",
    "write_changes",
]
