"""A plan's ``limits``: the global safety limits (on the channel's readings, and on device and
chamber signals), and the check of written setpoints against them (limits against the battery,
computed setpoints and signals' units are checked when a test starts)."""

from __future__ import annotations

import re

import yaml

from cellbench_core.plan.dimensions import LIMIT_DIMENSIONS
from cellbench_core.plan.end_conditions import check_signal_name, signal_value
from cellbench_core.plan.model import Amount, Limit, SafetyLimits, SignalLimit
from cellbench_core.plan.yaml_source import (
    ParseContext,
    Where,
    check_keys,
    join_path,
    node_duration,
    node_entries,
    node_line,
    node_text,
)
from cellbench_core.units import (
    Dimension,
    UnitError,
    Value,
    check_physical,
    describe,
    format_value,
    parse_duration,
    parse_value,
    quote,
)

_FOR = re.compile(r"\bfor\b", re.IGNORECASE | re.ASCII)
_BATTERY = "battery"


def parse_limits(ctx: ParseContext, node: yaml.Node, path: str) -> SafetyLimits:
    """The safety limits the mapping ``node`` sets."""
    entries = node_entries(ctx, node, path)
    signals = {key: entry for key, entry in entries.items() if "." in key}
    entries = {key: entry for key, entry in entries.items() if key not in signals}
    check_keys(ctx, entries, tuple(LIMIT_DIMENSIONS), path)
    limits = {key: _limit(ctx, value_node, join_path(path, key), LIMIT_DIMENSIONS[key])
              for key, (_, value_node) in entries.items()}
    current = limits.get("current_max")
    if current is not None and not current.battery and not (current.value and current.value.si > 0):
        ctx.fail(node_line(entries["current_max"][1]), join_path(path, "current_max"),
                 "must be positive: it limits the magnitude of the current")
    for low, high in (("voltage_min", "voltage_max"), ("temperature_min", "temperature_max")):
        a, b = limits.get(low), limits.get(high)
        if (a is not None and b is not None and a.battery == b.battery and a.value is not None
                and b.value is not None and a.value.si >= b.value.si):
            ctx.fail(node_line(entries[low][1]), join_path(path, low), f"must be below {high}")
    return SafetyLimits(**limits, signals=tuple(
        _signal_limit(ctx, name, key_line, value_node, join_path(path, name))
        for name, (key_line, value_node) in signals.items()))


_SIGNAL_LIMIT_KEYS = ("max", "min", "for")
_SIGNAL_LIMIT_EXAMPLE = "a mapping like {max: 4.25 V, for: 1 s} or {min: 2.6 V}"


def _signal_limit(ctx: ParseContext, name: str, line: int, node: yaml.Node,
                  path: str) -> SignalLimit:
    """``<device>.<signal>: {max: <value>, min: <value>, for: <delay>}``: the bound's direction
    is written out, at least one of ``max`` and ``min``."""
    check_signal_name(ctx, name, line, path)
    if not isinstance(node, yaml.MappingNode):
        ctx.fail(node_line(node), path, f"expected {_SIGNAL_LIMIT_EXAMPLE}: a signal's limit "
                 "says which way it bounds it")
    entries = node_entries(ctx, node, path)
    check_keys(ctx, entries, _SIGNAL_LIMIT_KEYS, path)
    if "max" not in entries and "min" not in entries:
        ctx.fail(node_line(node), path, f"give 'max', 'min' or both: {_SIGNAL_LIMIT_EXAMPLE}")
    bounds = {}
    for key in ("max", "min"):
        if key in entries:
            where = join_path(path, key)
            text = node_text(ctx, entries[key][1], where, "a value like '4.25 V' or a bare "
                             "number in the signal's unit")
            bounds[key] = (signal_value(ctx, name, text.strip(), node_line(entries[key][1]),
                                        where, "is limited by"), where, entries[key][1])
    if len(bounds) == 2:
        (signal, high), where, value_node = bounds["max"]
        (other, low), _, _ = bounds["min"]
        if signal.dimension is not other.dimension:
            ctx.fail(node_line(value_node), where, "write 'max' and 'min' in one kind of unit "
                     f"(here {signal.dimension} and {other.dimension})")
        if low.si >= high.si:
            ctx.fail(node_line(bounds["min"][2]), bounds["min"][1], "must be below max")
    signal = next(iter(bounds.values()))[0][0]
    delay_s = node_duration(ctx, entries["for"][1], join_path(path, "for")) \
        if "for" in entries else 0.0
    return SignalLimit(signal, bounds["max"][0][1] if "max" in bounds else None,
                       bounds["min"][0][1] if "min" in bounds else None, delay_s, line)


