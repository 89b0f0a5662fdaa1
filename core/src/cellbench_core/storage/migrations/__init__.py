"""Alembic migrations of the cellbench schema, run by :func:`cellbench_core.storage.upgrade`."""
