"""The parsed plan: what the parser produces and the runner follows.

Values stay as written until a battery is known: a C-rate is kept as a multiple of the capacity
and resolved with :meth:`Value.resolve`. Every node remembers the plan line it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# Value lives with the unit parser (which must not import the plan package); re-exported here.
from cellbench_core.units import Value as Value
from cellbench_hal import StepMode


class PlanError(ValueError):
    """A plan is invalid; the message names file, line and field."""

    def __init__(self, file: str, line: int, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class Quantity(StrEnum):
    """What an end condition or a safety limit watches. Values are SI (V, A, W, °C, s, Ah, Wh)."""

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


class Op(StrEnum):
    """Comparison of a quantity with a threshold."""

    GE = ">="
    LE = "<="


@dataclass(frozen=True)
class Condition:
    """``quantity op value``, true once a sample meets it."""

    quantity: Quantity
    op: Op
    value: Value
    line: int = 0


@dataclass(frozen=True)
class StepSpec:
    """One step of a plan: a channel setpoint and when it ends.

    Setpoints are signed (positive charges). ``until`` is a disjunction of conjunctions: the step
    ends when every condition of any one group holds. A duration is a ``step_time >=`` condition.
    """

    mode: StepMode
    until: tuple[tuple[Condition, ...], ...]
    current: Value | None = None
    voltage: Value | None = None
    power: Value | None = None
    resistance: Value | None = None
    text: str = ""  # the step as the plan wrote it, for display
    label: str | None = None
    line: int = 0


@dataclass(frozen=True)
class Loop:
    """Repeat ``body`` ``count`` times; each pass is a new cycle unless ``cycle`` is false."""

    count: int
    body: tuple[Node, ...]
    cycle: bool = True
    line: int = 0


Node = StepSpec | Loop


@dataclass(frozen=True)
class SafetyLimits:
    """Global limits checked on every sample; a missing or non-finite reading trips them."""

    voltage_max: float | None = None
    voltage_min: float | None = None
    current_max: Value | None = None  # on the magnitude of the current
    temperature_max: float | None = None
    temperature_min: float | None = None


@dataclass(frozen=True)
class Plan:
    """A whole test plan."""

    name: str
    steps: tuple[Node, ...]
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    capacity_ah: float | None = None  # used for C-rates when no battery is given
    source: str = "<string>"
    text: str = ""  # the file's text, stored with the test
