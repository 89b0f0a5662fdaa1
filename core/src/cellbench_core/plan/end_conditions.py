"""The grammar of end conditions: ``until`` expressions (``<quantity> <op> <value>`` joined with
``and`` and ``or``), the ``{when, then}`` items that give each an action, comparisons with
quantities, with device signals and with a loop's first pass."""

from __future__ import annotations

import math
import re

import yaml

from cellbench_core.plan.dimensions import QUANTITY_DIMENSIONS
from cellbench_core.plan.expr import MARK, Must
from cellbench_core.plan.model import NEXT, Action, ActionKind, Condition, Op, Quantity, Signal
from cellbench_core.plan.yaml_source import (
    ParseContext,
    check_keys,
    did_you_mean,
    join_path,
    node_entries,
    node_line,
    node_text,
    parse_amount,
)
from cellbench_core.units import Dimension, UnitError, Value, parse_quantity, parse_value, quote

#: End conditions as groups: the step ends when every condition of any one group holds.
ConditionGroups = list[tuple[Condition, ...]]

_OPS = {">=": Op.GE, ">": Op.GE, "<=": Op.LE, "<": Op.LE}
_COMPARISON = re.compile(r"\s*(?P<quantity>\w+(?:\.\w+)?)\s*(?P<op>[<>=!]=?)\s*"
                         r"(?P<value>.*?)\s*", re.ASCII | re.DOTALL)
_SIGNAL = re.compile(r"[a-z][a-z0-9_]{0,31}\.\w{1,64}", re.ASCII)
_OR = re.compile(r"\bor\b", re.IGNORECASE | re.ASCII)
AND_KEYWORD = re.compile(r"\band\b", re.IGNORECASE | re.ASCII)
_EXAMPLE_CONDITION = "a condition like 'voltage >= 4.2 V'"
_ACTION_EXAMPLE = "'next', 'goto <label>', 'end loop' or 'end test'"
_GOTO = re.compile(r"goto\s+(?P<label>\S+)", re.ASCII | re.IGNORECASE)
_WHEN_KEYS = ("when", "then")
_OF_FIRST = re.compile(r"(?P<percent>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*%\s*of\s+first", re.ASCII)


