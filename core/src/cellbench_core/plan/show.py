"""A plan as readable step text, one numbered line per step, loops indented::

    Capacity check (capacity 2.5 Ah)
    limits: voltage_max 4.25 V, voltage_min 2.45 V, current_max 2 C
      1 Rest for 30 min                                          line 12
      2 Charge at 0.3333 C to 4.2 V until abs_current <= 0.05 C  line 13
        Repeat 3 times, a new cycle each pass:                    line 14
      3   Discharge at 1 C until voltage <= 2.5 V, or for 90 min  line 17
"""

from __future__ import annotations

from cellbench_core.plan.dimensions import LIMIT_DIMENSIONS, dimension_of
from cellbench_core.plan.expr import Computed
from cellbench_core.plan.model import (
    Amount,
    Condition,
    Loop,
    Message,
    Node,
    Op,
    Plan,
    Quantity,
    SetStep,
    StepSpec,
)
from cellbench_core.plan.normalise import format_limit, signal_bounds
from cellbench_core.units import Dimension, Value, format_number, format_value
from cellbench_hal import ProfileQuantity, StepMode

_INDENT = "  "


def show_plan(plan: Plan) -> str:
    """The plan as numbered, readable lines of text (ending with a newline)."""
    header = plan.name
    if plan.capacity_ah is not None:
        header += f" (capacity {format_value(Value(plan.capacity_ah), Dimension.CHARGE)})"
    lines = [header]
    limits = [f"{name} {format_limit(limit, LIMIT_DIMENSIONS[name], _duration)}"
              for name in LIMIT_DIMENSIONS if (limit := getattr(plan.limits, name)) is not None]
    limits += [f"{signal_limit.signal.name} " + " ".join(
        f"{key} {text}" for key, text in signal_bounds(signal_limit, _duration).items())
        for signal_limit in plan.limits.signals]
    if limits:
        lines.append("limits: " + ", ".join(limits))
    rows: list[tuple[str, str, int]] = []  # number, text, line
    _nodes(plan.steps, 0, rows, [0])
    width = max(len(text) for _, text, _ in rows)
    lines += [f"{number:>3} {text:<{width}}  line {line}" for number, text, line in rows]
    return "\n".join(lines) + "\n"


def _nodes(nodes: tuple[Node, ...], depth: int, rows: list[tuple[str, str, int]],
           counter: list[int]) -> None:
    pad = _INDENT * depth
    for node in nodes:
        if isinstance(node, Loop):
            times = "forever" if node.count is None else (
                "once" if node.count == 1 else f"{node.count} times")
            text = f"{pad}Repeat {times}"
            if node.until:
                text += f" {_groups(node.until)}"
            text += ", a new cycle each pass:" if node.cycle else ":"
            rows.append(("", text, node.line))
            _nodes(node.body, depth + 1, rows, counter)
        elif isinstance(node, Message):
            rows.append(("", f"{pad}Message {node.text!r}", node.line))
        elif isinstance(node, SetStep):
            parts = [f"the capacity for C-rates to {expr.text}" if name == "capacity" else
                     f"{name} to {expr.text}" for name, expr in node.values]
            if node.resets:
                parts.append(f"reset {', '.join(node.resets)}")
            parts += [f"write {w.signal.name} = {format_value(w.value, w.signal.dimension)}"
                      for w in node.writes]
            rows.append(("", f"{pad}Set {'; '.join(parts)}", node.line))
        else:
            counter[0] += 1
            rows.append((str(counter[0]), pad + _step(node), node.line))


def _step(step: StepSpec) -> str:
    if step.chamber is not None:
        text = _chamber(step)
    elif step.external is not None:
        text = f"External setpoints (watchdog {_duration(step.external.watchdog_s)})"
    else:
        text = _setpoint(step)
    ends = []
    for index, group in enumerate(step.until):
        action = step.action(index)
        end = _group(group)
        ends.append(end if action.kind.value == "next" else f"{end} ({action})")
    if step.profile is not None:
        ends.append("until its end")
    if ends:
        text += " " + ", or ".join(ends)
    if step.label is not None:
        text += f" [{step.label}]"
    return text


