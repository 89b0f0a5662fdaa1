"""Values written to and read from the database."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cellbench_core.events import TestStatus
from cellbench_hal.types import FloatArray, IntArray

#: Longest name of an aux signal (``sample_aux.name``).
AUX_NAME_LENGTH = 64


class StorageError(RuntimeError):
    """A database operation failed; the message says which and why."""


class StartWithdrawn(StorageError):
    """The caller of :meth:`Database.start_tests` withdrew the start: nothing was recorded."""


class StorageFailure(StorageError):
    """The database has not accepted writes for longer than a station retries them (a full
    disk, another program holding its write lock, a server that is gone): the station stops
    safely. The message is one line."""


def is_storage_fault(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is the database failing to store, as opposed to
    refusing what was written: an ``OSError``, or a driver's ``OperationalError`` or
    ``InterfaceError`` (PEP 249: a full disk, a lock held too long, a connection cut). Such
    faults may pass, so writes are retried for a while."""
    seen: BaseException | None = error
    for _ in range(5):  # the error, and what it was raised from
        if seen is None:
            break
        if isinstance(seen, OSError) or any(
                cls.__name__ in ("OperationalError", "InterfaceError")
                for cls in type(seen).__mro__):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def driver_message(error: BaseException) -> str:
    """The first line of the database driver's message for ``error`` (``database or disk is
    full``), without SQLAlchemy's statement and parameters."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


_INT_FIELDS = ("test_id", "seq", "step_index", "plan_line", "cycle")
_FLOAT_FIELDS = (
    "test_time_s",
    "unix_time_s",
    "step_time_s",
    "voltage_v",
    "current_a",
    "power_w",
    "temperature_c",
    "ah",
    "wh",
)


@dataclass(slots=True)
class SampleRows:
    """One batch of samples, possibly of many tests: columns as numpy arrays of equal length.

    ``seq`` numbers the samples of each test from 1 without gaps. Times are in seconds
    (``unix_time_s`` since the Unix epoch, ``test_time_s`` since the test started,
    ``step_time_s`` since the step started). ``ah`` and ``wh`` are the charge and energy since
    the step started, positive when charging. ``aux`` maps names of additional signals to
    columns; NaN there means "no value" and is not stored. NaN or infinity in a measured column
    is stored as NULL.

    Handing a batch to :meth:`SampleWriter.submit` hands over the arrays: do not modify them
    afterwards.
    """

    test_id: IntArray
    seq: IntArray
    test_time_s: FloatArray
    unix_time_s: FloatArray
    step_time_s: FloatArray
    voltage_v: FloatArray
    current_a: FloatArray
    power_w: FloatArray
    temperature_c: FloatArray
    step_index: IntArray
    plan_line: IntArray
    cycle: IntArray
    ah: FloatArray
    wh: FloatArray
    aux: dict[str, FloatArray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rows = len(self.test_id)
        columns = [(name, getattr(self, name), "i") for name in _INT_FIELDS]
        columns += [(name, getattr(self, name), "f") for name in _FLOAT_FIELDS]
        for name in self.aux:
            if not isinstance(name, str) or not 0 < len(name) <= AUX_NAME_LENGTH:
                raise ValueError(
                    f"SampleRows.aux: a signal name must be a string of 1 to {AUX_NAME_LENGTH} "
                    f"characters, not {name!r}"
                )
            if name in _INT_FIELDS or name in _FLOAT_FIELDS:
                raise ValueError(f"SampleRows.aux: {name!r} is the name of a sample column")
        columns += [(f"aux[{name!r}]", column, "f") for name, column in self.aux.items()]
        for name, column, kinds in columns:
            if not isinstance(column, np.ndarray) or column.ndim != 1:
                raise ValueError(f"SampleRows.{name} must be a one-dimensional numpy array")
            if column.dtype.kind not in kinds:
                kind = "signed integer" if kinds == "i" else "floating-point"
                raise ValueError(f"SampleRows.{name} must hold {kind} numbers, not {column.dtype}")
            if len(column) != rows:
                raise ValueError(f"SampleRows.{name} has {len(column)} rows but test_id has {rows}")

    def __len__(self) -> int:
        return len(self.test_id)


@dataclass(frozen=True, slots=True)
class StepRow:
    """The summary of one finished step of a test (a row of the ``steps`` table).

    ``step_no`` counts executed steps from 1; ``step_index`` is the leaf step's index in plan
    order and ``plan_line`` its line in the plan file. ``start_seq``/``end_seq`` are the first
    and last sample of the step; ``ah``/``wh`` the charge and energy over the step, positive
    when charging (NaN if unknown).
    """

    test_id: int
    step_no: int
    step_index: int
    plan_line: int
    cycle: int
    mode: str
    text: str
    start_seq: int
    end_seq: int
    start_test_time_s: float
    end_test_time_s: float
    ah: float
    wh: float
    end_reason: str
    # Charge and energy in and out over the step (both positive) and the cell temperature's
    # range; NaN when not known (rows written before they were recorded).
    charge_ah: float = math.nan
    discharge_ah: float = math.nan
    charge_wh: float = math.nan
    discharge_wh: float = math.nan
    temperature_min_c: float = math.nan
    temperature_max_c: float = math.nan


#: A step read back from the database.
StepRecord = StepRow


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """One cycle of a test: the sums of its steps (a row of the ``cycles`` view). Charge and
    energy are positive both ways; efficiencies are discharge over charge (NaN without
    charge); mean voltages are energy over charge; NaN where the steps did not record it."""

    test_id: int
    cycle: int
    steps: int
    start_seq: int
    end_seq: int
    start_test_time_s: float
    end_test_time_s: float
    charge_ah: float
    discharge_ah: float
    charge_wh: float
    discharge_wh: float
    coulombic_efficiency: float
    energy_efficiency: float
    mean_charge_v: float
    mean_discharge_v: float
    temperature_min_c: float
    temperature_max_c: float
    end_reasons: str

    @property
    def duration_s(self) -> float:
        """How long the cycle took."""
        return self.end_test_time_s - self.start_test_time_s


@dataclass(frozen=True, slots=True)
class PositionRow:
    """Where a running test stands as a step begins (a row of ``test_positions``, one per
    test): what a restarted station resumes it from. ``start_seq`` is the first sample the step
    will have; ``state`` is the runner's JSON-able record of the plan position and counters."""

    test_id: int
    step_no: int
    start_seq: int
    unix_time_s: float
    state: Mapping[str, Any]


