"""A lookup table read from a CSV file.

The first row names the columns, each with its unit in brackets; the first column is the time
(in ``s``, ``ms``, ``min`` or ``h``), starting at 0 and rising; every other column holds values::

    time [s],current [A],power [W]
    0,0,0
    1,-2.5,-9.1
    2,1.2,4.4

Numbers are plain ASCII decimals (a dot, an optional exponent); NaN, infinities, empty cells and
ragged rows are errors that name the file and line; nothing of the first row is quoted in them
before it is known to be a row of headings (a plan may name any file as its table). As an OSI
device the table's value columns are its signals: each reads the column's value (linear between
rows) at the time since ``open``.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cellbench_sdk import (
    Clock,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Reading,
    SignalInfo,
    WhileOpen,
)

MAX_TABLE_BYTES = 64 << 20
_HEADER = re.compile(r"\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*\[\s*(?P<unit>[^\]]+?)\s*\]\s*",
                     re.ASCII)
_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*", re.ASCII)
_SECONDS = {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}


class TableError(ValueError):
    """A table file is unreadable or malformed; the message names the file and line."""


class LookupSettings(BaseModel):
    """Settings of a lookup table: the CSV file it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    path: Path
    """The CSV file."""
    max_rows: Annotated[int, Field(ge=1)] = 1_000_000
    """Most data rows the table may have."""


class LookupTable(OsiDevice):
    """A CSV table: ``time_s`` and value ``columns`` (name -> (unit, values)), read at creation
    so that plans can be checked against it before anything runs."""

    virtual_time_ok = True
    name = "lookup"

    def __init__(self, settings: LookupSettings) -> None:
        self.settings = settings
        self.name = f"lookup:{settings.path.name}"
        self.time_s, self.columns = _read(settings.path, settings.max_rows)
        self._clock = WhileOpen[Clock](self)
        self._t0 = 0.0

    @property
    def signals(self) -> Sequence[SignalInfo]:
        return [SignalInfo(name, unit, description=f"column {name} of {self.settings.path.name}")
                for name, (unit, _) in self.columns.items()]

    async def open(self, clock: Clock) -> None:
        self._clock.set(clock)
        self._t0 = clock.now()

    async def close(self) -> None:
        self._clock.clear()

    async def read(self) -> Mapping[str, Reading]:
        now = self._clock.get().now()
        t = now - self._t0
        return {name: Reading(float(np.interp(t, self.time_s, values)), now)
                for name, (_, values) in self.columns.items()}

    async def write(self, signal: str, value: float) -> None:
        self._clock.get()  # refuses when not open
        if signal not in self.columns:
            raise OutOfRange(self.name, f"no signal {signal!r}")
        raise NotSupported(self.name, "a lookup table has no writable signals")


def _read(path: Path, max_rows: int) -> tuple[tuple[float, ...],
                                              dict[str, tuple[str, tuple[float, ...]]]]:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_TABLE_BYTES + 1)
    except OSError as error:
        raise TableError(f"{path}: cannot read the table: {error.strerror or error}") from None
    if len(data) > MAX_TABLE_BYTES:
        raise TableError(f"{path}: the table is larger than {MAX_TABLE_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise TableError(f"{path}:{line}: the table is not UTF-8 text") from None
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if not header:
        raise TableError(f"{path}:1: the table is empty; the first row names the columns, "
                         "like 'time [s],current [A]'")
    names, units = [], []
    for position, cell in enumerate(header, 1):
        match = _HEADER.fullmatch(cell)
        if match is None:  # not quoted: until its headings are read, the file may be any file
            raise TableError(f"{path}:1: column {position}: a column heading is a name and its "
                             "unit in brackets, like 'current [A]'")
        if match["name"] in names:
            raise TableError(f"{path}:1: column {match['name']!r} appears twice")
        names.append(match["name"])
        units.append(match["unit"])
    if len(names) < 2:
        raise TableError(f"{path}:1: a table needs a time column and at least one value column")
    if units[0] not in _SECONDS:
        raise TableError(f"{path}:1: the first column is the time, in {', '.join(_SECONDS)}; "
                         f"got {units[0]!r}")
    values: list[list[float]] = [[] for _ in names]
    for index, row in enumerate(rows):
        line = index + 2
        if not row:
            continue
        if index >= max_rows:
            raise TableError(f"{path}:{line}: more than {max_rows} rows")
        if len(row) != len(names):
            raise TableError(f"{path}:{line}: expected {len(names)} values, got {len(row)}")
        for column, cell in enumerate(row):
            if _NUMBER.fullmatch(cell) is None:
                raise TableError(f"{path}:{line}: {names[column]}: expected a number, got "
                                 f"{cell[:40]!r}")
            number = float(cell)
            if not math.isfinite(number):
                raise TableError(f"{path}:{line}: {names[column]}: {cell.strip()!r} is too large")
            values[column].append(number)
    if not values[0]:
        raise TableError(f"{path}: the table has no rows")
    time = np.array(values[0]) * _SECONDS[units[0]]
    if time[0] != 0.0:
        raise TableError(f"{path}:2: the time must start at 0")
    falling = np.flatnonzero(np.diff(time) <= 0)
    if len(falling):
        raise TableError(f"{path}:{int(falling[0]) + 3}: the time must rise from row to row")
    columns = {name: (unit, tuple(column))
               for name, unit, column in zip(names[1:], units[1:], values[1:], strict=True)}
    return tuple(time.tolist()), columns
