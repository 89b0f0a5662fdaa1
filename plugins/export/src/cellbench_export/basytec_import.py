"""Reading BaSyTec result files (as BaSyTec and :mod:`cellbench_export.basytec` write them)
and storing them as tests in a cellbench database."""

from __future__ import annotations

import contextlib
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from cellbench_export.basytec import DATE_FORMAT, DATETIME_FORMAT, ENCODING, MAGIC, aux_name
from cellbench_export.samples import StepCounter
from cellbench_sdk.storage import (
    AUX_NAME_LENGTH,
    CHUNK_ROWS,
    Database,
    SampleRows,
    SampleWriter,
    StepRow,
    TestEnd,
    TestStart,
    TestStatus,
    schema,
)

#: Driver name of channels that imported tests are recorded on when the channel is new.
IMPORT_DRIVER = "basytec-import"

#: Time and step-time columns by unit, as factors to seconds.
_TIME_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}
_VOLTAGE_UNITS = {"V": 1.0, "mV": 1e-3}
_CURRENT_UNITS = {"A": 1.0, "mA": 1e-3}
_UNIT = re.compile(r"^(.*)\[(.*)\]$")
# Columns the importer reads itself or derives again (everything else numeric becomes aux).
_TEXT_COLUMNS = frozenset({"DateTime", "Command"})
_DERIVED = frozenset({"DataSet", "t-Set[s]", "t-Set[h]", "t-Set[min]", "Ah[Ah]", "Wh[Wh]",
                      "State"})


class BasytecFileError(ValueError):
    """A BaSyTec file could not be read; the message names the file, line and column."""


@dataclass
class BasytecFile:
    """A BaSyTec result file as read: its preamble entries, its samples in SI units (columns
    named as in the ``samples`` table) and the steps found in them."""

    path: Path
    preamble: dict[str, str]
    preamble_text: str
    columns: dict[str, np.ndarray]
    aux: dict[str, np.ndarray]
    commands: list[str]
    start_unix_s: float | None
    end_unix_s: float | None
    status: TestStatus

    def __len__(self) -> int:
        return len(self.columns["seq"])


def _parse_date(path: Path, line: int, text: str) -> float:
    for form in (DATETIME_FORMAT, DATE_FORMAT):
        try:
            return datetime.strptime(text.strip(), form).timestamp()
        except ValueError:
            continue
    raise BasytecFileError(f"{path}:{line}: {text.strip()!r} is not a date like "
                           "'19.06.2023 17:56:53'")


