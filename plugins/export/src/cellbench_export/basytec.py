"""BaSyTec-style result files: Latin-1 text, tab-separated, a ``~`` preamble and a ``~`` header.

:class:`BasytecWriter` writes a test's file incrementally: each :meth:`~BasytecWriter.update`
appends the samples committed since the last one, and once the test has ended completes the
preamble in place. The finished file is byte for byte what :func:`write_basytec` writes in one
go. The column layout is documented in docs/export.md.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from cellbench_export.samples import StepCounter
from cellbench_sdk.storage import (
    Database,
    SampleChunk,
    StorageError,
    TestRecord,
    TestStatus,
    aux_names,
    read_sample_chunk,
)

ENCODING = "latin-1"
MAGIC = "Resultfile from Basytec Battery Test System"
#: Dates in the preamble and the DateTime column, in local time (as BaSyTec writes them).
DATE_FORMAT = "%d.%m.%Y %H:%M:%S"
DATETIME_FORMAT = "%d.%m.%Y %H:%M:%S.%f"

#: The fixed columns, in file order; aux signals follow.
COLUMNS = (
    "Time[s]", "DataSet", "DateTime", "t-Step[s]", "t-Set[s]", "Line", "Step", "Command",
    "U[V]", "I[A]", "P[W]", "Ah[Ah]", "Ah-Step", "Wh[Wh]", "Wh-Step", "T1[°C]", "Cyc-Count",
    "State",
)

#: Unit suffixes of aux signal names (``chamber_temperature_c``) and their header form
#: (``chamber_temperature[°C]``).
UNITS = {"c": "°C", "v": "V", "a": "A", "w": "W", "s": "s", "ah": "Ah", "wh": "Wh",
         "pa": "Pa", "ohm": "Ohm", "pct": "%"}
_SUFFIX_OF_UNIT = {unit: suffix for suffix, unit in UNITS.items()}
_UNIT_HEADER = re.compile(r"^(.+)\[([^\[\]]+)\]$")

# Fields completed in place when the test ends, as wide as what completes them so that the
# file's length does not change: the end time is dashes until then, and the status is
# right-aligned (no line ends in spaces).
_END_WIDTH = len("01.01.2000 00:00:00")
_NO_END = b"-" * _END_WIDTH
_STATUS_WIDTH = max(len(s.value) for s in TestStatus)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Enough of a file to hold its preamble and header: all :meth:`BasytecWriter.resume` reads of
#: a file whose test has ended.
_HEAD_BYTES = 1 << 16


def aux_header(name: str) -> str:
    """The column header of an aux signal: ``name_c`` becomes ``name[°C]`` (likewise for the
    other unit suffixes in :data:`UNITS`); other names are written as they are."""
    stem, _, suffix = name.rpartition("_")
    if stem and suffix in UNITS:
        return f"{stem}[{UNITS[suffix]}]"
    return name


def aux_name(header: str) -> str:
    """The aux signal name of a column header: the inverse of :func:`aux_header`."""
    match = _UNIT_HEADER.match(header)
    if match and match.group(2) in _SUFFIX_OF_UNIT:
        return f"{match.group(1)}_{_SUFFIX_OF_UNIT[match.group(2)]}"
    return header


#: Significant digits of a value, as BaSyTec writes them (its published result files).
DIGITS = 15


def number(value: float) -> str:
    """A float as BaSyTec writes it: :data:`DIGITS` significant digits, exponents as ``E-7``
    (``1.259385498273E-7``, ``3.52575489148741``, ``0``); empty for NaN."""
    if math.isnan(value):
        return ""
    if value == 0:
        return "0"  # not -0
    mantissa, exponential, exponent = f"{value:.{DIGITS}g}".partition("e")
    return f"{mantissa}E{int(exponent)}" if exponential else mantissa


def command(current_a: float) -> str:
    """The BaSyTec command a sample's current corresponds to."""
    if current_a > 0:
        return "Charge"
    if current_a < 0:
        return "Discharge"
    return "Pause"


def _text(value: str | None) -> str:
    return _CONTROL.sub(" ", value or "")


def _date(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s).strftime(DATE_FORMAT)


