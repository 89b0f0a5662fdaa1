"""Alembic environment of the central database: migrates the connection that
:func:`cellbench_sync_sql.central.upgrade` passes in, one transaction per revision, so that a
revision may build an index outside any transaction (``CREATE INDEX CONCURRENTLY``) while
stations go on syncing.

These migrations are separate from the station database's (their own version table,
``cellbench_central_alembic_version``). To write a new revision, generate it against a central
database at the current head (``script_location`` ``cellbench_sync_sql:migrations``), review it,
and keep :mod:`cellbench_sync_sql.central` equal to the result. Revisions must be additive
(new tables, nullable columns, indexes built without blocking writes): stations of the previous
version keep syncing into the upgraded database.
"""

from alembic import context

from cellbench_sync_sql.central import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "central migrations run on a connection passed in config.attributes['connection'];"
        " use cellbench_sync_sql.central.upgrade(engine)"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    transaction_per_migration=True,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