#: A position read back from the database.
PositionRecord = PositionRow


@dataclass(frozen=True, slots=True)
class BatteryRecord:
    """A battery definition: nominal values and the limits a test must respect.

    Current limits are magnitudes (positive); ``None`` means "not given".
    """

    id: int
    name: str
    chemistry: str
    nominal_capacity_ah: float
    nominal_voltage_v: float | None
    voltage_max_v: float | None
    voltage_min_v: float | None
    current_max_charge_a: float | None
    current_max_discharge_a: float | None
    temperature_max_c: float | None
    metadata: Mapping[str, Any]
    created_unix_s: float


@dataclass(frozen=True, slots=True)
class TestEnd:
    """How and when a test ended: what :meth:`Database.finish_tests` records."""

    test_id: int
    status: str
    reason: str
    end_unix_s: float

    __test__ = False  # not a pytest test class


@dataclass(frozen=True, slots=True)
class TestStart:
    """A test about to start: what :meth:`Database.start_tests` records."""

    name: str
    channel: str
    driver: str
    battery: str | None
    plan_name: str
    plan_source: str
    plan_text: str
    sample_period_s: float
    station: str
    start_unix_s: float

    __test__ = False  # not a pytest test class


@dataclass(frozen=True, slots=True)
class TestRecord:
    """A test as stored: what ran where, with which plan, and how it ended."""

    id: int
    name: str
    channel: str
    battery: str | None
    plan_name: str
    plan_source: str
    plan_text: str
    status: TestStatus
    end_reason: str | None
    start_unix_s: float
    end_unix_s: float | None
    sample_period_s: float
    station: str

    __test__ = False  # not a pytest test class


@dataclass(frozen=True, slots=True)
class EventRecord:
    """Something that happened on the station, in a test or outside one."""

    id: int
    test_id: int | None
    unix_time_s: float
    kind: str
    channel: str | None
    message: str
    data: Mapping[str, Any]