class BasytecWriter:
    """Writes one test's BaSyTec-style result file, appending what is new on each call of
    :meth:`update`.

    The writer remembers the last sample it wrote. If aux signals appear that the file has no
    column for, the file is rewritten with the new columns (atomically, by renaming a
    complete new file over it). A writer made by the constructor starts a new file;
    :meth:`resume` carries on with a file an earlier process wrote. Call it from one thread at
    a time.
    """

    def __init__(self, db: Database, test_id: int, path: Path) -> None:
        self.db = db
        self.test_id = int(test_id)
        self.path = Path(path)
        self.position = 0  #: the ``seq`` of the last sample in the file
        self.rows = 0  #: the number of samples in the file
        self.complete = False  #: whether the test had ended and the file is final
        self._started = False
        self._aux: list[str] = []
        self._counter = StepCounter()
        self._status_at = 0  # byte offsets of the fields completed at the end
        self._end_at = 0

    @classmethod
    def resume(cls, db: Database, test_id: int, path: Path) -> BasytecWriter:
        """A writer that carries on with the test's file at ``path`` where it ends (after a
        restart or a crash: a partly written last line is cut off), so that no sample appears
        twice. A missing file, or one this writer did not write for this test, is started anew
        by the first :meth:`update`."""
        writer = cls(db, test_id, path)
        try:
            with writer.path.open("rb") as file:
                data = file.read(_HEAD_BYTES)
                if f"~Status: {TestStatus.RUNNING.value:>{_STATUS_WIDTH}}".encode() in data or \
                        b"\n~" + COLUMNS[0].encode(ENCODING) not in data:
                    data += file.read()  # the head alone does not settle it
        except FileNotFoundError:
            return writer
        end_label, status_label = b"\n~End of Test: ", b"\n~Status: "
        header_at = data.find(b"\n~" + COLUMNS[0].encode(ENCODING))
        header_end = data.find(b"\n", header_at + 1)
        end_at, status_at = data.find(end_label), data.find(status_label)
        if (not data.startswith(f"~{MAGIC}\n".encode())
                or f"\n~Test id: {writer.test_id}\n".encode() not in data[:max(0, header_at)]
                or min(header_at, header_end, end_at, status_at) < 0):
            return writer  # not this test's file, or its head was cut short
        writer._end_at = end_at + len(end_label)
        writer._status_at = status_at + len(status_label)
        headers = data[header_at + 2:header_end].decode(ENCODING).split("\t")
        writer._aux = [aux_name(h) for h in headers[len(COLUMNS):]]
        writer._started = True
        status = data[writer._status_at:writer._status_at + _STATUS_WIDTH].decode(ENCODING)
        if status.strip() != TestStatus.RUNNING.value:
            writer.complete = True
            return writer
        body = data[header_end + 1:]
        whole = body[:body.rfind(b"\n") + 1]  # a line without its newline was cut short
        if len(whole) < len(body):
            os.truncate(writer.path, header_end + 1 + len(whole))
        lines = whole.splitlines()
        fields = lines[-1].split(b"\t", 2) if lines else [b"", b"0"]
        last = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else -1
        writer._replay(last, len(lines))  # a last line without a DataSet number starts anew
        return writer

    def _replay(self, last: int, rows: int) -> None:
        """Bring the step counter to where it was after sample ``last`` (the file's last of
        ``rows``), reading the samples again; a file that does not match them starts anew."""
        while self.position < last:
            chunk = read_sample_chunk(self.db, self.test_id, self.position)
            keep = chunk.columns["seq"] <= last
            if not keep.any():
                break
            columns = {name: column[keep] for name, column in chunk.columns.items()}
            self._counter.update(columns)
            self.position = int(columns["seq"][-1])
            self.rows += len(columns["seq"])
        if self.position != last or self.rows != rows:
            self.position = self.rows = 0
            self._counter = StepCounter()
            self._started = False

    def update(self) -> int:
        """Append every sample committed since the last call and, if the test has ended,
        complete the file; return the number of samples appended. StorageError if the test
        does not exist."""
        if self.complete:
            return 0
        # Read the status before the samples: a test that has ended has all its samples
        # committed, so everything read afterwards is all there is.
        test = self._test()
        if not self._started:
            self._start(test, self.path, aux_names(self.db, self.test_id))
        before = self.rows
        while True:
            chunk = read_sample_chunk(self.db, self.test_id, self.position)
            if not len(chunk):
                break
            if not set(chunk.aux) <= set(self._aux):
                self._rewrite(test, sorted(set(self._aux) | set(chunk.aux)))
                continue
            with self.path.open("ab") as file:
                file.write(self._rows(chunk))
            self.position = int(chunk.columns["seq"][-1])
            self.rows += len(chunk)
        if test.status is not TestStatus.RUNNING:
            self._finish(test)
        return self.rows - before

    def _test(self) -> TestRecord:
        test = self.db.test(self.test_id)
        if test is None:
            raise StorageError(f"no test with id {self.test_id} in the database")
        return test

    def _rewrite(self, test: TestRecord, aux: list[str]) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        self.position = self.rows = 0
        self._counter = StepCounter()
        self._start(test, temporary, aux)
        with temporary.open("ab") as file:
            while True:
                chunk = read_sample_chunk(self.db, self.test_id, self.position)
                if not len(chunk):
                    break
                file.write(self._rows(chunk))
                self.position = int(chunk.columns["seq"][-1])
                self.rows += len(chunk)
        os.replace(temporary, self.path)

    def _start(self, test: TestRecord, path: Path, aux: list[str]) -> None:
        head, self._end_at, self._status_at = basytec_head(test, aux)
        path.write_bytes(head)
        self._aux = list(aux)
        self._started = True

    def _finish(self, test: TestRecord) -> None:
        end, status = _ending(test)
        with self.path.open("r+b") as file:
            file.seek(self._end_at)
            file.write(end)
            file.seek(self._status_at)
            file.write(status)
        self.complete = True

    def _rows(self, chunk: SampleChunk) -> bytes:
        return basytec_rows(chunk, self._counter, self._aux)