class _Reader:
    """Reads a result file line by line into numpy columns, naming file, line and column of
    every fault."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.preamble: dict[str, str] = {}
        self.preamble_lines: dict[str, int] = {}
        self.preamble_text: list[str] = []
        self.headers: list[str] = []
        self.header_line = 0
        self.text: dict[str, list[str]] = {}  # the text columns
        self.numbers: dict[str, np.ndarray] = {}
        self.line_of_row = np.zeros(0, dtype=np.int64)

    def fail(self, line: int, message: str) -> BasytecFileError:
        return BasytecFileError(f"{self.path}:{line}: {message}")

    def column(self, name: str) -> str:
        return f"column {name!r} (column {self.headers.index(name) + 1})"

    def read(self) -> None:
        with self.path.open(encoding=ENCODING, newline=None) as file:
            first = file.readline().rstrip("\n")
            if MAGIC.lower() not in first.lower():
                raise self.fail(1, f"not a BaSyTec result file (the first line must be "
                                   f"'~{MAGIC}')")
            self.preamble_text.append(first)
            number, line = 1, file.readline()
            while line.startswith("~"):
                self.preamble_text.append(line.rstrip("\n"))
                number, line = number + 1, file.readline()
            self._header(number)  # the last "~" line
            for base, units in (("Time", _TIME_UNITS), ("U", _VOLTAGE_UNITS),
                                ("I", _CURRENT_UNITS)):
                self.unit_column(base, units, True)  # before reading a long file's rows
            self._rows(number + 1, line, file)

    def _header(self, line: int) -> None:
        if line < 2:
            raise self.fail(2, "the file has no column header ('~Time[s]\\tDataSet\\t...' on "
                               "the line before the data)")
        for n, text in enumerate(self.preamble_text[1:-1], start=2):
            key, sep, value = text[1:].partition(":")
            if sep:
                self.preamble[key.strip()] = value.strip()
                self.preamble_lines[key.strip()] = n
        self.header_line = line
        self.headers = self.preamble_text[-1][1:].split("\t")
        for name in self.headers:
            if self.headers.count(name) > 1:
                raise self.fail(line, f"column {name!r} appears twice")

    def _rows(self, number: int, line: str, rest: Iterator[str]) -> None:
        kinds = [name in _TEXT_COLUMNS for name in self.headers]
        width = len(self.headers)
        text: list[list[str]] = [[] for _ in self.headers]
        blocks: list[np.ndarray] = []
        lines: list[int] = []
        block: list[list[float]] = []
        for n, raw in enumerate(itertools.chain([line], rest), start=number):
            raw = raw.rstrip("\n")
            if not raw.strip():
                continue
            fields = raw.split("\t")
            if len(fields) != width:
                raise self.fail(n, f"{len(fields)} fields, but the header has {width} columns")
            values = []
            for k, field in enumerate(fields):
                if kinds[k]:
                    text[k].append(field.strip())
                    values.append(math.nan)
                    continue
                field = field.strip()
                try:
                    value = float(field) if field else math.nan
                except ValueError:
                    value = math.inf
                if field and not math.isfinite(value):
                    raise self.fail(n, f"{self.column(self.headers[k])}: {field!r} is not a "
                                       "finite number")
                values.append(value)
            block.append(values)
            lines.append(n)
            if len(block) == CHUNK_ROWS:
                blocks.append(np.array(block, dtype=np.float64))
                block = []
        if block:
            blocks.append(np.array(block, dtype=np.float64))
        if not lines:
            raise self.fail(self.header_line + 1, "the file has no data rows")
        table = np.concatenate(blocks)
        self.line_of_row = np.array(lines, dtype=np.int64)
        for k, name in enumerate(self.headers):
            if kinds[k]:
                self.text[name] = text[k]
            else:
                self.numbers[name] = table[:, k]

    def values(self, name: str, *, integer: bool = False, required: bool = False
               ) -> np.ndarray:
        """A numeric column; NaN where empty."""
        values = self.numbers[name]
        if required and np.isnan(values).any():
            row = int(np.flatnonzero(np.isnan(values))[0])
            raise self.fail(int(self.line_of_row[row]), f"{self.column(name)} is empty")
        if integer:
            bad = np.flatnonzero(~np.isnan(values) & (values != np.round(values)))
            if len(bad):
                raise self.fail(int(self.line_of_row[bad[0]]),
                                f"{self.column(name)}: {float(values[bad[0]])!r} is not an integer")
        return values

    def unit_column(self, base: str, units: dict[str, float], required: bool
                    ) -> tuple[str, float]:
        """The column ``base[unit]`` with a unit of ``units``, and its factor to SI."""
        for name in self.headers:
            match = _UNIT.match(name)
            if match and match.group(1) == base and match.group(2) in units:
                return name, units[match.group(2)]
        if required:
            raise self.fail(self.header_line, f"the header has no {base} column ("
                            + " or ".join(f"'{base}[{u}]'" for u in units) + ")")
        return "", 1.0

    def increasing(self, name: str, values: np.ndarray, *, strictly: bool) -> None:
        steps = np.diff(values)
        bad = np.flatnonzero(steps <= 0 if strictly else steps < 0)
        if len(bad):
            raise self.fail(int(self.line_of_row[bad[0] + 1]),
                            f"column {name!r} must increase from row to row" if strictly
                            else f"column {name!r} goes back in time")

    def date(self, key: str) -> float | None:
        """A preamble date (None if absent or ``-``)."""
        text = self.preamble.get(key, "")
        return _parse_date(self.path, self.preamble_lines[key], text) if text.strip("- ") else None

    def status(self) -> TestStatus:
        if "Status" not in self.preamble:
            return TestStatus.FINISHED
        try:
            return TestStatus(self.preamble["Status"])
        except ValueError:
            allowed = ", ".join(s.value for s in TestStatus)
            raise self.fail(self.preamble_lines["Status"], f"status {self.preamble['Status']!r} "
                            f"is not one of {allowed}") from None


def read_basytec(path: Path) -> BasytecFile:
    """Read a BaSyTec result file; BasytecFileError names file, line and column of a fault."""
    r = _Reader(Path(path))
    r.read()
    time_col, time_factor = r.unit_column("Time", _TIME_UNITS, True)
    u_col, u_factor = r.unit_column("U", _VOLTAGE_UNITS, True)
    i_col, i_factor = r.unit_column("I", _CURRENT_UNITS, True)
    step_col, step_factor = r.unit_column("t-Step", _TIME_UNITS, False)
    count = len(r.line_of_row)
    time_s = r.values(time_col, required=True) * time_factor
    r.increasing(time_col, time_s, strictly=False)
    if "DataSet" in r.numbers:
        r.increasing("DataSet", r.values("DataSet", integer=True, required=True), strictly=True)
    start_s, end_s, status = r.date("Start of Test"), r.date("End of Test"), r.status()
    if "DateTime" in r.text:
        unix_s = np.array([_parse_date(r.path, int(n), text) for n, text
                           in zip(r.line_of_row, r.text["DateTime"], strict=True)])
    elif start_s is not None:
        unix_s = start_s + time_s
    else:
        raise r.fail(r.header_line, "neither a DateTime column nor a '~Start of Test:' line "
                                    "says when the samples were taken")

    def optional(name: str, default: float, *, integer: bool = False) -> np.ndarray:
        return (r.values(name, integer=integer, required=integer) if name in r.numbers
                else np.full(count, default))

    line = optional("Line", 0, integer=True)
    columns: dict[str, np.ndarray] = {
        "seq": np.arange(1, count + 1, dtype=np.int64),
        "test_time_s": time_s,
        "unix_time_s": unix_s,
        "voltage_v": r.values(u_col) * u_factor,
        "current_a": r.values(i_col) * i_factor,
        "temperature_c": optional("T1[°C]", math.nan),
        "plan_line": line.astype(np.int64),
        "cycle": optional("Cyc-Count", 0, integer=True).astype(np.int64),
    }
    # A file without cellbench's Step column numbers steps by their line in the test plan.
    step_index = optional("Step", math.nan, integer=True)
    columns["step_index"] = np.where(np.isnan(step_index), np.maximum(line - 1, 0),
                                     step_index).astype(np.int64)
    columns["power_w"] = (r.values("P[W]") if "P[W]" in r.numbers
                          else columns["voltage_v"] * columns["current_a"])
    if step_col:
        columns["step_time_s"] = r.values(step_col, required=True) * step_factor
    else:
        columns["step_time_s"] = _since_step_start(columns, time_s)
    starts = _step_starts(columns)
    for per_step, total in (("ah", "Ah"), ("wh", "Wh")):
        if f"{total}-Step" in r.numbers:
            columns[per_step] = r.values(f"{total}-Step")
        elif f"{total}[{total}]" in r.numbers:
            columns[per_step] = _per_step(r.values(f"{total}[{total}]"), starts)
        else:
            columns[per_step] = np.full(count, math.nan)
    known = {time_col, u_col, i_col, step_col, "T1[°C]", "Line", "Cyc-Count", "Step", "P[W]",
             "Ah-Step", "Wh-Step", *_DERIVED}
    aux: dict[str, np.ndarray] = {}
    for name, values in r.numbers.items():
        if name in known or np.isnan(values).all():
            continue
        signal = aux_name(name)
        if not 0 < len(signal) <= AUX_NAME_LENGTH or signal in schema.SAMPLE_COLUMNS:
            raise r.fail(r.header_line, f"{r.column(name)} cannot be stored as an aux signal "
                         f"(its name must be 1 to {AUX_NAME_LENGTH} characters and not that of "
                         "a sample column)")
        aux[signal] = values
    commands = r.text.get("Command", [""] * count)
    return BasytecFile(r.path, r.preamble, "\n".join(r.preamble_text) + "\n", columns, aux,
                       commands, start_s, end_s, status)


def _step_starts(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Where steps start, by the rule the exporter uses (see :class:`StepCounter`)."""
    probe = {**columns, "ah": np.zeros(len(columns["seq"])), "wh": np.zeros(len(columns["seq"]))}
    starts, *_ = StepCounter().update(probe)
    return starts


