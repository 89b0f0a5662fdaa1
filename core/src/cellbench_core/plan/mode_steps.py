"""Steps written as a mapping with ``mode``: a constant mode (rest, cc, cv, cccv, cp, cr), a
ramp between two values, or a profile that follows a column of a lookup table."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from cellbench_core.plan.channel_steps import (
    DIRECTIONS,
    MODES,
    build_step,
    step_actions,
    step_label,
)
from cellbench_core.plan.dimensions import SETPOINT_DIMENSIONS
from cellbench_core.plan.end_conditions import ConditionGroups, parse_until
from cellbench_core.plan.expr import Must
from cellbench_core.plan.limits import check_against_limits
from cellbench_core.plan.model import (
    NEXT,
    Action,
    Amount,
    Condition,
    Op,
    ProfileSpec,
    Quantity,
    StepSpec,
)
from cellbench_core.plan.yaml_source import (
    Entries,
    ParseContext,
    Where,
    did_you_mean,
    join_path,
    mapping_text,
    node_choice,
    node_duration,
    node_flag,
    node_line,
    node_positive,
    node_text,
    parse_amount,
    with_sign,
)
from cellbench_core.units import Dimension, UnitError, Value, describe, parse_quantity, quote
from cellbench_hal import ProfileQuantity, StepMode

_RAMP_KEYS = ("from", "to", "over")
_TABLE_KEYS = ("table", "column", "hold")
_PROFILE_DIMENSIONS = (Dimension.CURRENT, Dimension.POWER, Dimension.VOLTAGE)
#: The keys a step mapping with ``mode`` may have (which ones depends on the mode).
MODE_STEP_KEYS = ("mode", "direction", *SETPOINT_DIMENSIONS, *_RAMP_KEYS, *_TABLE_KEYS, "until",
                  "for", "label")


def mode_step(ctx: ParseContext, entries: Entries, line: int, path: str) -> StepSpec:
    """The step a mapping with ``mode`` (at ``line`` and ``path``) describes."""
    mode_node = entries["mode"][1]
    word = node_choice(ctx, mode_node, join_path(path, "mode"), (*MODES, *_PROFILE_STEPS))
    if word in _PROFILE_STEPS:
        return _PROFILE_STEPS[word](ctx, entries, line, path)
    mode = StepMode(word)
    rule = MODES[mode]
    allowed = (*rule.required, *rule.optional)
    _no_profile_keys(ctx, entries, path, word, ())
    for name in SETPOINT_DIMENSIONS:
        if name in entries and name not in allowed:
            ctx.fail(entries[name][0], join_path(path, name), f"a {mode} step takes no {name}")
    for name in rule.required:
        if name not in entries:
            ctx.fail(line, join_path(path, name), f"missing: a {mode} step needs a {name}")
    sign = 1.0
    if "direction" in entries:
        direction_path = join_path(path, "direction")
        if rule.signed is None:
            ctx.fail(entries["direction"][0], direction_path,
                     "only cc, cccv and cp steps take a direction")
        sign = DIRECTIONS[node_choice(ctx, entries["direction"][1], direction_path, DIRECTIONS)]
    setpoints: dict[str, tuple[Amount, Where]] = {}
    for name in allowed:
        if name in entries:
            node = entries[name][1]
            where = (node_line(node), join_path(path, name))
            dimension = SETPOINT_DIMENSIONS[name]
            text = node_text(ctx, node, where[1], describe(dimension))
            must = Must.NONZERO if name == rule.signed else Must.POSITIVE
            _, value = parse_amount(ctx, text, *where, (dimension,), must)
            if name == rule.signed and "direction" in entries:
                if isinstance(value, Value) and not value.si > 0:
                    ctx.fail(*where, "with a direction, give the magnitude (a positive value)")
                value = with_sign(value, sign)
            setpoints[name] = (value, where)
    until, then, label = step_ends(ctx, entries, path)
    return build_step(ctx, mode, setpoints, until, mapping_text(entries), label, (line, path), then)


def step_ends(ctx: ParseContext, entries: Entries,
               path: str) -> tuple[ConditionGroups, list[Action], str | None]:
    """A mapping step's end conditions with their actions (``until``, ``for``) and label."""
    until: ConditionGroups = []
    then: list[Action] = []
    if "until" in entries:
        until, then = parse_until(ctx, entries["until"][1], join_path(path, "until"))
    if "for" in entries:
        node = entries["for"][1]
        seconds = node_duration(ctx, node, join_path(path, "for"))
        until.append((Condition(Quantity.STEP_TIME, Op.GE, Value(seconds), node_line(node)),))
        then.append(NEXT)
    return until, then, step_label(ctx, entries, path)


def _no_profile_keys(ctx: ParseContext, entries: Entries, path: str, mode: str,
                     allowed: Sequence[str]) -> None:
    others: tuple[str, ...] = (*_RAMP_KEYS, *_TABLE_KEYS)
    if mode in _PROFILE_STEPS:  # a ramp or profile sets its own value and its sign
        others += ("direction", "power", "voltage", "resistance")
    for key in others:
        if key in entries and key not in allowed:
            ctx.fail(entries[key][0], join_path(path, key), f"a {mode} step takes no {key}")