def basytec_head(test: TestRecord, aux: Sequence[str]) -> tuple[bytes, int, int]:
    """The preamble and column header of a test's file as it starts (end time and status to
    be completed), and the byte offsets of the end time and the status; ValueError for an aux
    signal that cannot have a column of its own."""
    headers = [*COLUMNS]
    for name in aux:
        header = aux_header(name)
        if header in headers:  # the unit form is taken: keep the name as it is
            header = name
        if header in headers or aux_name(header) != name:
            raise ValueError(
                f"test {test.id}: aux signal {name!r} cannot be given a column of its "
                "own in a BaSyTec file (its name clashes with another column)")
        try:
            header.encode(ENCODING)
        except UnicodeEncodeError:
            raise ValueError(f"test {test.id}: aux signal {name!r} cannot be written "
                             "in a Latin-1 file") from None
        headers.append(header)
    lines = [
        f"~{MAGIC}",
        "~",
        f"~Name of Test: {_text(test.name)}",
        f"~Battery: {_text(test.battery)}",
        f"~Testplan: {_text(test.plan_name)}",
        f"~Testchannel: {_text(test.channel)}",
        f"~Start of Test: {_date(test.start_unix_s)}",
    ]
    head = "\n".join(line.rstrip() for line in lines).encode(ENCODING, errors="replace") \
        + b"\n"
    end_label, status_label = b"~End of Test: ", b"~Status: "
    end_at = len(head) + len(end_label)
    status_at = end_at + _END_WIDTH + 1 + len(status_label)
    rest = [
        end_label + _NO_END,
        status_label + TestStatus.RUNNING.value.encode().rjust(_STATUS_WIDTH),
        f"~Station: {_text(test.station)}".rstrip().encode(ENCODING, errors="replace"),
        f"~Test id: {test.id}".encode(),
        b"~",
        ("~" + "\t".join(headers)).encode(ENCODING),
    ]
    return head + b"\n".join(rest) + b"\n", end_at, status_at


def _ending(test: TestRecord) -> tuple[bytes, bytes]:
    """The end time and status fields of a test's preamble, as wide as their placeholders."""
    end = _NO_END if test.end_unix_s is None else _date(test.end_unix_s).encode()
    return end, test.status.value.encode().rjust(_STATUS_WIDTH)


def basytec_rows(chunk: SampleChunk, counter: StepCounter, aux: Sequence[str]) -> bytes:
    """The data lines of ``chunk`` (``counter`` carries the step counts from the chunks
    before), with a column for each of ``aux``."""
    c = chunk.columns
    starts, _, net_ah, net_wh = counter.update(c)
    missing = np.full(len(chunk), np.nan)
    values_of = [chunk.aux.get(name, missing).tolist() for name in aux]
    columns = zip(
        c["test_time_s"].tolist(), c["seq"].tolist(), c["unix_time_s"].tolist(),
        c["step_time_s"].tolist(), c["plan_line"].tolist(), c["step_index"].tolist(),
        c["voltage_v"].tolist(), c["current_a"].tolist(), c["power_w"].tolist(),
        net_ah.tolist(), c["ah"].tolist(), net_wh.tolist(), c["wh"].tolist(),
        c["temperature_c"].tolist(), c["cycle"].tolist(), starts.tolist(), *values_of,
        strict=True,
    )
    lines = []
    for (time_s, seq, unix_s, step_s, line, step, u, i, p, ah, ah_step, wh, wh_step, t1,
         cycle, start, *values) in columns:
        stamp = datetime.fromtimestamp(unix_s).strftime(DATETIME_FORMAT)
        fields = [
            number(time_s), str(seq), stamp, number(step_s), number(time_s), str(line),
            str(step), command(i), number(u), number(i), number(p), number(ah),
            number(ah_step), number(wh), number(wh_step), number(t1), str(cycle),
            "0" if start else "1", *(number(v) for v in values),
        ]
        lines.append("\t".join(fields))
    return ("\n".join(lines) + "\n").encode(ENCODING)


def encode_basytec(test: TestRecord, aux: Sequence[str], chunks: Iterable[SampleChunk]
                   ) -> Iterator[bytes]:
    """A test's BaSyTec-style file a piece at a time, its preamble complete as ``test`` says
    (byte for byte what :func:`write_basytec` writes when ``aux`` are the test's signals)."""
    head, end_at, status_at = basytec_head(test, aux)
    end, status = _ending(test)
    completed = bytearray(head)
    completed[end_at:end_at + len(end)] = end
    completed[status_at:status_at + len(status)] = status
    yield bytes(completed)
    counter = StepCounter()
    for chunk in chunks:
        if len(chunk):
            yield basytec_rows(chunk, counter, aux)


def write_basytec(db: Database, test_id: int, path: Path) -> int:
    """Write the test's BaSyTec-style result file as it stands; return the number of samples.

    For a running test the file holds the samples committed so far and says ``running``.
    """
    writer = BasytecWriter(db, test_id, path)
    return writer.update()