def _since_step_start(columns: dict[str, np.ndarray], time_s: np.ndarray) -> np.ndarray:
    # Without step times, a step is known by its line, step and cycle alone.
    probe = {**columns, "step_time_s": np.arange(len(time_s), dtype=np.float64)}
    starts = _step_starts(probe)
    first = np.maximum.accumulate(np.where(starts, np.arange(len(time_s)), 0))
    since: np.ndarray = time_s - time_s[first]
    return since


def _per_step(total: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """A since-the-test-started counter turned into a since-the-step-started one."""
    index = np.arange(len(total))
    first = np.maximum.accumulate(np.where(starts, index, 0))
    before = np.where(first > 0, total[np.maximum(first - 1, 0)], 0.0)
    return total - before


def _steps(test_id: int, data: BasytecFile) -> list[StepRow]:
    c = data.columns
    starts = np.flatnonzero(_step_starts(c))
    ends = np.append(starts[1:] - 1, len(data) - 1)
    steps = []
    for number, (first, last) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True),
                                           start=1):
        commands = [cmd for cmd in data.commands[first:last + 1] if cmd and cmd != "Pause"]
        text = commands[0] if commands else "Pause"
        steps.append(StepRow(
            test_id=test_id, step_no=number, step_index=int(c["step_index"][first]),
            plan_line=int(c["plan_line"][first]), cycle=int(c["cycle"][first]),
            mode="rest" if text == "Pause" else text.lower()[:16], text=text,
            start_seq=int(c["seq"][first]), end_seq=int(c["seq"][last]),
            # The step started one step time before its first sample.
            start_test_time_s=float(c["test_time_s"][first] - c["step_time_s"][first]),
            end_test_time_s=float(c["test_time_s"][last]),
            ah=float(c["ah"][last]), wh=float(c["wh"][last]),
            end_reason="imported from a BaSyTec file",
            **_flows(c, first, last)))
    return steps


