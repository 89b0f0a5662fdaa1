"""Alembic environment: migrates the connection that :mod:`cellbench_core.storage` passes in.

To write a new revision, generate it against a database at the current head, for example::

    config = alembic.config.Config()
    config.set_main_option("script_location", "cellbench_core.storage:migrations")
    config.attributes["connection"] = connection
    alembic.command.revision(config, "what changes", autogenerate=True)

then review it, and keep :mod:`cellbench_core.storage.schema` equal to the result.
"""

from alembic import context

from cellbench_core.storage.schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "cellbench migrations run on a connection passed in config.attributes['connection'];"
        " use cellbench_core.storage.upgrade(url)"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
