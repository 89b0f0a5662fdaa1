"""Lookup tables for profile steps, loaded through the OSI device registered as ``lookup``.

The core reads no table format itself: the ``lookup`` plugin (distribution cellbench-lookup)
provides the loader, as an OSI device whose settings name the file. The device exposes the table
it read as ``time_s`` and ``columns``. The plan layer looks up no plugins: whoever reads a plan
hands in the loader (``load_plan(path, tables=lookup_tables(plugins.registry))``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from cellbench_core.descriptors import Kind
from cellbench_core.plugins import PluginError, Registry


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


def lookup_tables(registry: Registry) -> TableLoader:
    """The loader of the OSI device ``lookup`` in ``registry`` (the caller's loaded plugins);
    reading a table raises ValueError if no such device is installed."""

    def load(path: Path) -> Table:
        try:
            descriptor = registry.get(Kind.OSI_DEVICE, LOOKUP_DEVICE)
        except PluginError as error:
            raise ValueError(f"profile tables are read by the lookup plugin "
                             f"(cellbench-lookup): {error}") from None
        table: Table = descriptor.create({"path": path})
        return table

    return load


def no_tables(path: Path) -> Table:
    """The loader of a plan read without one: every profile table is an error."""
    raise ValueError(f"{path.name}: profile tables are read by the lookup plugin, and this plan "
                     "was read without the plugins (no table loader was given)")