def _flows(columns: dict[str, np.ndarray], first: int, last: int) -> dict[str, float]:
    """What went in and out over the samples ``first..last`` of one step (from their counts
    since the step began, which start at zero), and the temperature's range."""
    flows: dict[str, float] = {}
    for unit in ("ah", "wh"):
        moved = np.diff(np.r_[0.0, np.nan_to_num(columns[unit][first:last + 1])])
        flows[f"charge_{unit}"] = float(moved[moved > 0].sum())
        flows[f"discharge_{unit}"] = float(-moved[moved < 0].sum())
    temperature = columns["temperature_c"][first:last + 1]
    if not np.isnan(temperature).all():
        flows["temperature_min_c"] = float(np.nanmin(temperature))
        flows["temperature_max_c"] = float(np.nanmax(temperature))
    return flows


def import_basytec(db: Database, path: Path, *, battery: str | None = None,
                   channel: str | None = None, station: str = "import") -> int:
    """Store a BaSyTec result file as a new test (samples, aux signals and reconstructed steps)
    and return its id.

    The whole file is read and checked before anything is written. ``battery`` must name a
    stored battery; without it, the file's ``~Battery:`` is used if a battery of that name is
    stored. ``channel`` defaults to the file's ``~Testchannel:``.
    """
    data = read_basytec(path)
    pre = data.preamble
    if battery is None and pre.get("Battery") and db.battery(pre["Battery"]) is not None:
        battery = pre["Battery"]
    c = data.columns
    positive = np.diff(c["test_time_s"])
    positive = positive[positive > 0]
    start_unix = (data.start_unix_s if data.start_unix_s is not None
                  else float(c["unix_time_s"][0] - c["test_time_s"][0]))
    end_unix = (data.end_unix_s if data.end_unix_s is not None
                else float(c["unix_time_s"][-1]))
    status, reason = data.status, f"imported from {data.path.name}"
    if status is TestStatus.RUNNING:
        status = TestStatus.INTERRUPTED
        reason += " (the test was still running when the file was written)"
    [test_id] = db.start_tests([TestStart(
        name=pre.get("Name of Test") or data.path.stem,
        channel=channel or pre.get("Testchannel") or "basytec",
        driver=IMPORT_DRIVER, battery=battery,
        plan_name=pre.get("Testplan") or "imported", plan_source=str(data.path),
        plan_text=data.preamble_text,
        sample_period_s=float(np.median(positive)) if len(positive) else 1.0,
        station=station, start_unix_s=start_unix)])
    writer = SampleWriter(db)
    try:
        for first in range(0, len(data), CHUNK_ROWS):
            part = slice(first, first + CHUNK_ROWS)
            size = len(c["seq"][part])
            writer.submit(SampleRows(
                test_id=np.full(size, test_id, dtype=np.int64),
                aux={name: values[part].copy() for name, values in data.aux.items()},
                **{name: values[part].copy() for name, values in c.items()}))
        for step in _steps(test_id, data):
            writer.submit_step(step)
        writer.close()
    except BaseException as exc:
        with contextlib.suppress(Exception):  # the error that stopped the import is reported
            writer.close()
        db.finish_tests([TestEnd(test_id, TestStatus.FAILED.value,
                                 f"import of {data.path.name} failed: {exc}", end_unix)])
        raise
    db.finish_tests([TestEnd(test_id, status.value, reason, end_unix)])
    return test_id
