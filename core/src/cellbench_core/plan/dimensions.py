"""The dimension of every value a plan writes: limits, setpoints and the quantities of end
conditions. The parser checks values against them; the normal form and the plan text show them.

A new condition quantity is an entry in :data:`QUANTITY_DIMENSIONS` (and a column of the runner's
:data:`~cellbench_core.runner.conditions.QUANTITY_COLUMN`).
"""

from __future__ import annotations

from cellbench_core.plan.model import Quantity, Signal
from cellbench_core.units import Dimension

#: The dimension of each key of ``limits``.
LIMIT_DIMENSIONS: dict[str, Dimension] = {
    "voltage_max": Dimension.VOLTAGE,
    "voltage_min": Dimension.VOLTAGE,
    "current_max": Dimension.CURRENT,
    "temperature_max": Dimension.TEMPERATURE,
    "temperature_min": Dimension.TEMPERATURE,
}

#: The dimension of each setpoint, named as the StepSpec field that holds it.
SETPOINT_DIMENSIONS: dict[str, Dimension] = {
    "current": Dimension.CURRENT,
    "voltage": Dimension.VOLTAGE,
    "power": Dimension.POWER,
    "resistance": Dimension.RESISTANCE,
}

#: The quantities a condition can watch, and the dimension of their thresholds.
QUANTITY_DIMENSIONS: dict[Quantity, Dimension] = {
    Quantity.VOLTAGE: Dimension.VOLTAGE,
    Quantity.CURRENT: Dimension.CURRENT,
    Quantity.ABS_CURRENT: Dimension.CURRENT,
    Quantity.POWER: Dimension.POWER,
    Quantity.ABS_POWER: Dimension.POWER,
    Quantity.TEMPERATURE: Dimension.TEMPERATURE,
    Quantity.STEP_TIME: Dimension.TIME,
    Quantity.TEST_TIME: Dimension.TIME,
    Quantity.CYCLE_TIME: Dimension.TIME,
    Quantity.STEP_AH: Dimension.CHARGE,
    Quantity.ABS_STEP_AH: Dimension.CHARGE,
    Quantity.STEP_WH: Dimension.ENERGY,
    Quantity.ABS_STEP_WH: Dimension.ENERGY,
    **{q: Dimension.CHARGE for q in Quantity if q.endswith("_ah")},
    **{q: Dimension.ENERGY for q in Quantity if q.endswith("_wh")},
    Quantity.DV_DT: Dimension.VOLTAGE_RATE,
    Quantity.ABS_DV_DT: Dimension.VOLTAGE_RATE,
    Quantity.DTEMP_DT: Dimension.TEMPERATURE_RATE,
    Quantity.CYCLE: Dimension.COUNT,
}
#: The same by name, as expressions (in set steps) read the quantities.
QUANTITY_NAMES = {quantity.value: dimension for quantity, dimension in QUANTITY_DIMENSIONS.items()}


def dimension_of(quantity: Quantity | Signal) -> Dimension:
    """The dimension of a condition's quantity or signal (a signal's is its threshold's)."""
    return quantity.dimension if isinstance(quantity, Signal) else QUANTITY_DIMENSIONS[quantity]
