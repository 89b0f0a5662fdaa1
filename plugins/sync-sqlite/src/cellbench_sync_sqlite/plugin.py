"""Registers the ``sqlite-backup`` sync target with cellbench."""

from cellbench_sdk import Descriptor, Kind, hookimpl
from cellbench_sync_sqlite.settings import SqliteBackupSettings


@hookimpl
def cellbench_sync_targets() -> list[Descriptor]:
    """The SQLite backup file target."""
    return [
        Descriptor(
            Kind.SYNC_TARGET,
            "sqlite-backup",
            "cellbench_sync_sqlite.target:SqliteBackupTarget",
            "a continuously updated, always consistent SQLite copy of the station database",
            SqliteBackupSettings,
        )
    ]
