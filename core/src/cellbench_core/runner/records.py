"""What the runner's callers and parts exchange: test requests and outcomes, channel states, the
position a crashed test resumes from, and the per-channel bookkeeping touched only on events."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Literal

from cellbench_core.events import TestStatus
from cellbench_core.plan.model import ChamberSpec, Condition, Plan
from cellbench_core.runner.cursor import Cursor
from cellbench_core.storage import BatteryRecord
from cellbench_hal import (
    ChamberState,
    ChannelDriver,
    ChannelInfo,
    ClimateChamber,
    OsiDevice,
    Step,
)
from cellbench_hal.types import FloatArray

#: What a test does when its chamber reports a fault or stops answering.
ChamberFaultPolicy = Literal["pause", "end"]


@dataclass
class ChamberBand:
    """The climate a chamber step found its chamber stable in, watched until the chamber's next
    setpoint: outside it for longer than ``grace_s`` is a chamber fault."""

    spec: ChamberSpec
    grace_s: float
    #: When the chamber was last seen leaving the band (None: it is inside).
    left_at: float | None = None

    def fault(self, state: ChamberState, t: float) -> str:
        """What is wrong with ``state`` at ``t`` as far as the band goes ('' when nothing)."""
        spec = self.spec
        if spec.holds(state.temperature_c, state.humidity_pct, state.setpoint_c):
            self.left_at = None
            return ""
        if self.left_at is None:
            self.left_at = t
        if t - self.left_at < self.grace_s:
            return ""
        band = [] if spec.temperature_c is None else [f"{spec.temperature_c:g} °C ± "
                                                      f"{spec.band_k:g} K"]
        if spec.humidity_pct is not None:
            band.append(f"{spec.humidity_pct:g} ± {spec.band_pct or 0.0:g} %RH")
        return (f"the climate left the band it was stable in ({', '.join(band)}) for more than "
                f"{self.grace_s:g} s")


@dataclass
class SteppedRamp:
    """A chamber temperature ramp the station runs itself for a controller that cannot: from
    ``start_c`` (where the chamber was) at ``t0`` to ``final_c`` at ``kelvin_per_s``."""

    start_c: float
    final_c: float
    kelvin_per_s: float
    t0: float
    set_c: float  # the setpoint last handed to the chamber

    #: The smallest setpoint change worth a command (controllers show tenths of a kelvin).
    RESOLUTION_K = 0.1

    def setpoint(self, t: float) -> float:
        """Where the setpoint should be at ``t``."""
        span = self.final_c - self.start_c
        moved = min(self.kelvin_per_s * max(t - self.t0, 0.0), abs(span))
        return self.final_c if moved >= abs(span) else self.start_c + math.copysign(moved, span)


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
    #: The cell temperature's range over the step's committed samples (NaN: no reading).
    step_temperatures: tuple[float, float] = (math.nan, math.nan)


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
    #: How long the chamber may stay outside the band a chamber step found it stable in before
    #: that counts as a fault (acted on like ``chamber_on_fault`` says).
    chamber_band_grace_s: float = 60.0
    #: What to write to the devices (their station names, the signals, the values in the
    #: signals' own units) as the test starts, before its first step, and as it ends, after
    #: its output is off.
    on_start: tuple[tuple[str, str, float], ...] = ()
    on_stop: tuple[tuple[str, str, float], ...] = ()

    __test__ = False

    @property
    def chamber_label(self) -> str:
        """The chamber's name in the station (its driver's name outside one); '' without one."""
        if self.chamber_name is not None:
            return self.chamber_name
        return "" if self.chamber is None else self.chamber.name


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
    battery: str | None = None  #: the battery under test (registered name)


@dataclass
class ExternalHold:
    """A row in an external step: the setpoint the superior system holds it at (a rest until
    its first), and when a setpoint or keepalive last came (clock time), for the watchdog."""

    watchdog_s: float
    contact_t: float
    setpoint: Step


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
    ``units``: the unit of each limited signal; ``writes``: the device writes of each set step,
    by the ``id`` of the plan's set step (what the cursor reports it passed: no search of the
    program); ``on_start`` and ``on_stop``: the station file's writes.
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
