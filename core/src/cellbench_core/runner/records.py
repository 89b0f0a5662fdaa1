"""What the runner's callers and parts exchange: test requests and outcomes, channel states, the
position a crashed test resumes from, and the per-channel bookkeeping touched only on events."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Literal

from cellbench_core.events import TestStatus
from cellbench_core.plan.model import Condition, Plan
from cellbench_core.runner.cursor import Cursor
from cellbench_core.storage import BatteryRecord
from cellbench_hal import ChannelDriver, ChannelInfo, ClimateChamber, OsiDevice, Step
from cellbench_hal.types import FloatArray

#: What a test does when its chamber reports a fault or stops answering.
ChamberFaultPolicy = Literal["pause", "end"]


class RunError(ValueError):
    """A test cannot start: the plan does not fit the channel, battery or clock."""


@dataclass(frozen=True)
class ChannelRef:
    """A station channel: its station-wide number and where it lives (driver and local index)."""

    number: int
    driver: ChannelDriver
    driver_name: str
    local: int

    @property
    def name(self) -> str:
        """The channel's name in the database and in messages."""
        return str(self.number)

    @property
    def info(self) -> ChannelInfo:
        """The channel's ranges."""
        return self.driver.channels[self.local]


@dataclass(frozen=True)
class Resume:
    """Where a test that a crash interrupted goes on (see :func:`.resume.resume_point`): the
    position its last step began at, and what the step's committed samples add to it."""

    test_id: int
    step_no: int
    start_seq: int  # the step's first sample
    state: dict[str, Any]  # the runner's record at the step's start (see resume.position)
    last_seq: int  # the last committed sample (start_seq - 1: the step has none yet)
    test_time_s: float  # the test time to go on from, the time without the station included
    step_time_s: float  # how long the step ran
    charged: FloatArray  # the step's charge and energy, charging and discharging: [Ah, Wh]
    discharged: FloatArray
    down_s: float  # how long the test was without a station


@dataclass(frozen=True)
class TestRequest:
    """Run ``plan`` on ``channel`` (for ``battery``, whose data sets C-rates and limits);
    ``chamber`` is the climate chamber holding the cell, for the plan's chamber steps;
    ``resume`` continues an interrupted test instead of starting a new one."""

    channel: ChannelRef
    plan: Plan
    battery: BatteryRecord | None = None
    name: str = ""
    chamber: ClimateChamber | None = None
    resume: Resume | None = None
    #: The chamber's name in the station (its signals are recorded as ``<name>.temperature``).
    chamber_name: str | None = None
    #: The OSI devices serving the channel, by station name (``<name>.<signal>`` is recorded).
    devices: tuple[tuple[str, OsiDevice], ...] = ()
    #: When the chamber reports a fault or stops answering: ``"pause"`` the test (output off
    #: until the chamber is back) or ``"end"`` it with an alarm.
    chamber_on_fault: ChamberFaultPolicy = "pause"
    #: What to write to the devices (their station names, the signals, the values in the
    #: signals' own units) as the test starts, before its first step, and as it ends, after
    #: its output is off.
    on_start: tuple[tuple[str, str, float], ...] = ()
    on_stop: tuple[tuple[str, str, float], ...] = ()

    __test__ = False


@dataclass(frozen=True)
class TestOutcome:
    """How a test ended."""

    test_id: int
    channel: str
    status: TestStatus
    reason: str

    __test__ = False


class ChannelState(StrEnum):
    """What a channel does, as the station's control API reports it."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"


class Control(Enum):
    """An operator's request the runner applies at its next tick."""

    PAUSE = "pause"
    RESUME = "resume"
    NEXT = "next"


@dataclass(frozen=True)
class ChannelStatus:
    """A channel's state for live displays."""

    channel: str
    test_id: int
    running: bool
    paused: bool
    step: str
    step_no: int
    steps_total: int
    cycle: int
    test_time_s: float
    voltage_v: float
    current_a: float
    temperature_c: float
    step_ah: float
    step_wh: float
    total_ah: float
    total_wh: float
    outcome: TestOutcome | None


#: A step resolved for one battery: the channel setpoint and the (condition, SI threshold) groups.
Resolved = tuple[Step, list[list[tuple[Condition, float]]]]


@dataclass(frozen=True)
class DeviceWrite:
    """A value to write to a device's signal ``name`` (``bms.charge_enable``), in the signal's
    own ``unit``; ``why`` says what asked for it (``plan line 12``, ``on_stop``). ``device`` is
    None only where its signals were not known (``cellbench plan check --station``)."""

    name: str
    device: OsiDevice | None
    value: float
    unit: str
    why: str


@dataclass(frozen=True)
class SignalPlan:
    """What one test does with device and chamber signals (see resolve.resolve_signals).

    ``columns``: each signal its plan ends steps on or limits, and its column of the
    per-sample quantities; ``bound`` and ``delay``: per signal slot (column minus the
    quantities'), the upper bound on the reading and on its negative (``max`` and ``-min``, in
    the signal's own unit; inf: none) and how long it must be beyond before it trips;
    ``units``: the unit of each limited signal; ``writes``: the device writes of each set step
    (by its instruction); ``on_start`` and ``on_stop``: the station file's writes.
    """

    columns: dict[str, int] = field(default_factory=dict)
    bound: list[float] = field(default_factory=list)
    delay: list[float] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    writes: dict[int, tuple[DeviceWrite, ...]] = field(default_factory=dict)
    on_start: tuple[DeviceWrite, ...] = ()
    on_stop: tuple[DeviceWrite, ...] = ()

    @property
    def limited(self) -> bool:
        """Whether the test has safety limits on signals."""
        return bool(self.units)


@dataclass
class Run:
    """Per-channel bookkeeping touched only on events."""

    row: int
    request: TestRequest
    test_id: int
    cursor: Cursor
    steps: dict[int, Resolved]  # instruction -> the step resolved for this battery
    step_text: str = ""
    step_no: int = 0
    step_start_seq: int = 1
    step_start_time: float = 0.0
    outcome: TestOutcome | None = None
    paused: bool = False  # as asked for: the runner applies it at its next tick
    signals: SignalPlan = field(default_factory=SignalPlan)  # its device signals and writes
    chamber_steps: bool = False  # its plan has chamber steps: its chamber waits for it
