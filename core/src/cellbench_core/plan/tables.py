"""Lookup tables for profile steps, loaded through the OSI device registered as ``lookup``.

The core reads no table format itself: the ``lookup`` plugin (distribution cellbench-lookup)
provides the loader, as an OSI device whose settings name the file. The device exposes the table
it read as ``time_s`` and ``columns``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Protocol


class Table(Protocol):
    """A table as a lookup device exposes it: times (s) and value columns with their units."""

    @property
    def time_s(self) -> Sequence[float]:
        """The time of each row (s), from 0, rising."""

    @property
    def columns(self) -> Mapping[str, tuple[str, Sequence[float]]]:
        """Each value column's name -> (unit as written, values)."""


#: Reads the table file at a path; raises ValueError (naming file and line) on a bad table.
TableLoader = Callable[[Path], Table]

LOOKUP_DEVICE = "lookup"


@cache
def plugin_table_loader() -> TableLoader:
    """The loader of the installed ``lookup`` OSI device; raises ValueError if there is none."""
    from cellbench_core.descriptors import Kind
    from cellbench_core.plugins import PluginError, PluginManager

    manager = PluginManager()
    manager.load()
    try:
        descriptor = manager.registry.get(Kind.OSI_DEVICE, LOOKUP_DEVICE)
    except PluginError as error:
        raise ValueError(f"profile tables are read by the lookup plugin (cellbench-lookup): "
                         f"{error}") from None

    def load(path: Path) -> Table:
        table: Table = descriptor.create({"path": path})
        return table

    return load
