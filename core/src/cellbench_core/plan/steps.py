"""A plan's list of steps: each item text or a mapping of one kind (``mode``, ``repeat``,
``message``, ``chamber``, ``set``, ``external``) or an ``include`` of another plan file's
steps; loops, messages, chamber steps and set steps are read here.

A new kind of step mapping is an entry in :data:`NODE_KINDS`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from cellbench_core.plan.channel_steps import step_label
from cellbench_core.plan.dimensions import QUANTITY_DIMENSIONS
from cellbench_core.plan.end_conditions import (
    ConditionGroups,
    check_signal_name,
    condition_groups,
    signal_value,
)
from cellbench_core.plan.expr import MARK, RESERVED, Const, Expr
from cellbench_core.plan.external_step import external_step
from cellbench_core.plan.files import FileRefused
from cellbench_core.plan.mode_steps import MODE_STEP_KEYS, mode_step
from cellbench_core.plan.model import (
    COUNTERS,
    ChamberSpec,
    Loop,
    Message,
    Node,
    PlanError,
    SetStep,
    Signal,
    SignalWrite,
    StepSpec,
)
from cellbench_core.plan.text_steps import text_step
from cellbench_core.plan.yaml_source import (
    BOOL_TAG,
    STR_TAG,
    Entries,
    ParseContext,
    check_keys,
    compose,
    did_you_mean,
    join_path,
    mapping_text,
    node_duration,
    node_entries,
    node_flag,
    node_kind,
    node_line,
    node_positive,
    node_text,
    node_value,
    node_whole,
    parse_computed,
    read_plan_text,
    recognised_entries,
)
from cellbench_core.units import Dimension, Value, format_value, noun, quote
from cellbench_hal import StepMode

_MAX_REPEAT = 2**31 - 1  # cycle numbers must fit the database's integer columns
_MAX_INCLUDES = 16  # nesting depth of included files
_MAX_MESSAGE = 2000
#: Steps and actions of a plan with its includes written out: includes fan out (a file
#: included ten times, itself including another ten times, ...), and checking and running a
#: plan is linear in this.
MAX_PLAN_SIZE = 100_000


def parse_steps(ctx: ParseContext, node: yaml.Node, path: str) -> tuple[Node, ...]:
    """The steps of the list ``node``, includes written out."""
    if not isinstance(node, yaml.SequenceNode):
        ctx.fail(node_line(node), path, f"expected a list of steps, got {node_kind(node)}")
    if not node.value:
        ctx.fail(node_line(node), path, "no steps: give at least one")
    nodes: list[Node] = []
    for index, item in enumerate(node.value):
        item_path = f"{path}[{index}]"
        if isinstance(item, yaml.MappingNode) and any(
                isinstance(key, yaml.ScalarNode) and key.value == "include"
                for key, _ in item.value):
            nodes += _include(ctx, node_entries(ctx, item, item_path), item_path)
        else:
            nodes.append(_node(ctx, item, item_path))
        if len(ctx.origins) > MAX_PLAN_SIZE:  # every step and action is remembered there
            ctx.fail(node_line(item), item_path, f"the plan, includes written out, has more "
                     f"than {MAX_PLAN_SIZE:,} steps and actions")
    return tuple(nodes)


_INCLUDED_KEYS = ("name", "steps")


def _include(ctx: ParseContext, entries: Entries, path: str) -> tuple[Node, ...]:
    """``include: <file>``: the steps of another plan file, in place (a subroutine)."""
    check_keys(ctx, entries, ("include",), path)
    key_line, node = entries["include"]
    where = join_path(path, "include")
    name = node_text(ctx, node, where, "a plan file like 'check-up.yaml'")
    try:
        file = ctx.files.locate(name, ctx.files.folder(ctx.source))
    except FileRefused as error:
        ctx.fail(key_line, where, str(error))
    chain = (*ctx.including, Path(ctx.source).resolve())
    if file.resolve() in chain:
        cycle = " -> ".join(p.name for p in (*chain[chain.index(file.resolve()):], file))
        ctx.fail(key_line, where, f"include cycle: {cycle}")
    if len(chain) > _MAX_INCLUDES:
        ctx.fail(key_line, where, f"includes nested deeper than {_MAX_INCLUDES} files")
    child = ParseContext(str(file), files=ctx.files, limits=ctx.limits,
                         capacity_ah=ctx.capacity_ah, labels=ctx.labels, variables=ctx.variables,
                         origins=ctx.origins, including=chain)
    try:
        root = compose(child, read_plan_text(file, ctx.files))
    except PlanError as error:
        if error.line:  # inside the included file: its own file and line say where
            raise
        ctx.fail(key_line, where, f"{file}: {error.message}")
    if root is None:
        child.fail(0, "", "the included plan is empty; it needs steps")
    included = recognised_entries(child, root, _INCLUDED_KEYS, "an included file is a mapping "
                                  "with 'steps' (and optionally 'name')")
    if "steps" not in included:
        child.fail(node_line(root), "steps", "missing: an included plan needs 'steps'")
    return parse_steps(child, included["steps"][1], "steps")


def _node(ctx: ParseContext, node: yaml.Node, path: str) -> Node:
    if isinstance(node, yaml.ScalarNode):
        return text_step(ctx, node, path)
    if isinstance(node, yaml.MappingNode):
        entries = node_entries(ctx, node, path)
        kinds = [key for key in entries if key in NODE_KINDS]
        if len(kinds) != 1:
            found = " and ".join(repr(key) for key in kinds) if kinds else "none"
            known = {key for kind in NODE_KINDS.values() for key in kind.keys}
            unknown = [key for key in entries if key not in known]
            hint = (f"; unknown key {quote(unknown[0])}{did_you_mean(unknown[0], NODE_KINDS)}"
                    if unknown else "")
            ctx.fail(node_line(node), path, f"a step mapping needs exactly one of "
                     f"{', '.join(map(repr, NODE_KINDS))}; found {found}{hint}")
        kind = NODE_KINDS[kinds[0]]
        check_keys(ctx, entries, kind.keys, path)
        return kind.build(ctx, entries, node_line(node), path)
    ctx.fail(node_line(node), path, "expected a step: text like 'Rest for 10 minutes' or a mapping")


def _loop(ctx: ParseContext, entries: Entries, line: int, path: str) -> Loop:
    count_node = entries["repeat"][1]
    count_path = join_path(path, "repeat")
    count: int | None = None
    if count_node.tag == STR_TAG and count_node.value.casefold() == "forever":
        if "until" not in entries:
            ctx.fail(node_line(count_node), count_path,
                     "a loop that repeats forever needs an 'until' to leave it")
    else:
        count = node_whole(ctx, count_node, count_path, 1, _MAX_REPEAT, "a whole number of "
                           "passes like 3 (or forever, with 'until')")
    cycle = ("cycle" not in entries
             or node_flag(ctx, entries["cycle"][1], join_path(path, "cycle")))
    until: ConditionGroups = []
    if "until" in entries:
        until_path = join_path(path, "until")
        until = condition_groups(ctx, entries["until"][1], until_path, loop=True)
    if "steps" not in entries:
        ctx.fail(line, join_path(path, "steps"), "missing: a loop needs the steps it repeats")
    body = parse_steps(ctx, entries["steps"][1], join_path(path, "steps"))
    if not runs_channel(body):
        ctx.fail(node_line(entries["steps"][1]), join_path(path, "steps"), "a loop needs at least "
                 "one step that runs the channel (not only messages and set steps)")
    return Loop(count=count, body=body, cycle=cycle, line=line, until=tuple(until))


def _message(ctx: ParseContext, entries: Entries, line: int, path: str) -> Message:
    node = entries["message"][1]
    text = node_text(ctx, node, join_path(path, "message"), "the message's text")
    if not text.strip():
        ctx.fail(node_line(node), join_path(path, "message"), "must not be empty")
    if len(text) > _MAX_MESSAGE:
        ctx.fail(node_line(node), join_path(path, "message"),
                 f"longer than {_MAX_MESSAGE} characters")
    return Message(text, line)


_CHAMBER_KEYS = ("chamber", "humidity", "within", "humidity_within", "stable", "timeout", "ramp",
                 "label")
_BAND = re.compile(r"\s*(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*K\s*",
                   re.ASCII)


def _chamber(ctx: ParseContext, entries: Entries, line: int, path: str) -> StepSpec:
    """``chamber: <temperature>``: set the chamber, rest until it is stable, or fail."""
    temperature = node_value(ctx, entries["chamber"][1], join_path(path, "chamber"),
                             Dimension.TEMPERATURE).si
    humidity = band_pct = None
    if "humidity" in entries:
        node = entries["humidity"][1]
        humidity = node_value(ctx, node, join_path(path, "humidity"), Dimension.HUMIDITY).si
        if not 0 <= humidity <= 100:
            ctx.fail(node_line(node), join_path(path, "humidity"), "must be between 0 % and 100 %")
        band_pct = 3.0
    if "humidity_within" in entries:
        where = join_path(path, "humidity_within")
        if humidity is None:
            ctx.fail(entries["humidity_within"][0], where, "needs a 'humidity' setpoint")
        band_pct = node_positive(ctx, entries["humidity_within"][1], where, Dimension.HUMIDITY).si
    band_k = 1.0
    if "within" in entries:
        node = entries["within"][1]
        text = node_text(ctx, node, join_path(path, "within"), "a temperature band like '0.5 K'")
        match = _BAND.fullmatch(text)
        if match is None or not 0 < float(match["number"]) < math.inf:
            ctx.fail(node_line(node), join_path(path, "within"), f"expected a positive "
                     f"temperature band in kelvin like '0.5 K', got {quote(text)}")
        band_k = float(match["number"])
    stable = (node_duration(ctx, entries["stable"][1], join_path(path, "stable"))
              if "stable" in entries else 300.0)
    if "timeout" not in entries:
        ctx.fail(line, join_path(path, "timeout"), "missing: how long to wait for the chamber at "
                 "most, like 'timeout: 2 h'")
    timeout = node_duration(ctx, entries["timeout"][1], join_path(path, "timeout"))
    if timeout < stable:
        ctx.fail(entries["timeout"][0], join_path(path, "timeout"),
                 "must be at least as long as 'stable'")
    ramp = (node_positive(ctx, entries["ramp"][1], join_path(path, "ramp"),
                          Dimension.TEMPERATURE_RATE).si if "ramp" in entries else None)
    return ctx.origin(StepSpec(
        StepMode.REST, (), text=mapping_text(entries), label=step_label(ctx, entries, path),
        line=line, chamber=ChamberSpec(temperature, humidity, band_k, band_pct, stable, timeout,
                                       ramp)), line, path)


# What ``reset`` takes: a scope (all its counters) or one counter.
_RESETS: dict[str, tuple[str, ...]] = {
    "cycle": tuple(c for c in COUNTERS if c.startswith("cycle_")),
    "test": tuple(c for c in COUNTERS if c.startswith("test_")),
    **{counter: (counter,) for counter in COUNTERS},
}
_VARIABLE = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)
_CAPACITY = "capacity"
_RESET = "reset"


def _set(ctx: ParseContext, entries: Entries, line: int, path: str) -> SetStep:
    """``set: {<name>: <expression>, ..., reset: [<counter>, ...], <device>.<signal>:
    <value>}``, applied in order."""
    set_path = join_path(path, "set")
    items = node_entries(ctx, entries["set"][1], set_path)
    if not items:
        ctx.fail(line, set_path, "expected variables to set, like 'q_meas: cycle_discharge_ah', "
                 "counters to reset, like 'reset: [cycle]', or device signals to write, like "
                 "'bms.charge_enable: 1'")
    values: list[tuple[str, Expr]] = []
    resets: list[str] = []
    writes: list[SignalWrite] = []
    for name, (key_line, node) in items.items():
        where = join_path(set_path, name)
        if name == _RESET:
            resets += [c for c in dict.fromkeys(_resets(ctx, node, where)) if c not in resets]
            continue
        if "." in name:
            writes.append(_signal_write(ctx, name, key_line, node, where))
            continue
        _check_variable(ctx, name, key_line, where)
        text = node_text(ctx, node, where, "an expression like 'cycle_discharge_ah' or "
                         "'0.8 * q_meas'").strip()
        text = text[len(MARK):] if text.startswith(MARK) else text
        expr = parse_computed(ctx, text, node_line(node), where, None, sample=True)
        known = ctx.variables.get(name)
        wanted = Dimension.CHARGE if name == _CAPACITY else known[0] if known else None
        if wanted is not None and expr.dimension is not wanted:
            first = ("the capacity C-rates use" if name == _CAPACITY else
                     f"set at {ctx.place(*known[1:])}" if known else "")
            ctx.fail(node_line(node), where, f"{name} is {noun(wanted)} ({first}); "
                     f"{quote(str(expr))} gives {noun(expr.dimension)}")
        if name == _CAPACITY and isinstance(expr.tree, Const) and not expr.tree.value > 0:
            ctx.fail(node_line(node), where, f"{quote(str(expr))} gives "
                     f"{format_value(Value(expr.tree.value), Dimension.CHARGE)}: a capacity must "
                     "be positive")
        if name != _CAPACITY and known is None:
            ctx.variables[name] = (expr.dimension, ctx.source, key_line)
        values.append((name, expr))
    return SetStep(tuple(values), tuple(resets), line, tuple(writes))


def _signal_write(ctx: ParseContext, name: str, line: int, node: yaml.Node,
                  path: str) -> SignalWrite:
    """``<device>.<signal>: <value>`` in a set step: a value for a device to write (a YAML
    true or false writes 1 or 0)."""
    check_signal_name(ctx, name, line, path)
    if isinstance(node, yaml.ScalarNode) and node.tag == BOOL_TAG:
        return SignalWrite(Signal(name, Dimension.COUNT), Value(float(node_flag(ctx, node, path))),
                           line)
    text = node_text(ctx, node, path, "a value like '1' or '4.2 V'").strip()
    signal, value = signal_value(ctx, name, text, node_line(node), path, "is set to")
    return SignalWrite(signal, value, line)


def _check_variable(ctx: ParseContext, name: str, line: int, path: str) -> None:
    if name == _CAPACITY:
        return
    if name in QUANTITY_DIMENSIONS:
        ctx.fail(line, path, f"{name} is a quantity of the samples; give the variable another "
                 f"name, like my_{name}")
    if name in RESERVED:
        ctx.fail(line, path, f"{quote(name)} is reserved (a function, unit or word of plans); "
                 "give the variable another name")
    if not _VARIABLE.fullmatch(name):
        ctx.fail(line, path, f"a variable name is lower-case letters, digits and '_', starting "
                 f"with a letter, at most 32 characters; got {quote(name)}")


def _resets(ctx: ParseContext, node: yaml.Node, path: str) -> list[str]:
    """The counters ``reset`` names: one word or a list of them."""
    expected = f"counters to reset: {', '.join(_RESETS)}"
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if not nodes:
        ctx.fail(node_line(node), path, f"expected {expected}, got an empty list")
    counters: list[str] = []
    for item in nodes:
        word = node_text(ctx, item, path, expected).strip().casefold()
        if word == "step" or word.startswith("step_"):
            ctx.fail(node_line(item), path, "step counters start from zero at every step already")
        if word == "test_time":
            ctx.fail(node_line(item), path, "test_time is the test's clock and is never reset; "
                     "reset cycle_time instead")
        if word not in _RESETS:
            ctx.fail(node_line(item), path, f"unknown counter {quote(word)}"
                     f"{did_you_mean(word, _RESETS)}; expected {', '.join(_RESETS)}")
        counters += _RESETS[word]
    return counters


def runs_channel(nodes: tuple[Node, ...]) -> bool:
    """Whether any of ``nodes`` runs the channel (a step, not only messages and set steps)."""
    return any(isinstance(node, StepSpec) or (isinstance(node, Loop) and runs_channel(node.body))
               for node in nodes)


@dataclass(frozen=True)
class NodeKind:
    """A kind of step mapping: the keys it allows and how it is built."""

    keys: tuple[str, ...]
    build: Callable[[ParseContext, Entries, int, str], Node]


#: The kinds of step mapping, keyed by the key that says which kind a mapping is.
NODE_KINDS: dict[str, NodeKind] = {
    "mode": NodeKind(MODE_STEP_KEYS, mode_step),
    "repeat": NodeKind(("repeat", "cycle", "until", "steps"), _loop),
    "message": NodeKind(("message",), _message),
    "chamber": NodeKind(_CHAMBER_KEYS, _chamber),
    "set": NodeKind(("set",), _set),
    "external": NodeKind(("external",), external_step),
}