def _ramp_step(ctx: ParseContext, entries: Entries, line: int, path: str) -> StepSpec:
    """``mode: ramp``: from one current, power or voltage to another over a duration."""
    _no_profile_keys(ctx, entries, path, "ramp", _RAMP_KEYS)
    for key in _RAMP_KEYS:
        if key not in entries:
            ctx.fail(line, join_path(path, key), "missing: a ramp needs 'from', 'to' and 'over', "
                     "like from: 0 A, to: 2 A, over: 10 min")
    ends: list[Value] = []
    dimension = Dimension.CURRENT
    for key in ("from", "to"):
        node = entries[key][1]
        text = node_text(ctx, node, join_path(path, key), "a current, C-rate, power or voltage")
        try:
            found, value = parse_quantity(text, _PROFILE_DIMENSIONS)
        except UnitError as error:
            ctx.fail(node_line(node), join_path(path, key), str(error))
        if ends and found is dimension and value.per_capacity != ends[0].per_capacity:
            if ends[0].si == 0:  # "from: 0 A, to: 1C": zero is zero in either unit
                ends[0] = Value(0.0, value.per_capacity)
            elif value.si == 0:
                value = Value(0.0, ends[0].per_capacity)
        if ends and (found is not dimension or value.per_capacity != ends[0].per_capacity):
            ctx.fail(node_line(node), join_path(path, key), "give 'from' and 'to' in the same "
                     "kind of unit (both currents in A, both C-rates, both powers or both "
                     "voltages)")
        if found is Dimension.VOLTAGE and not value.si > 0:
            ctx.fail(node_line(node), join_path(path, key), "a voltage must be positive")
        dimension = found
        ends.append(value)
    over = node_duration(ctx, entries["over"][1], join_path(path, "over"))
    profile = ProfileSpec(ProfileQuantity(dimension.value), (0.0, over),
                          (ends[0].si, ends[1].si), per_capacity=ends[0].per_capacity)
    where = [(value, (node_line(entries[key][1]), join_path(path, key)))
             for key, value in zip(("from", "to"), ends, strict=True)]
    return _profile_step(ctx, entries, line, path, profile, where)


def _table_step(ctx: ParseContext, entries: Entries, line: int, path: str) -> StepSpec:
    """``mode: profile``: a current, power or voltage following a column of a lookup table."""
    _no_profile_keys(ctx, entries, path, "profile", _TABLE_KEYS)
    if "table" not in entries:
        ctx.fail(line, join_path(path, "table"), "missing: a profile step needs a 'table' (a CSV "
                 "file with a time column and a value column)")
    node = entries["table"][1]
    table_path = join_path(path, "table")
    name = node_text(ctx, node, table_path, "a table file like 'drive-cycle.csv'")
    try:
        table = ctx.files.table(ctx.files.locate(name, ctx.files.folder(ctx.source)))
    except (ValueError, OSError) as error:
        ctx.fail(node_line(node), table_path, str(error))
    columns = dict(table.columns)
    if "column" in entries:
        column_node = entries["column"][1]
        column = node_text(ctx, column_node, join_path(path, "column"), "a column name")
        if column not in columns:
            ctx.fail(node_line(column_node), join_path(path, "column"), f"the table has no column "
                     f"{quote(column)}{did_you_mean(column, columns)}; it has {', '.join(columns)}")
    elif len(columns) == 1:
        column = next(iter(columns))
    else:
        ctx.fail(line, join_path(path, "column"), f"missing: the table has several columns "
                 f"({', '.join(columns)}); name one with 'column'")
    unit, raw = columns[column]
    try:
        dimension, scale = parse_quantity(f"1 {unit}", _PROFILE_DIMENSIONS)
    except UnitError as error:
        ctx.fail(node_line(node), table_path, f"column {column!r}: {error}")
    values = tuple(v * scale.si for v in raw)
    if not all(map(math.isfinite, values)):
        ctx.fail(node_line(node), table_path, f"column {column!r} has values too large for {unit}")
    if dimension is Dimension.VOLTAGE and not min(values) > 0:
        ctx.fail(node_line(node), table_path, f"column {column!r}: voltages must be positive")
    hold = "hold" in entries and node_flag(ctx, entries["hold"][1], join_path(path, "hold"))
    profile = ProfileSpec(ProfileQuantity(dimension.value), tuple(table.time_s), values,
                          per_capacity=scale.per_capacity, hold=hold, table=name, column=column)
    extremes = [(Value(value, scale.per_capacity), (node_line(node), table_path))
                for value in (min(values), max(values))]
    return _profile_step(ctx, entries, line, path, profile, extremes)


def _profile_step(ctx: ParseContext, entries: Entries, line: int, path: str, profile: ProfileSpec,
                  points: list[tuple[Value, Where]]) -> StepSpec:
    """A ramp or profile step: its current limit (voltage only), its extreme ``points``
    checked against the limits, its ends."""
    setpoints: dict[str, tuple[Amount, Where]] = {}
    if "current" in entries:
        where = (node_line(entries["current"][1]), join_path(path, "current"))
        if profile.quantity is not ProfileQuantity.VOLTAGE:
            ctx.fail(*where, "only a voltage ramp or profile takes a current (its limit)")
        setpoints["current"] = (node_positive(ctx, entries["current"][1], where[1],
                                              Dimension.CURRENT), where)
    name = "voltage" if profile.quantity is ProfileQuantity.VOLTAGE else "current"
    if profile.quantity is not ProfileQuantity.POWER:
        for value, where in points:
            check_against_limits(ctx, {name: (value, where)})
    until, then, label = step_ends(ctx, entries, path)
    if not until and profile.time_s[-1] == 0:
        ctx.fail(line, path, "a table of one row sets a constant: give the step an end with "
                 "'until' or 'for'")
    return ctx.origin(StepSpec(mode=StepMode.PROFILE, until=tuple(until),
                               text=mapping_text(entries), label=label, line=line,
                               then=step_actions(then),
                               profile=profile,
                               current=setpoints["current"][0] if setpoints else None), line, path)


_PROFILE_STEPS: dict[str, Callable[[ParseContext, Entries, int, str], StepSpec]] = {
    "ramp": _ramp_step,
    "profile": _table_step,
}
