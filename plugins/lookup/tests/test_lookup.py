"""The CSV lookup table: reading, every rejection with file and line, the OSI signals, and its
registration as the ``lookup`` OSI device."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cellbench_lookup.table import LookupSettings, LookupTable, TableError
from cellbench_sdk import VirtualClock
from cellbench_sdk.testing import OsiDeviceContract


def table(tmp_path: Path, text: str | bytes, **settings: int) -> LookupTable:
    path = tmp_path / "table.csv"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return LookupTable(LookupSettings(path=path, **settings))


def test_columns_with_units(tmp_path: Path) -> None:
    read = table(tmp_path, "time [min],current [A], power [mW]\n0,0,1e3\n0.5,-2.5,-20\n\n1,1,.5\n")
    assert read.time_s == (0.0, 30.0, 60.0)
    assert read.columns == {"current": ("A", (0.0, -2.5, 1.0)),
                            "power": ("mW", (1000.0, -20.0, 0.5))}
    assert [(s.name, s.unit, s.writable) for s in read.signals] == [
        ("current", "A", False), ("power", "mW", False)]


def test_signals_read_the_table_over_time_since_open(tmp_path: Path) -> None:
    read = table(tmp_path, "time [s],current [A]\n0,0\n10,2\n")
    clock = VirtualClock()

    async def main() -> list[float]:
        await read.open(clock)
        values = []
        for t in (0.0, 5.0, 20.0):
            await clock.sleep_until(t)
            values.append((await read.read())["current"].value)
        await read.close()
        return values

    assert asyncio.run(main()) == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(("text", "message"), [
    ("", "table.csv:1: the table is empty"),
    ("time,current [A]\n0,1\n", "table.csv:1: column 1: a column heading is a name and its unit"),
    ("root:$6$salt$hash:19000:0:99999:7:::\n", "table.csv:1: column 1: a column heading is "
     "a name and its unit in brackets, like 'current [A]'"),
    ("time [s],a [A],a [A]\n0,1,1\n", "table.csv:1: column 'a' appears twice"),
    ("time [s]\n0\n", "table.csv:1: a table needs a time column and at least one value column"),
    ("time [V],a [A]\n0,1\n", "table.csv:1: the first column is the time, in s, ms, min, h"),
    ("time [s],a [A]\n", "table.csv: the table has no rows"),
    ("time [s],a [A]\n0,1\n1\n", "table.csv:3: expected 2 values, got 1"),
    ("time [s],a [A]\n0,nan\n", "table.csv:2: a: expected a number, got 'nan'"),
    ("time [s],a [A]\n0,１\n", "table.csv:2: a: expected a number"),
    ("time [s],a [A]\n0,1e999\n", "table.csv:2: a: '1e999' is too large"),
    ("time [s],a [A]\n1,1\n", "table.csv:2: the time must start at 0"),
    ("time [s],a [A]\n0,1\n2,1\n2,1\n", "table.csv:4: the time must rise from row to row"),
])
def test_bad_tables_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TableError) as caught:
        table(tmp_path, text)
    assert message in str(caught.value)
    assert "$6$salt" not in str(caught.value)  # a file that is no table is not quoted


def test_files_that_are_not_tables(tmp_path: Path) -> None:
    with pytest.raises(TableError, match=r"table.csv:2: the table is not UTF-8 text"):
        table(tmp_path, b"time [s],a [A]\n0,\xff\n")
    with pytest.raises(TableError, match="cannot read the table"):
        LookupTable(LookupSettings(path=tmp_path / "missing.csv"))
    with pytest.raises(TableError, match="table.csv:4: more than 2 rows"):
        table(tmp_path, "time [s],a [A]\n0,1\n1,1\n2,1\n", max_rows=2)


class TestLookupTable(OsiDeviceContract):
    """The ``lookup`` OSI device keeps the OSI-device contract, as a station builds it."""

    plugin = "cellbench_lookup.plugin"
    name = "lookup"
    entry_point = "lookup"

    @pytest.fixture
    def settings(self, tmp_path: Path) -> dict[str, Any]:
        (tmp_path / "t.csv").write_text("time [s],current [A],power [W]\n0,0,0\n10,2,7\n",
                                        encoding="utf-8")
        return {"path": str(tmp_path / "t.csv")}
