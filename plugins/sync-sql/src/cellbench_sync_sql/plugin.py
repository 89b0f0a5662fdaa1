"""Registers the ``central-sql`` sync target with cellbench."""

from cellbench_sdk import Descriptor, Kind, hookimpl
from cellbench_sync_sql.settings import CentralSqlSettings


@hookimpl
def cellbench_sync_targets() -> list[Descriptor]:
    """The central SQL server target."""
    return [
        Descriptor(
            Kind.SYNC_TARGET,
            "central-sql",
            "cellbench_sync_sql.target:CentralSqlTarget",
            "many stations into one central SQL database (PostgreSQL, MariaDB/MySQL, ...)",
            CentralSqlSettings,
        )
    ]
