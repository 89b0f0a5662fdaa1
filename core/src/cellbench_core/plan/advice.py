"""Warnings about a plan that is valid but will not do what it says: an end condition that lies
beyond a safety limit (the limit ends the test first), and C-rates without a capacity yet."""

from __future__ import annotations

from collections.abc import Iterator

from cellbench_core.plan.expr import Computed
from cellbench_core.plan.model import (
    Condition,
    Limit,
    Loop,
    Node,
    Op,
    Plan,
    Quantity,
    SafetyLimits,
    SetStep,
    StepSpec,
)
from cellbench_core.units import Dimension, Value, format_value

#: End conditions a safety limit can cut off: the quantity and direction, the limit that stops
#: the test before it, whether that limit is a lower bound, and the dimension of both.
_BOUNDED = {
    (Quantity.VOLTAGE, Op.LE): ("voltage_min", True, Dimension.VOLTAGE),
    (Quantity.VOLTAGE, Op.GE): ("voltage_max", False, Dimension.VOLTAGE),
    (Quantity.TEMPERATURE, Op.LE): ("temperature_min", True, Dimension.TEMPERATURE),
    (Quantity.TEMPERATURE, Op.GE): ("temperature_max", False, Dimension.TEMPERATURE),
    (Quantity.ABS_CURRENT, Op.GE): ("current_max", False, Dimension.CURRENT),
}


def plan_warnings(plan: Plan, *, battery: bool = False) -> list[str]:
    """What ``plan check`` warns about, each as ``FILE:LINE: what and why``; with ``battery``
    the tests get a registered battery, whose capacity the C-rates use."""
    warnings = [_beyond(plan, condition, bound) for condition in _conditions(plan.steps)
                if (bound := _bound(plan.limits, condition)) is not None]
    if not battery and plan.capacity_ah is None and not _sets_capacity(plan.steps):
        line = _first_c_rate(plan)
        if line is not None:
            warnings.append(
                f"{plan.source}:{line}: C-rates need the battery's capacity, and this plan gives "
                "none yet: add 'capacity: 2.5 Ah' to the plan, or run it with --battery NAME "
                "(a registered battery's capacity; see cellbench battery add)")
    return warnings


def _conditions(nodes: tuple[Node, ...]) -> Iterator[Condition]:
    for node in nodes:
        if isinstance(node, StepSpec):
            yield from (c for group in node.until for c in group)
        elif isinstance(node, Loop):
            yield from (c for group in node.until for c in group)
            yield from _conditions(node.body)


def _bound(limits: SafetyLimits, condition: Condition) -> tuple[str, bool, Dimension, Value] \
        | None:
    """The written limit ``condition`` lies beyond, with its name, side and dimension."""
    if not isinstance(condition.quantity, Quantity) or condition.of_first:
        return None
    bounded = _BOUNDED.get((condition.quantity, condition.op))
    threshold = condition.value
    if bounded is None or not isinstance(threshold, Value):
        return None
    name, lower, dimension = bounded
    limit: Limit | None = getattr(limits, name)
    if limit is None or limit.battery or limit.value is None:
        return None  # a limit against the battery is known when a test starts
    bound = limit.value
    if bound.per_capacity != threshold.per_capacity:
        return None  # one of them a C-rate: comparable once a battery is known
    bound_si = abs(bound.si) if name == "current_max" else bound.si  # on the magnitude
    beyond = threshold.si < bound_si if lower else threshold.si > bound_si
    return (name, lower, dimension, bound) if beyond else None


def _beyond(plan: Plan, condition: Condition, bound: tuple[str, bool, Dimension, Value]) -> str:
    name, lower, dimension, limit = bound
    assert isinstance(condition.value, Value)
    return (f"{plan.source}:{condition.line}: the end condition {condition.quantity.value} "
            f"{condition.op.value} {format_value(condition.value, dimension)} lies "
            f"{'below' if lower else 'above'} the safety limit {name} "
            f"{format_value(limit, dimension)}: the limit ends the test before this condition "
            "can end the step")


def _sets_capacity(nodes: tuple[Node, ...]) -> bool:
    for node in nodes:
        if isinstance(node, SetStep) and any(name == "capacity" for name, _ in node.values):
            return True
        if isinstance(node, Loop) and _sets_capacity(node.body):
            return True
    return False


def _first_c_rate(plan: Plan) -> int | None:
    """The line of the first C-rate in the plan's steps, or None."""
    def c_rate(amount: object) -> bool:
        if isinstance(amount, Value):
            return amount.per_capacity
        return isinstance(amount, Computed) and amount.expr.dimension is Dimension.C_RATE

    def walk(nodes: tuple[Node, ...]) -> int | None:
        for node in nodes:
            if isinstance(node, StepSpec):
                amounts = [node.current, node.voltage, node.power, node.resistance]
                if any(c_rate(a) for a in amounts) or (
                        node.profile is not None and node.profile.per_capacity):
                    return node.line
                for group in node.until:
                    for condition in group:
                        if c_rate(condition.value):
                            return condition.line or node.line
            elif isinstance(node, Loop) and (line := walk(node.body)) is not None:
                return line
        return None

    return walk(plan.steps)