def parse_until(ctx: ParseContext, node: yaml.Node,
                path: str) -> tuple[ConditionGroups, list[Action]]:
    """A step's end conditions and the action of each group.

    ``until`` is an expression, a ``{when: <expression>, then: <action>}`` mapping, or a list of
    either."""
    items = [(node, path)]
    if isinstance(node, yaml.SequenceNode):
        if not node.value:
            ctx.fail(node_line(node), path, f"expected {_EXAMPLE_CONDITION} or a list of them, "
                     "got an empty list")
        items = [(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
    groups: ConditionGroups = []
    actions: list[Action] = []
    for item, item_path in items:
        action = NEXT
        if isinstance(item, yaml.MappingNode):
            entries = node_entries(ctx, item, item_path)
            check_keys(ctx, entries, _WHEN_KEYS, item_path)
            for key in _WHEN_KEYS:
                if key not in entries:
                    ctx.fail(node_line(item), join_path(item_path, key), f"missing: give both "
                             f"'when' (a condition) and 'then' ({_ACTION_EXAMPLE})")
            action = _action(ctx, entries["then"][1], join_path(item_path, "then"))
            item, item_path = entries["when"][1], join_path(item_path, "when")
        expression = condition_groups(ctx, item, item_path)
        groups += expression
        actions += [action] * len(expression)
    return groups, actions


def _action(ctx: ParseContext, node: yaml.Node, path: str) -> Action:
    text = " ".join(node_text(ctx, node, path, _ACTION_EXAMPLE).split())
    line = node_line(node)
    goto = _GOTO.fullmatch(text)
    if goto:
        return ctx.origin(Action(ActionKind.GOTO, goto["label"], line), line, path)
    kinds = {kind.value: kind for kind in ActionKind if kind is not ActionKind.GOTO}
    kind = kinds.get(text.casefold())
    if kind is None:
        ctx.fail(node_line(node), path, f"expected {_ACTION_EXAMPLE}, got {quote(text)}"
                 f"{did_you_mean(text, [*kinds, 'goto'])}")
    return ctx.origin(Action(kind, line=line), line, path)


def condition_groups(ctx: ParseContext, node: yaml.Node, path: str, *,
                     loop: bool = False) -> ConditionGroups:
    """The expression ``node`` holds: comparisons joined with ``and`` and ``or``; ``loop``: it
    is a loop's ``until`` (decided at the end of a pass)."""
    text = node_text(ctx, node, path, _EXAMPLE_CONDITION)
    return [tuple(_comparison(ctx, term, node_line(node), path, loop)
                  for term in AND_KEYWORD.split(alternative))
            for alternative in _OR.split(text)]


def _comparison(ctx: ParseContext, text: str, line: int, path: str,
                loop: bool = False) -> Condition:
    match = _COMPARISON.fullmatch(text)
    if match is None or not match["value"]:
        ctx.fail(line, path, f"expected {_EXAMPLE_CONDITION}, got {quote(text.strip())}")
    name, op_text = match["quantity"].casefold(), match["op"]
    if "." in match["quantity"]:
        return _signal_comparison(ctx, match, line, path, loop)
    if name not in QUANTITY_DIMENSIONS:
        ctx.fail(line, path, f"unknown quantity {quote(name)}"
                 f"{did_you_mean(name, QUANTITY_DIMENSIONS)}"
                 f"; expected one of {', '.join(QUANTITY_DIMENSIONS)}")
    if op_text not in _OPS:
        ctx.fail(line, path, f"unknown comparison {quote(op_text)}; use >=, >, <= or <")
    quantity = Quantity(name)
    of_first = _OF_FIRST.fullmatch(match["value"])
    if of_first:
        if not loop:
            ctx.fail(line, path, f"{name}: '% of first' compares with a loop's first pass; it "
                     "belongs in a loop's 'until'")
        percent = float(of_first["percent"])
        if not math.isfinite(percent):
            ctx.fail(line, path, f"{name}: {quote(match['value'])} is not a finite number")
        return Condition(quantity, _OPS[op_text], Value(percent / 100), line, of_first=True)
    if match["value"].startswith(MARK):
        if loop:
            ctx.fail(line, path, f"{name}: a loop's 'until' compares with written values, not "
                     "expressions")
        _, amount = parse_amount(ctx, match["value"], line, path,
                                 (QUANTITY_DIMENSIONS[quantity],), Must.ANY)
        return Condition(quantity, _OPS[op_text], amount, line)
    try:
        value = parse_value(match["value"], QUANTITY_DIMENSIONS[quantity])
    except UnitError as error:
        ctx.fail(line, path, f"{name}: {error}")
    return Condition(quantity, _OPS[op_text], value, line)


def _signal_comparison(ctx: ParseContext, match: re.Match[str], line: int, path: str,
                       loop: bool) -> Condition:
    """``<device>.<signal> >= <value>``: a device's or chamber's signal; its unit is checked
    against the station's device when the test starts."""
    name, op_text = match["quantity"], match["op"]
    check_signal_name(ctx, name, line, path)
    if loop:
        ctx.fail(line, path, f"{name}: a loop's 'until' takes the quantities of the last "
                 "sample, not device signals; end a step on the signal instead")
    if op_text not in _OPS:
        ctx.fail(line, path, f"unknown comparison {quote(op_text)}; use >=, >, <= or <")
    signal, value = signal_value(ctx, name, match["value"], line, path, "compares with")
    return Condition(signal, _OPS[op_text], value, line)


def check_signal_name(ctx: ParseContext, name: str, line: int, path: str) -> None:
    """Refuse ``name`` unless it is written like a station's signal: ``<device>.<signal>``."""
    if not _SIGNAL.fullmatch(name):
        ctx.fail(line, path, f"{quote(name)} is not a signal name like 'bms.cell_max_v' "
                 "(a device or chamber name of the station file, a dot, its signal)")


def signal_value(ctx: ParseContext, name: str, text: str, line: int, path: str,
                 verb: str) -> tuple[Signal, Value]:
    """A written value for signal ``name`` (what a plan ``verb`` it): a value with a unit, or a
    bare number in the signal's own unit; the signal's unit is checked once the station's
    devices are known."""
    if text.startswith(MARK):
        ctx.fail(line, path, f"{name}: a signal {verb} a written value (its unit is the "
                 "device's), not an expression")
    try:
        dimension, value = parse_quantity(text, None)
    except UnitError:
        try:
            dimension, value = parse_quantity(text, (Dimension.COUNT,))
        except UnitError as error:
            ctx.fail(line, path, f"{name}: {error}")
    if value.per_capacity:
        ctx.fail(line, path, f"{name}: a C-rate needs a battery; give a signal amperes")
    return Signal(name, dimension), value
