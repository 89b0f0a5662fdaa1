"""The parsed plan: what the parser produces and the runner follows.

Values stay as written until a battery is known: a C-rate is kept as a multiple of the capacity
and resolved with :meth:`Value.resolve`. Every node remembers the plan line it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from cellbench_core.plan.expr import Computed, Expr
from cellbench_core.units import Dimension

# Value lives with the unit parser (which must not import the plan package); re-exported here.
from cellbench_core.units import Value as Value
from cellbench_hal import ProfileQuantity, StepMode


class PlanError(ValueError):
    """A plan is invalid; the message names file, line and field."""

    def __init__(self, file: str, line: int, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class Quantity(StrEnum):
    """What an end condition or a safety limit watches. Values are SI (V, A, W, °C, s, Ah, Wh,
    V/s, K/s).

    ``*_charge_*`` and ``*_discharge_*`` count only charging or only discharging samples, both as
    positive amounts; ``step_ah``, ``cycle_ah`` and ``test_ah`` are net (charge minus discharge).
    Rates (``dv_dt``, ``dtemp_dt``) are taken between consecutive samples of a step, so the first
    sample of a step meets no rate condition.
    """

    VOLTAGE = "voltage"
    CURRENT = "current"  # signed, positive when charging
    ABS_CURRENT = "abs_current"
    POWER = "power"
    ABS_POWER = "abs_power"
    TEMPERATURE = "temperature"
    STEP_TIME = "step_time"
    TEST_TIME = "test_time"
    CYCLE_TIME = "cycle_time"
    STEP_AH = "step_ah"
    ABS_STEP_AH = "abs_step_ah"
    STEP_WH = "step_wh"
    ABS_STEP_WH = "abs_step_wh"
    STEP_CHARGE_AH = "step_charge_ah"
    STEP_DISCHARGE_AH = "step_discharge_ah"
    STEP_CHARGE_WH = "step_charge_wh"
    STEP_DISCHARGE_WH = "step_discharge_wh"
    CYCLE_AH = "cycle_ah"
    CYCLE_CHARGE_AH = "cycle_charge_ah"
    CYCLE_DISCHARGE_AH = "cycle_discharge_ah"
    CYCLE_WH = "cycle_wh"
    CYCLE_CHARGE_WH = "cycle_charge_wh"
    CYCLE_DISCHARGE_WH = "cycle_discharge_wh"
    TEST_AH = "test_ah"
    TEST_CHARGE_AH = "test_charge_ah"
    TEST_DISCHARGE_AH = "test_discharge_ah"
    TEST_WH = "test_wh"
    TEST_CHARGE_WH = "test_charge_wh"
    TEST_DISCHARGE_WH = "test_discharge_wh"
    DV_DT = "dv_dt"  # V/s
    ABS_DV_DT = "abs_dv_dt"
    DTEMP_DT = "dtemp_dt"  # K/s
    CYCLE = "cycle"  # the cycle count, 0 before the first counting loop


@dataclass(frozen=True)
class Signal:
    """A signal of an OSI device or a climate chamber, as the station records it:
    ``<device>.<signal>`` (``bms.cell_max_v``, ``climate1.temperature``). ``dimension`` is the
    threshold's (COUNT for a bare number, compared in the signal's own unit)."""

    name: str
    dimension: Dimension

    @property
    def value(self) -> str:
        """The name, as a plan writes it (like :attr:`Quantity.value`)."""
        return self.name


class Op(StrEnum):
    """Comparison of a quantity with a threshold."""

    GE = ">="
    LE = "<="


#: A setpoint or threshold: a value as written, or one computed from an expression.
Amount = Value | Computed


@dataclass(frozen=True)
class Condition:
    """``quantity op value``, true once a sample meets it (a loop's conditions take written
    values only).

    With ``of_first`` (loop conditions only) the threshold is ``value`` times the quantity's value
    at the end of the loop's first pass: ``cycle_discharge_ah < 80 % of first``.
    """

    quantity: Quantity | Signal
    op: Op
    value: Amount
    line: int = 0
    of_first: bool = False


class ActionKind(StrEnum):
    """Where a step goes when one of its end conditions holds."""

    NEXT = "next"  # the next step in plan order
    GOTO = "goto"  # the step with a label
    END_LOOP = "end loop"  # out of the innermost loop around the step, counting no more passes
    END_TEST = "end test"  # the test ends, as finished


@dataclass(frozen=True)
class Action:
    """What happens when an end condition group holds."""

    kind: ActionKind = ActionKind.NEXT
    label: str | None = None  # the target of a goto
    line: int = field(default=0, compare=False)  # where the plan wrote it, for errors

    def __str__(self) -> str:
        return f"goto {self.label}" if self.kind is ActionKind.GOTO else self.kind.value


NEXT = Action()


@dataclass(frozen=True)
class ProfileSpec:
    """A setpoint over step time: a ramp, or a column of a lookup table.

    ``values`` (SI, or C-rates with ``per_capacity``) at ``time_s`` (from 0, rising); linear in
    between, or each value held until the next time with ``hold``. ``table`` and ``column`` say
    where a table's values came from (the file as the plan wrote it). The step ends when the
    last point is reached, or earlier when its ``until`` holds.
    """

    quantity: ProfileQuantity
    time_s: tuple[float, ...]
    values: tuple[float, ...]
    per_capacity: bool = False
    hold: bool = False
    table: str | None = None
    column: str | None = None


@dataclass(frozen=True)
class ChamberSpec:
    """Set the climate chamber (ramping its temperature at ``ramp_k_per_s`` if given) and wait,
    the channel resting, until it has been stable: within ``band_k`` of the temperature setpoint
    (and ``band_pct`` of the humidity's) for ``stable_s`` seconds. Not stable after
    ``timeout_s``: the test fails."""

    temperature_c: float | None
    humidity_pct: float | None
    band_k: float
    band_pct: float | None
    stable_s: float
    timeout_s: float
    #: Move the temperature setpoint at this rate (K/s) from where the chamber is, instead of
    #: at once; stability counts from when the ramp has reached the setpoint.
    ramp_k_per_s: float | None = None

    @property
    def climate(self) -> tuple[float | None, float | None]:
        """What the step asks of the chamber: temperature (°C) and humidity (%), None where not."""
        return self.temperature_c, self.humidity_pct

    def holds(self, temperature_c: float, humidity_pct: float | None,
              setpoint_c: float) -> bool:
        """Whether a chamber reading (``humidity_pct`` None: not measured) is within the step's
        bands, the temperature's around the step's setpoint (or the controller's
        ``setpoint_c`` when the step sets none)."""
        target = setpoint_c if self.temperature_c is None else self.temperature_c
        inside = abs(temperature_c - target) <= self.band_k
        if self.humidity_pct is not None:
            humidity = math.nan if humidity_pct is None else humidity_pct
            inside = inside and abs(humidity - self.humidity_pct) <= (self.band_pct or 0.0)
        return inside

    def describe_climate(self) -> str:
        """The climate the step asks for, in words: ``40 °C, 80 %RH``."""
        asked = [] if self.temperature_c is None else [f"{self.temperature_c:g} °C"]
        asked += [] if self.humidity_pct is None else [f"{self.humidity_pct:g} %RH"]
        return ", ".join(asked) or "the chamber running"


@dataclass(frozen=True)
class ExternalSpec:
    """Hand the channel to setpoints from a superior system (rci ``SET``, the control API's
    :meth:`~cellbench_core.service.control.StationControl.set_setpoint`): the channel rests
    until the first one, every one is checked against the limits and the channel's ranges, and
    without a setpoint or keepalive for ``watchdog_s`` the output goes off and the step ends
    with an alarm."""

    watchdog_s: float


@dataclass(frozen=True)
class StepSpec:
    """One step of a plan: a channel setpoint and when it ends.

    Setpoints are signed (positive charges). ``until`` is a disjunction of conjunctions: the step
    ends when every condition of any one group holds. A duration is a ``step_time >=`` condition.
    """

    mode: StepMode
    until: tuple[tuple[Condition, ...], ...]
    current: Amount | None = None
    voltage: Amount | None = None
    power: Amount | None = None
    resistance: Amount | None = None
    text: str = ""  # the step as the plan wrote it, for display
    label: str | None = None
    line: int = 0
    then: tuple[Action, ...] = ()
    profile: ProfileSpec | None = None  # the setpoint of a ramp or profile step
    chamber: ChamberSpec | None = None  # a chamber step (the channel rests)
    external: ExternalSpec | None = None  # an external step (setpoints from a superior system)

    def action(self, group: int) -> Action:
        """The action taken when ``until[group]`` holds (or, one past them, when a profile
        step's profile ends: always the next step)."""
        return self.then[group] if group < len(self.then) else NEXT

    @property
    def ends(self) -> int:
        """How many end condition groups the step has at run time: ``until``, and for a ramp
        or profile step the end of its profile, for a chamber step the chamber being stable."""
        return len(self.until) + (self.profile is not None) + (self.chamber is not None)


@dataclass(frozen=True)
class Loop:
    """Repeat ``body`` ``count`` times (None: without a count), or until ``until`` holds at the end
    of a pass; each pass is a new cycle unless ``cycle`` is false."""

    count: int | None
    body: tuple[Node, ...]
    cycle: bool = True
    line: int = 0
    until: tuple[tuple[Condition, ...], ...] = ()


@dataclass(frozen=True)
class Message:
    """Hand ``text`` to the notifiers when the plan gets here; takes no time."""

    text: str
    line: int = 0


#: The counters a set step can reset (``cycle`` and ``test`` name all of their scope's).
COUNTERS = ("cycle_ah", "cycle_wh", "cycle_time", "test_ah", "test_wh")


@dataclass(frozen=True)
class SignalWrite:
    """Write ``value`` (a written value: a unit of the signal's kind, or with ``signal``'s
    dimension COUNT a bare number in its own unit) to a device's signal."""

    signal: Signal
    value: Value
    line: int = field(default=0, compare=False)  # where the plan wrote it, for errors


@dataclass(frozen=True)
class SetStep:
    """Give variables the values of expressions, in order, then reset ``resets`` (of
    :data:`COUNTERS`) and write ``writes`` to devices, in order; takes no time. The name
    ``capacity`` sets the capacity C-rates use. Expressions here read the last sample's
    quantities (``cycle_discharge_ah``)."""

    values: tuple[tuple[str, Expr], ...] = ()
    resets: tuple[str, ...] = ()
    line: int = 0
    writes: tuple[SignalWrite, ...] = ()


Node = StepSpec | Loop | Message | SetStep


@dataclass(frozen=True)
class Limit:
    """One safety limit: ``value``, or with ``battery`` the battery's registered value plus
    ``value`` as an offset (none: the battery's value itself). It trips once a reading has been
    beyond it for ``delay_s`` (0: on the first such sample)."""

    value: Value | None = None
    battery: bool = False
    delay_s: float = 0.0


@dataclass(frozen=True)
class SignalLimit:
    """A safety limit on a device's or chamber's signal: an upper bound ``maximum`` and/or a
    lower bound ``minimum`` (written values of ``signal``'s dimension; COUNT: bare numbers in
    the signal's own unit). It trips once the signal has been beyond a bound, or missing or not
    a number, for ``delay_s`` (0: on the first such sample)."""

    signal: Signal
    maximum: Value | None = None
    minimum: Value | None = None
    delay_s: float = 0.0
    line: int = field(default=0, compare=False)  # where the plan wrote it, for errors


@dataclass(frozen=True)
class SafetyLimits:
    """Global limits checked on every sample; a missing or non-finite reading trips them at once
    (a signal's after its delay).

    A limit written against the battery replaces the battery's own for that quantity; an
    absolute one applies together with it (the tighter wins). ``signals`` limits device and
    chamber signals, in the order written.
    """

    voltage_max: Limit | None = None
    voltage_min: Limit | None = None
    current_max: Limit | None = None  # on the magnitude of the current
    temperature_max: Limit | None = None
    temperature_min: Limit | None = None
    signals: tuple[SignalLimit, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A whole test plan."""

    name: str
    steps: tuple[Node, ...]
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    capacity_ah: float | None = None  # used for C-rates when no battery is given
    source: str = "<string>"
    text: str = ""  # the file's text, stored with the test