def _limit(ctx: ParseContext, node: yaml.Node, path: str, dimension: Dimension) -> Limit:
    """``<value>``, ``battery`` or ``battery ± <value>``, then optionally ``for <duration>``."""
    expected = (f"{describe(dimension)}, 'battery' or 'battery - <offset>', optionally "
                "followed by 'for <delay>'")
    text = node_text(ctx, node, path, expected)
    line = node_line(node)
    head, *delay = _FOR.split(text, maxsplit=1)
    delay_s = 0.0
    if delay:
        try:
            delay_s = parse_duration(delay[0])
        except UnitError as error:
            ctx.fail(line, path, f"after 'for': {error}")
    head = head.strip()
    if not head.casefold().startswith(_BATTERY):
        try:
            value = parse_value(head, dimension)
        except UnitError as error:
            ctx.fail(line, path, f"{error} (or 'battery' for the battery's own limit)")
        try:  # a C-rate has no physical range before the capacity is known
            if not value.per_capacity:  # a current is a magnitude: its sign is checked below
                check_physical(abs(value.si) if dimension is Dimension.CURRENT else value.si,
                               dimension)
        except UnitError as error:
            ctx.fail(line, path, str(error))
        return Limit(value, delay_s=delay_s)
    offset = head[len(_BATTERY):].strip()
    if not offset:
        return Limit(battery=True, delay_s=delay_s)
    if offset[0] not in "+-":
        ctx.fail(line, path, f"expected 'battery + <offset>' or 'battery - <offset>', "
                 f"got {quote(head)}")
    try:
        value = parse_value(offset[1:], dimension)
    except UnitError as error:
        ctx.fail(line, path, f"offset from the battery: {error}")
    if not value.si >= 0:
        ctx.fail(line, path, f"write the offset's sign once: 'battery - 0.05 V', got {quote(head)}")
    signed = Value(-value.si if offset[0] == "-" else value.si, value.per_capacity)
    return Limit(signed, battery=True, delay_s=delay_s)


def check_against_limits(ctx: ParseContext, setpoints: dict[str, tuple[Amount, Where]]) -> None:
    """Setpoints beyond absolute limits; limits against the battery, and computed setpoints,
    are checked at run time."""
    limits = ctx.limits
    volts = setpoints.get("voltage", (None,))[0]
    if isinstance(volts, Value):
        line, path = setpoints["voltage"][1]
        high, low = _absolute(limits.voltage_max), _absolute(limits.voltage_min)
        if high is not None and volts.si > high.si:
            ctx.fail(line, path, f"{format_value(volts, Dimension.VOLTAGE)} is above "
                     f"limits.voltage_max")
        if low is not None and volts.si < low.si:
            ctx.fail(line, path, f"{format_value(volts, Dimension.VOLTAGE)} is below "
                     f"limits.voltage_min")
    current_max = _absolute(limits.current_max)
    current = setpoints.get("current", (None,))[0]
    if isinstance(current, Value) and current_max is not None:
        line, path = setpoints["current"][1]
        both = _comparable(current, current_max, ctx.capacity_ah)
        if both is not None and abs(both[0]) > both[1]:
            ctx.fail(line, path, f"{format_value(current, Dimension.CURRENT)} exceeds "
                     f"limits.current_max {format_value(current_max, Dimension.CURRENT)}")


def _absolute(limit: Limit | None) -> Value | None:
    return limit.value if limit is not None and not limit.battery else None


def _comparable(a: Value, b: Value, capacity_ah: float | None) -> tuple[float, float] | None:
    """Both values in one unit (A, or C when both are C-rates); None until a battery is known."""
    if a.per_capacity == b.per_capacity:
        return a.si, b.si
    if capacity_ah is None:
        return None
    return a.resolve(capacity_ah), b.resolve(capacity_ah)
