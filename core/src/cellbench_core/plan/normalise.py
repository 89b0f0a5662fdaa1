"""A plan written back as YAML in its normal form: every step a mapping, every value in SI
units (or a C-rate), every end in one ``until`` expression.

The output parses back into an equal plan (apart from source lines and texts), so it can be
stored with a test as the exact record of what ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import yaml

from cellbench_core.plan.dimensions import LIMIT_DIMENSIONS, SETPOINT_DIMENSIONS, dimension_of
from cellbench_core.plan.expr import Computed
from cellbench_core.plan.model import (
    Condition,
    Limit,
    Loop,
    Message,
    Node,
    Plan,
    ProfileSpec,
    SetStep,
    SignalLimit,
    StepSpec,
)
from cellbench_core.units import Dimension, Value, format_number, format_value

# Dumped as plain Python data; yaml.safe_dump handles the quoting.
_Data = dict[str, object]


def dump_plan(plan: Plan) -> str:
    """The plan (as the parser produced it) in normal form, as YAML text."""
    document: _Data = {"name": plan.name}
    if plan.capacity_ah is not None:
        document["capacity"] = format_value(Value(plan.capacity_ah), Dimension.CHARGE)
    limits: _Data = {}
    for name in LIMIT_DIMENSIONS:
        limit = getattr(plan.limits, name)
        if limit is not None:
            limits[name] = format_limit(limit, LIMIT_DIMENSIONS[name])
    for signal_limit in plan.limits.signals:
        limits[signal_limit.signal.name] = signal_bounds(signal_limit)
    if limits:
        document["limits"] = limits
    document["steps"] = [_node(node) for node in plan.steps]
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=math.inf)


def format_limit(limit: Limit, dimension: Dimension,
                 duration: Callable[[float], str] | None = None) -> str:
    """A safety limit as a plan writes it (``4.2 V``, ``battery - 0.1 V for 2 s``); ``duration``
    writes its delay (by default in seconds, as the normal form does)."""
    if limit.battery:
        text = "battery"
        if limit.value is not None:
            offset = format_value(Value(abs(limit.value.si), limit.value.per_capacity), dimension)
            text += f" {'-' if limit.value.si < 0 else '+'} {offset}"
    else:
        assert limit.value is not None
        text = format_value(limit.value, dimension)
    if limit.delay_s:
        delay = (duration(limit.delay_s) if duration is not None
                 else format_value(Value(limit.delay_s), Dimension.TIME))
        text += f" for {delay}"
    return text


def signal_bounds(limit: SignalLimit, duration: Callable[[float], str] | None = None
                  ) -> dict[str, str]:
    """A signal's safety limit as a plan writes it: ``{max: 4.25 V, for: 1 s}``; ``duration``
    writes its delay (by default in seconds, as the normal form does)."""
    dimension = limit.signal.dimension
    bounds = {key: format_value(value, dimension)
              for key, value in (("max", limit.maximum), ("min", limit.minimum))
              if value is not None}
    if limit.delay_s:
        bounds["for"] = (duration(limit.delay_s) if duration is not None
                         else format_value(Value(limit.delay_s), Dimension.TIME))
    return bounds


def _node(node: Node) -> _Data:
    if isinstance(node, Message):
        return {"message": node.text}
    if isinstance(node, SetStep):
        values: _Data = {name: str(expr) for name, expr in node.values}
        if node.resets:
            values["reset"] = list(node.resets)
        for write in node.writes:
            values[write.signal.name] = format_value(write.value, write.signal.dimension)
        return {"set": values}
    if isinstance(node, Loop):
        data: _Data = {"repeat": "forever" if node.count is None else node.count,
                       "cycle": node.cycle}
        if node.until:
            data["until"] = _groups(node.until)
        data["steps"] = [_node(child) for child in node.body]
        return data
    return _step(node)


def _step(step: StepSpec) -> _Data:
    if step.chamber is not None:
        return _chamber(step)
    if step.external is not None:
        return _external(step)
    data: _Data = {"mode": step.mode.value} if step.profile is None else _profile(step.profile)
    for name, dimension in SETPOINT_DIMENSIONS.items():
        value = getattr(step, name)
        if isinstance(value, Computed):
            data[name] = str(value.expr)
            if value.direction is not None:
                data["direction"] = "charge" if value.direction > 0 else "discharge"
        elif value is not None:
            data[name] = format_value(value, dimension)
    return data | _ends(step)


def _ends(step: StepSpec) -> _Data:
    """A step's ``until`` and ``label`` in normal form."""
    data: _Data = {}
    if step.then:
        data["until"] = [{"when": _groups((group,)), "then": str(step.action(index))}
                         for index, group in enumerate(step.until)]
    elif step.until:  # none: a ramp or profile that ends with its last point
        data["until"] = _groups(step.until)
    if step.label is not None:
        data["label"] = step.label
    return data


def _external(step: StepSpec) -> _Data:
    assert step.external is not None
    watchdog = format_value(Value(step.external.watchdog_s), Dimension.TIME)
    return {"external": {"watchdog": watchdog} | _ends(step)}


def _chamber(step: StepSpec) -> _Data:
    c = step.chamber
    assert c is not None
    data: _Data = {"chamber": format_value(Value(c.temperature_c or 0.0), Dimension.TEMPERATURE)}
    if c.humidity_pct is not None:
        data["humidity"] = format_value(Value(c.humidity_pct), Dimension.HUMIDITY)
        data["humidity_within"] = format_value(Value(c.band_pct or 0.0), Dimension.HUMIDITY)
    data["within"] = f"{format_number(c.band_k)} K"
    data["stable"] = format_value(Value(c.stable_s), Dimension.TIME)
    data["timeout"] = format_value(Value(c.timeout_s), Dimension.TIME)
    if c.ramp_k_per_s is not None:
        data["ramp"] = f"{format_number(c.ramp_k_per_s * 60.0)} K/min"
    if step.label is not None:
        data["label"] = step.label
    return data


def _profile(profile: ProfileSpec) -> _Data:
    if profile.table is not None:
        data: _Data = {"mode": "profile", "table": profile.table, "column": profile.column}
        if profile.hold:
            data["hold"] = True
        return data
    dimension = Dimension(profile.quantity.value)
    start, end = (format_value(Value(v, profile.per_capacity), dimension) for v in profile.values)
    over = format_value(Value(profile.time_s[-1]), Dimension.TIME)
    return {"mode": "ramp", "from": start, "to": end, "over": over}


def end_reason(step: StepSpec, group: int) -> str:
    """Why ``step`` ended when its end condition group ``group`` held, in the normal form's
    words (``voltage <= 2.5 V``); one past its groups, a profile step's profile ran out."""
    if group < len(step.until):
        return " and ".join(_condition(c) for c in step.until[group])
    return "profile done"


def _groups(groups: tuple[tuple[Condition, ...], ...]) -> str:
    return " or ".join(" and ".join(_condition(c) for c in group) for group in groups)


def _condition(condition: Condition) -> str:
    if isinstance(condition.value, Computed):
        threshold = str(condition.value.expr)
    elif condition.of_first:
        threshold = f"{format_number(condition.value.si * 100)} % of first"
    else:
        threshold = format_value(condition.value, dimension_of(condition.quantity))
    return f"{condition.quantity.value} {condition.op.value} {threshold}"