def _chamber(step: StepSpec) -> str:
    c = step.chamber
    assert c is not None
    text = f"Chamber to {format_number(c.temperature_c or 0.0)} °C"
    if c.ramp_k_per_s is not None:
        text += f" at {format_number(c.ramp_k_per_s * 60.0)} K/min"
    if c.humidity_pct is not None:
        text += f" and {format_number(c.humidity_pct)} % (±{format_number(c.band_pct or 0.0)} %)"
    return (f"{text}, rest until within ±{format_number(c.band_k)} K for "
            f"{_duration(c.stable_s)} (fail after {_duration(c.timeout_s)})")


def _setpoint(step: StepSpec) -> str:
    def value(v: Amount | None, dimension: Dimension) -> str:
        assert v is not None
        if isinstance(v, Computed):
            return str(v.expr)
        return _short(Value(abs(v.si), v.per_capacity), dimension)

    signed = step.current or step.power or Value(0)
    sign = signed.direction if isinstance(signed, Computed) else signed.si
    verb = "Charge/discharge" if sign is None else "Charge" if sign > 0 else "Discharge"
    if step.mode is StepMode.REST:
        return "Rest"
    if step.mode is StepMode.CC:
        return f"{verb} at {value(step.current, Dimension.CURRENT)}"
    if step.mode is StepMode.CCCV:
        return (f"{verb} at {value(step.current, Dimension.CURRENT)} to "
                f"{value(step.voltage, Dimension.VOLTAGE)}")
    if step.mode is StepMode.CV:
        limit = f" (at most {value(step.current, Dimension.CURRENT)})" if step.current else ""
        return f"Hold at {value(step.voltage, Dimension.VOLTAGE)}{limit}"
    if step.mode is StepMode.CP:
        return f"{verb} at {value(step.power, Dimension.POWER)}"
    if step.mode is StepMode.CR:
        return f"Discharge at {value(step.resistance, Dimension.RESISTANCE)}"
    profile = step.profile
    assert profile is not None
    dimension = Dimension(profile.quantity.value)
    limit = (f" (at most {value(step.current, Dimension.CURRENT)})"
             if step.current and profile.quantity is ProfileQuantity.VOLTAGE else "")
    if profile.table is not None:
        how = "held row by row" if profile.hold else "linear between rows"
        return (f"Follow {profile.quantity.value} {profile.column!r} of {profile.table} "
                f"({how}, {_duration(profile.time_s[-1])}){limit}")
    start, end = (_short(Value(v, profile.per_capacity), dimension) for v in profile.values)
    return f"Ramp from {start} to {end} over {_duration(profile.time_s[-1])}{limit}"


def _groups(groups: tuple[tuple[Condition, ...], ...]) -> str:
    return " or ".join(_group(group) for group in groups)


def _group(group: tuple[Condition, ...]) -> str:
    parts = []
    for condition in group:
        if (condition.quantity is Quantity.STEP_TIME and condition.op is Op.GE
                and len(group) == 1 and isinstance(condition.value, Value)):
            return f"for {_duration(condition.value.si)}"
        if isinstance(condition.value, Computed):
            threshold = str(condition.value.expr)
        elif condition.of_first:
            threshold = f"{format_number(condition.value.si * 100)} % of the first pass"
        else:
            threshold = _short(condition.value, dimension_of(condition.quantity))
        parts.append(f"{condition.quantity.value} {condition.op.value} {threshold}")
    return "until " + " and ".join(parts)


def _short(value: Value, dimension: Dimension) -> str:
    """``value`` to four significant digits, for reading (the normal form keeps every digit)."""
    return format_value(Value(float(f"{value.si:.4g}"), value.per_capacity), dimension)


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{format_number(seconds / size)} {unit}"
    return f"{format_number(seconds)} s"
