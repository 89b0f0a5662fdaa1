"""Plan language v1: YAML test plans, parsed into :class:`~cellbench_core.plan.model.Plan`.

A plan is a UTF-8 YAML file of at most 1 MiB::

    name: CC-CV cycling             # required
    capacity: 2.5 Ah                # optional; C-rates use the battery's capacity, else this
    limits:                         # global safety limits, every key optional
      voltage_max: 4.25 V
      voltage_min: 2.45 V
      current_max: 2C               # on the magnitude of the current; A or C-rate
      temperature_max: 60 °C
      temperature_min: -20 °C
    steps:
      - Rest for 10 minutes
      - repeat: 3                   # a loop: a positive whole number of passes
        cycle: true                 # optional, default true: each pass is a new cycle
        steps:
          - Charge at 0.5C to 4.2 V until C/20
          - Discharge at 1C until 2.5 V
      - mode: cccv                  # a step in mapping form
        direction: charge
        current: 1C
        voltage: 4.2 V
        until: abs_current <= C/20
        for: 3 h
        label: full-charge

Values carry explicit units (see :mod:`cellbench_core.units`). Currents and powers are positive
when charging. Anchors, aliases, tags, duplicate keys and unknown keys are errors.

**Steps as text** (keywords are case-insensitive, after PyBaMM's experiment strings):

- ``Rest for <duration>``
- ``Charge at <setpoint>`` / ``Discharge at <setpoint>``: a current or C-rate (constant current),
  a power (constant power) or a resistance (constant resistance, discharge only).
  ``Charge at 0.5C to 4.2 V`` is CC-CV: constant current up to 4.2 V, then that voltage held.
- ``Hold at <voltage>``: constant voltage.

Then one or more terms joined with ``or``: ``for <duration>`` or ``until <condition>`` (after
``or``, ``until`` may be left out): ``Discharge at 5 W for 10 minutes or until 2.5 V``. A condition
is a voltage (``voltage >=`` it when charging or holding, ``voltage <=`` it when discharging), a
current or C-rate (``abs_current <=``), a charge in Ah (``abs_step_ah >=``) or an energy in Wh
(``abs_step_wh >=``). ``Rest`` ends after a duration only.

**Steps as mappings**: ``mode`` is ``rest``, ``cc``, ``cv``, ``cccv``, ``cp`` or ``cr``, with the
setpoints the mode needs: ``current`` (cc, cccv; optional current limit for cv), ``voltage``
(cv, cccv), ``power`` (cp), ``resistance`` (cr). ``direction: charge|discharge`` sets the sign of a
cc/cccv current or a cp power given as a magnitude; without it the value's own sign counts.
``until`` is an expression ``<quantity> <op> <value>`` with ``and`` and ``or`` (``and`` binds
tighter), or a list of such expressions meaning any of them; quantities are those of
:class:`~cellbench_core.plan.model.Quantity` (``voltage``, ``current``, ``abs_current``, ``power``,
``abs_power``, ``temperature``, ``step_time``, ``test_time``, ``cycle_time``, ``step_ah``,
``abs_step_ah``, ``step_wh``, ``abs_step_wh``), ops ``>=``, ``>``, ``<=``, ``<`` (a threshold is
met once reached, so ``>`` reads as ``>=``). ``for: <duration>`` adds ``step_time >= duration``.
``label`` names a step (letters, digits, ``_ . -``; unique in the plan).

Every step needs an end: a step with neither ``until`` nor ``for`` is an error. So is a setpoint
outside the plan's safety limits. All errors are :class:`PlanError` naming file, line and field
(a dotted path such as ``steps[2].steps[0].until``).

Extending the language: a new mapping step kind is an entry in ``_NODE_KINDS`` (its
discriminating key, allowed keys and builder); a new channel mode an entry in ``_MODES``; a new
text verb an entry in ``_VERBS``; a new condition quantity an entry in ``QUANTITY_DIMENSIONS``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol

import yaml

from cellbench_core.plan.model import (
    Condition,
    Loop,
    Node,
    Op,
    Plan,
    PlanError,
    Quantity,
    SafetyLimits,
    StepSpec,
)
from cellbench_core.units import (
    Dimension,
    UnitError,
    Value,
    describe,
    format_value,
    parse_duration,
    parse_quantity,
    parse_value,
    quote,
)
from cellbench_hal import StepMode

MAX_PLAN_BYTES = 1 << 20
_MAX_DEPTH = 64  # YAML nesting; a plan needs two levels per loop
_MAX_REPEAT = 2**31 - 1  # cycle numbers must fit the database's integer columns

_NULL = "tag:yaml.org,2002:null"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"


def load_plan(path: str | Path) -> Plan:
    """Read and parse the plan file at ``path``."""
    source = str(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PLAN_BYTES + 1)
    except OSError as error:
        raise PlanError(source, 0, "", f"cannot read the plan: {error.strerror or error}") from None
    if len(data) > MAX_PLAN_BYTES:
        raise PlanError(source, 0, "", f"the plan is larger than {MAX_PLAN_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise PlanError(source, line, "", "the plan is not UTF-8 text") from None
    return parse_plan(text, source)


def parse_plan(text: str, source: str = "<string>") -> Plan:
    """Parse a plan from its YAML ``text``; ``source`` names it in errors."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PLAN_BYTES:
        raise PlanError(source, 0, "", f"the plan is larger than {MAX_PLAN_BYTES} bytes")
    ctx = _Context(source)
    return _plan(ctx, _compose(ctx, text), text)


# --- YAML ------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Composes nodes (keeping their lines) and refuses YAML features a plan has no use for."""

    def __init__(self, text: str, ctx: _Context) -> None:
        super().__init__(text)
        self._ctx = ctx
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in stubs
        line = _mark_line(event.start_mark)
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            self._ctx.fail(line, "", "YAML anchors and aliases are not allowed: write steps out")
        if getattr(event, "tag", None) is not None:
            self._ctx.fail(line, "", "YAML tags are not allowed")
        if self._depth >= _MAX_DEPTH:
            self._ctx.fail(line, "", f"nested deeper than {_MAX_DEPTH} levels")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _compose(ctx: _Context, text: str) -> yaml.Node | None:
    try:
        loader = _Loader(text, ctx)  # checks the characters
        try:
            return loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        message = ": ".join(filter(None, (error.context, error.problem))) or "invalid YAML"
        line = _mark_line(error.problem_mark or error.context_mark)
        ctx.fail(line, "", f"invalid YAML: {message}")
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1
        character = f" (U+{error.character:04X})" if isinstance(error.character, int) else ""
        ctx.fail(line, "", f"invalid YAML: {error.reason}{character}")
    except yaml.YAMLError as error:
        ctx.fail(0, "", f"invalid YAML: {error}")


class _Mark(Protocol):
    """A position in the YAML text (PyYAML's pure-Python and C marks alike)."""

    line: int  # 0-based


def _mark_line(mark: _Mark | None) -> int:
    return mark.line + 1 if mark is not None else 0


def _line(node: yaml.Node) -> int:
    return _mark_line(node.start_mark)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return quote(node.value)


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class _Context:
    """State of one parse: where errors point and what the plan has declared so far."""

    source: str
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    capacity_ah: float | None = None
    labels: dict[str, int] = field(default_factory=dict)

    def fail(self, line: int, path: str, message: str) -> NoReturn:
        raise PlanError(self.source, line, path, message)


_Entries = dict[str, tuple[int, yaml.Node]]  # key -> (line of the key, value node)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _suggest(word: str, choices: Collection[str]) -> str:
    options = [str(choice) for choice in choices]  # StrEnum members would show as <Mode.X: 'x'>
    close = difflib.get_close_matches(word.casefold(), options, n=1) if len(word) <= 40 else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _keys(ctx: _Context, node: yaml.Node, path: str) -> _Entries:
    """The entries of a mapping node; rejects other nodes, complex and duplicate keys."""
    if not isinstance(node, yaml.MappingNode):
        ctx.fail(_line(node), path, f"expected a mapping, got {_kind(node)}")
    entries: _Entries = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
            ctx.fail(_line(key_node), path, f"expected a name as key, got {_kind(key_node)}")
        key = key_node.value
        if key in entries:
            ctx.fail(_line(key_node), _join(path, key),
                     f"duplicate key {quote(key)} (first at line {entries[key][0]})")
        entries[key] = (_line(key_node), value_node)
    return entries


def _check_keys(ctx: _Context, entries: _Entries, allowed: Sequence[str], path: str) -> None:
    for key, (line, _) in entries.items():
        if key not in allowed:
            ctx.fail(line, _join(path, key), f"unknown key {quote(key)}{_suggest(key, allowed)}; "
                     f"expected {', '.join(allowed)}")


def _text(ctx: _Context, node: yaml.Node, path: str, expected: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
        ctx.fail(_line(node), path, f"expected {expected}, got {_kind(node)}")
    text: str = node.value
    return text


def _value(ctx: _Context, node: yaml.Node, path: str, dimension: Dimension) -> Value:
    text = _text(ctx, node, path, describe(dimension))
    try:
        return parse_value(text, dimension)
    except UnitError as error:
        ctx.fail(_line(node), path, str(error))


def _positive(ctx: _Context, node: yaml.Node, path: str, dimension: Dimension) -> Value:
    value = _value(ctx, node, path, dimension)
    if not value.si > 0:
        ctx.fail(_line(node), path, f"must be positive, got {quote(node.value)}")
    return value


def _choice(ctx: _Context, node: yaml.Node, path: str, choices: Collection[str]) -> str:
    expected = " or ".join(choices)
    word = _text(ctx, node, path, expected).casefold()
    if word not in choices:
        ctx.fail(_line(node), path,
                 f"expected {expected}, got {quote(node.value)}{_suggest(word, choices)}")
    return word


# --- the plan --------------------------------------------------------------------------------

_PLAN_KEYS = ("name", "capacity", "limits", "steps")


def _plan(ctx: _Context, root: yaml.Node | None, text: str) -> Plan:
    if root is None:
        ctx.fail(0, "", "the plan is empty; it needs a name and steps")
    entries = _keys(ctx, root, "")
    _check_keys(ctx, entries, _PLAN_KEYS, "")
    for key in ("name", "steps"):
        if key not in entries:
            ctx.fail(_line(root), key, f"missing: a plan needs {key!r}")
    name = _text(ctx, entries["name"][1], "name", "a name")
    if not name.strip():
        ctx.fail(_line(entries["name"][1]), "name", "must not be empty")
    if "capacity" in entries:
        ctx.capacity_ah = _positive(ctx, entries["capacity"][1], "capacity", Dimension.CHARGE).si
    if "limits" in entries:
        ctx.limits = _limits(ctx, entries["limits"][1], "limits")
    return Plan(name=name, steps=_steps(ctx, entries["steps"][1], "steps"), limits=ctx.limits,
                capacity_ah=ctx.capacity_ah, source=ctx.source, text=text)


# The dimension of each key of `limits`.
LIMIT_DIMENSIONS: dict[str, Dimension] = {
    "voltage_max": Dimension.VOLTAGE,
    "voltage_min": Dimension.VOLTAGE,
    "current_max": Dimension.CURRENT,
    "temperature_max": Dimension.TEMPERATURE,
    "temperature_min": Dimension.TEMPERATURE,
}


def _limits(ctx: _Context, node: yaml.Node, path: str) -> SafetyLimits:
    entries = _keys(ctx, node, path)
    _check_keys(ctx, entries, tuple(LIMIT_DIMENSIONS), path)
    values = {key: _value(ctx, value_node, _join(path, key), LIMIT_DIMENSIONS[key])
              for key, (_, value_node) in entries.items()}
    if "current_max" in values and not values["current_max"].si > 0:
        ctx.fail(_line(entries["current_max"][1]), _join(path, "current_max"),
                 "must be positive: it limits the magnitude of the current")
    for low, high in (("voltage_min", "voltage_max"), ("temperature_min", "temperature_max")):
        if low in values and high in values and values[low].si >= values[high].si:
            ctx.fail(_line(entries[low][1]), _join(path, low), f"must be below {high}")
    return SafetyLimits(
        current_max=values.get("current_max"),
        **{key: value.si for key, value in values.items() if key != "current_max"},
    )


def _steps(ctx: _Context, node: yaml.Node, path: str) -> tuple[Node, ...]:
    if not isinstance(node, yaml.SequenceNode):
        ctx.fail(_line(node), path, f"expected a list of steps, got {_kind(node)}")
    if not node.value:
        ctx.fail(_line(node), path, "no steps: give at least one")
    return tuple(_node(ctx, item, f"{path}[{index}]") for index, item in enumerate(node.value))


def _node(ctx: _Context, node: yaml.Node, path: str) -> Node:
    if isinstance(node, yaml.ScalarNode):
        return _text_step(ctx, node, path)
    if isinstance(node, yaml.MappingNode):
        entries = _keys(ctx, node, path)
        kinds = [key for key in entries if key in _NODE_KINDS]
        if len(kinds) != 1:
            found = " and ".join(repr(key) for key in kinds) if kinds else "none"
            known = {key for kind in _NODE_KINDS.values() for key in kind.keys}
            unknown = [key for key in entries if key not in known]
            hint = (f"; unknown key {quote(unknown[0])}{_suggest(unknown[0], _NODE_KINDS)}"
                    if unknown else "")
            ctx.fail(_line(node), path, f"a step mapping needs exactly one of "
                     f"{', '.join(map(repr, _NODE_KINDS))}; found {found}{hint}")
        kind = _NODE_KINDS[kinds[0]]
        _check_keys(ctx, entries, kind.keys, path)
        return kind.build(ctx, entries, _line(node), path)
    ctx.fail(_line(node), path, "expected a step: text like 'Rest for 10 minutes' or a mapping")


# --- loops -----------------------------------------------------------------------------------


def _loop(ctx: _Context, entries: _Entries, line: int, path: str) -> Loop:
    count_node = entries["repeat"][1]
    count_path = _join(path, "repeat")
    if count_node.tag != _INT or not re.fullmatch(r"\+?[0-9]{1,10}", count_node.value, re.ASCII):
        ctx.fail(_line(count_node), count_path,
                 f"expected a whole number of passes like 3, got {_kind(count_node)}")
    count = int(count_node.value)
    if not 0 < count <= _MAX_REPEAT:
        ctx.fail(_line(count_node), count_path, f"must be between 1 and {_MAX_REPEAT}, got {count}")
    cycle = True
    if "cycle" in entries:
        cycle_node = entries["cycle"][1]
        if cycle_node.tag != _BOOL:
            ctx.fail(_line(cycle_node), _join(path, "cycle"),
                     f"expected true or false, got {_kind(cycle_node)}")
        cycle = yaml.SafeLoader.bool_values[cycle_node.value.lower()]
    if "steps" not in entries:
        ctx.fail(line, _join(path, "steps"), "missing: a loop needs the steps it repeats")
    body = _steps(ctx, entries["steps"][1], _join(path, "steps"))
    return Loop(count=count, body=body, cycle=cycle, line=line)


# --- channel steps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _ModeRule:
    """The setpoints a mode takes; every setpoint is positive except ``signed``."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    signed: str | None = None  # set by ``direction`` (or its own sign), positive when charging


_MODES: dict[StepMode, _ModeRule] = {
    StepMode.REST: _ModeRule(),
    StepMode.CC: _ModeRule(("current",), signed="current"),
    StepMode.CV: _ModeRule(("voltage",), ("current",)),
    StepMode.CCCV: _ModeRule(("current", "voltage"), signed="current"),
    StepMode.CP: _ModeRule(("power",), signed="power"),
    StepMode.CR: _ModeRule(("resistance",)),
}
# The dimension of each setpoint, named as the StepSpec field that holds it.
SETPOINT_DIMENSIONS: dict[str, Dimension] = {
    "current": Dimension.CURRENT,
    "voltage": Dimension.VOLTAGE,
    "power": Dimension.POWER,
    "resistance": Dimension.RESISTANCE,
}
_DIRECTIONS = {"charge": 1.0, "discharge": -1.0}

_Where = tuple[int, str]  # line and field an error about a value points at
_Groups = list[tuple[Condition, ...]]


def _step(ctx: _Context, mode: StepMode, setpoints: dict[str, tuple[Value, _Where]],
          until: _Groups, text: str, label: str | None, where: _Where) -> StepSpec:
    """Check a step's setpoints against its mode and the safety limits, then build it."""
    rule = _MODES[mode]
    for name, (value, (line, path)) in setpoints.items():
        if name == rule.signed and value.si == 0:
            ctx.fail(line, path, "must not be zero (a step that does nothing is a rest)")
        if name != rule.signed and not value.si > 0:
            ctx.fail(line, path, "must be positive")
    _check_against_limits(ctx, setpoints)
    if not until:
        ctx.fail(*where, "this step could run forever: give it an end with 'until' or 'for'")
    return StepSpec(mode=mode, until=tuple(until), text=text, label=label, line=where[0],
                    **{name: value for name, (value, _) in setpoints.items()})


def _check_against_limits(ctx: _Context, setpoints: dict[str, tuple[Value, _Where]]) -> None:
    limits = ctx.limits
    if "voltage" in setpoints:
        volts, (line, path) = setpoints["voltage"]
        if limits.voltage_max is not None and volts.si > limits.voltage_max:
            ctx.fail(line, path, f"{format_value(volts, Dimension.VOLTAGE)} is above "
                     f"limits.voltage_max")
        if limits.voltage_min is not None and volts.si < limits.voltage_min:
            ctx.fail(line, path, f"{format_value(volts, Dimension.VOLTAGE)} is below "
                     f"limits.voltage_min")
    if "current" in setpoints and limits.current_max is not None:
        current, (line, path) = setpoints["current"]
        both = _comparable(current, limits.current_max, ctx.capacity_ah)
        if both is not None and abs(both[0]) > both[1]:
            ctx.fail(line, path, f"{format_value(current, Dimension.CURRENT)} exceeds "
                     f"limits.current_max {format_value(limits.current_max, Dimension.CURRENT)}")


def _comparable(a: Value, b: Value, capacity_ah: float | None) -> tuple[float, float] | None:
    """Both values in one unit (A, or C when both are C-rates); None until a battery is known."""
    if a.per_capacity == b.per_capacity:
        return a.si, b.si
    if capacity_ah is None:
        return None
    return a.resolve(capacity_ah), b.resolve(capacity_ah)


def _label(ctx: _Context, node: yaml.Node, path: str) -> str:
    label = _text(ctx, node, path, "a label")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", label, re.ASCII):
        ctx.fail(_line(node), path, f"a label is a name of letters, digits, '_', '.' and '-' "
                 f"starting with a letter or '_', got {quote(label)}")
    if label in ctx.labels:
        ctx.fail(_line(node), path, f"label {quote(label)} is already used at line "
                 f"{ctx.labels[label]}")
    ctx.labels[label] = _line(node)
    return label


# --- steps as mappings -----------------------------------------------------------------------


def _mode_step(ctx: _Context, entries: _Entries, line: int, path: str) -> StepSpec:
    mode_node = entries["mode"][1]
    mode = StepMode(_choice(ctx, mode_node, _join(path, "mode"), tuple(_MODES)))
    rule = _MODES[mode]
    allowed = (*rule.required, *rule.optional)
    for name in SETPOINT_DIMENSIONS:
        if name in entries and name not in allowed:
            ctx.fail(entries[name][0], _join(path, name), f"a {mode} step takes no {name}")
    for name in rule.required:
        if name not in entries:
            ctx.fail(line, _join(path, name), f"missing: a {mode} step needs a {name}")
    sign = 1.0
    if "direction" in entries:
        direction_path = _join(path, "direction")
        if rule.signed is None:
            ctx.fail(entries["direction"][0], direction_path,
                     "only cc, cccv and cp steps take a direction")
        sign = _DIRECTIONS[_choice(ctx, entries["direction"][1], direction_path, _DIRECTIONS)]
    setpoints: dict[str, tuple[Value, _Where]] = {}
    for name in allowed:
        if name in entries:
            node = entries[name][1]
            where = (_line(node), _join(path, name))
            value = _value(ctx, node, where[1], SETPOINT_DIMENSIONS[name])
            if name == rule.signed and "direction" in entries:
                if not value.si > 0:
                    ctx.fail(*where, "with a direction, give the magnitude (a positive value)")
                value = Value(sign * value.si, value.per_capacity)
            setpoints[name] = (value, where)
    until: _Groups = []
    if "until" in entries:
        until = _until(ctx, entries["until"][1], _join(path, "until"))
    if "for" in entries:
        node = entries["for"][1]
        seconds = _duration(ctx, node, _join(path, "for"))
        until.append((Condition(Quantity.STEP_TIME, Op.GE, Value(seconds), _line(node)),))
    label = _label(ctx, entries["label"][1], _join(path, "label")) if "label" in entries else None
    return _step(ctx, mode, setpoints, until, _mapping_text(entries), label, (line, path))


def _mapping_text(entries: _Entries) -> str:
    """The step's mapping on one line, as written: ``mode: cc, current: 1C, for: 1 h``."""
    parts = []
    for key, (_, node) in entries.items():
        if isinstance(node, yaml.SequenceNode):
            parts.append(f"{key}: [{', '.join(item.value for item in node.value)}]")
        else:
            parts.append(f"{key}: {node.value}")
    return ", ".join(parts)


def _duration(ctx: _Context, node: yaml.Node, path: str) -> float:
    text = _text(ctx, node, path, describe(Dimension.TIME))
    try:
        return parse_duration(text)
    except UnitError as error:
        ctx.fail(_line(node), path, str(error))


# The quantities a condition can watch, and the dimension of their thresholds.
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
}
_OPS = {">=": Op.GE, ">": Op.GE, "<=": Op.LE, "<": Op.LE}
_COMPARISON = re.compile(r"\s*(?P<quantity>\w+)\s*(?P<op>[<>=!]=?)\s*(?P<value>.*?)\s*",
                         re.ASCII | re.DOTALL)
_OR = re.compile(r"\bor\b", re.IGNORECASE | re.ASCII)
_AND = re.compile(r"\band\b", re.IGNORECASE | re.ASCII)
_EXAMPLE_CONDITION = "a condition like 'voltage >= 4.2 V'"


def _until(ctx: _Context, node: yaml.Node, path: str) -> _Groups:
    if isinstance(node, yaml.SequenceNode):
        if not node.value:
            ctx.fail(_line(node), path, f"expected {_EXAMPLE_CONDITION} or a list of them, "
                     "got an empty list")
        groups: _Groups = []
        for index, item in enumerate(node.value):
            groups += _expression(ctx, item, f"{path}[{index}]")
        return groups
    return _expression(ctx, node, path)


def _expression(ctx: _Context, node: yaml.Node, path: str) -> _Groups:
    text = _text(ctx, node, path, _EXAMPLE_CONDITION)
    return [tuple(_comparison(ctx, term, _line(node), path) for term in _AND.split(alternative))
            for alternative in _OR.split(text)]


def _comparison(ctx: _Context, text: str, line: int, path: str) -> Condition:
    match = _COMPARISON.fullmatch(text)
    if match is None or not match["value"]:
        ctx.fail(line, path, f"expected {_EXAMPLE_CONDITION}, got {quote(text.strip())}")
    name, op_text = match["quantity"].casefold(), match["op"]
    if name not in QUANTITY_DIMENSIONS:
        ctx.fail(line, path, f"unknown quantity {quote(name)}{_suggest(name, QUANTITY_DIMENSIONS)}"
                 f"; expected one of {', '.join(QUANTITY_DIMENSIONS)}")
    if op_text not in _OPS:
        ctx.fail(line, path, f"unknown comparison {quote(op_text)}; use >=, >, <= or <")
    quantity = Quantity(name)
    try:
        value = parse_value(match["value"], QUANTITY_DIMENSIONS[quantity])
    except UnitError as error:
        ctx.fail(line, path, f"{name}: {error}")
    return Condition(quantity, _OPS[op_text], value, line)


# --- steps as text ---------------------------------------------------------------------------

_KEYWORD = re.compile(r"\b(at|to|for|until|or)\b", re.IGNORECASE | re.ASCII)
_EXAMPLE_STEPS = ("'Rest for 10 minutes', 'Charge at 1C until 4.2 V', "
                  "'Discharge at 2 A for 1 hour or until 2.5 V' or 'Hold at 4.2 V until C/20'")


@dataclass(frozen=True)
class _Phrase:
    """A text step split at its keywords: ``Charge at 1C to 4.2 V for 1 h or until C/20``."""

    verb: str  # "charge"
    setpoints: dict[str, str]  # {"at": "1C", "to": "4.2 V"}
    ends: list[tuple[str, str]]  # [("for", "1 h"), ("until", "C/20")]
    text: str
    line: int
    path: str


def _text_step(ctx: _Context, node: yaml.ScalarNode, path: str) -> StepSpec:
    text = _text(ctx, node, path, f"a step like {_EXAMPLE_STEPS}")
    line = _line(node)
    head, *rest = _KEYWORD.split(text)
    verb = head.strip().casefold()
    if verb not in _VERBS:
        first = verb.split()[0] if verb.split() else verb
        if first in _VERBS:
            ctx.fail(line, path, f"expected 'at', 'for' or 'until' after {first.capitalize()!r}, "
                     f"got {quote(text)}")
        ctx.fail(line, path, f"expected a step like {_EXAMPLE_STEPS}, got {quote(text)}"
                 f"{_suggest(first, _VERBS)}")
    pairs = [(keyword.casefold(), argument.strip()) for keyword, argument in zip(
        rest[::2], rest[1::2], strict=True)]
    setpoints: dict[str, str] = {}
    while pairs and pairs[0][0] in ("at", "to"):
        keyword, argument = pairs.pop(0)
        if keyword in setpoints or not argument:
            ctx.fail(line, path, f"expected one value after {keyword!r} in {quote(text)}")
        setpoints[keyword] = argument
    phrase = _Phrase(verb, setpoints, _ends(ctx, pairs, text, line, path), text, line, path)
    return _VERBS[verb](ctx, phrase)


def _ends(ctx: _Context, pairs: list[tuple[str, str]], text: str, line: int,
          path: str) -> list[tuple[str, str]]:
    """The ``for``/``until`` terms of a text step, checking they are joined by ``or``."""
    ends: list[tuple[str, str]] = []
    joined = False  # an "or" is waiting for its term
    for keyword, argument in pairs:
        if keyword in ("at", "to"):
            ctx.fail(line, path, f"{keyword!r} must come before 'for' and 'until' in {quote(text)}")
        if keyword == "or":
            if not ends or joined:
                ctx.fail(line, path, f"'or' must join two terms in {quote(text)}")
            if argument:  # "until 4.2 V or 50 mA": the "until" is understood
                ends.append(("until", argument))
            joined = not argument
            continue
        if ends and not joined:
            ctx.fail(line, path, f"join terms with 'or' in {quote(text)}")
        if not argument:
            ctx.fail(line, path, f"expected a value after {keyword!r} in {quote(text)}")
        if _AND.search(argument):
            ctx.fail(line, path, "text steps join their ends with 'or' only; for 'and', "
                     "write the step as a mapping with 'until'")
        ends.append((keyword, argument))
        joined = False
    if joined:
        ctx.fail(line, path, f"expected 'for' or 'until' after 'or' in {quote(text)}")
    return ends


def _quantity(ctx: _Context, phrase: _Phrase, text: str) -> tuple[Dimension, Value]:
    try:
        return parse_quantity(text)
    except UnitError as error:
        ctx.fail(phrase.line, phrase.path, str(error))


def _end_conditions(ctx: _Context, phrase: _Phrase, charging: bool) -> _Groups:
    """The conditions of a text step's ``for``/``until`` terms, each a group of its own."""
    groups: _Groups = []
    for keyword, argument in phrase.ends:
        if keyword == "for":
            try:
                seconds = parse_duration(argument)
            except UnitError as error:
                ctx.fail(phrase.line, phrase.path, f"after 'for': {error}")
            groups.append((Condition(Quantity.STEP_TIME, Op.GE, Value(seconds), phrase.line),))
            continue
        dimension, value = _quantity(ctx, phrase, argument)
        make = _UNTIL.get(dimension)
        if make is None:
            hint = " (a duration follows 'for')" if dimension is Dimension.TIME else ""
            ctx.fail(phrase.line, phrase.path, "after 'until', expected a voltage, a current or "
                     f"C-rate, a charge (Ah) or an energy (Wh), got {quote(argument)}{hint}")
        if not value.si > 0:
            ctx.fail(phrase.line, phrase.path, f"after 'until', {quote(argument)} must be positive")
        quantity, op = make(charging)
        groups.append((Condition(quantity, op, value, phrase.line),))
    return groups


# What a bare value after "until" watches, given whether the step charges.
_UNTIL: dict[Dimension, Callable[[bool], tuple[Quantity, Op]]] = {
    Dimension.VOLTAGE: lambda charging: (Quantity.VOLTAGE, Op.GE if charging else Op.LE),
    Dimension.CURRENT: lambda _: (Quantity.ABS_CURRENT, Op.LE),
    Dimension.CHARGE: lambda _: (Quantity.ABS_STEP_AH, Op.GE),
    Dimension.ENERGY: lambda _: (Quantity.ABS_STEP_WH, Op.GE),
}


def _rest(ctx: _Context, phrase: _Phrase) -> StepSpec:
    if phrase.setpoints:
        ctx.fail(phrase.line, phrase.path, "a rest takes no setpoint: write 'Rest for 10 minutes'"
                 f", got {quote(phrase.text)}")
    if any(keyword == "until" for keyword, _ in phrase.ends):
        ctx.fail(phrase.line, phrase.path, "a rest ends after a duration ('Rest for 10 minutes'); "
                 "for other ends write it as a mapping, e.g. 'mode: rest' with 'until'")
    return _step(ctx, StepMode.REST, {}, _end_conditions(ctx, phrase, charging=False),
                 phrase.text, None, (phrase.line, phrase.path))


def _charge(ctx: _Context, phrase: _Phrase) -> StepSpec:
    sign = _DIRECTIONS[phrase.verb]
    verb = phrase.verb.capitalize()
    where = (phrase.line, phrase.path)
    if "at" not in phrase.setpoints:
        ctx.fail(*where, f"expected '{verb} at <current, C-rate, power or resistance>', "
                 f"got {quote(phrase.text)}")
    dimension, value = _quantity(ctx, phrase, phrase.setpoints["at"])
    if not value.si > 0:
        ctx.fail(*where, f"give the magnitude after 'at': {verb!r} sets the sign")
    signed = Value(sign * value.si, value.per_capacity)
    setpoints: dict[str, tuple[Value, _Where]]
    if dimension is Dimension.CURRENT:
        mode, setpoints = StepMode.CC, {"current": (signed, where)}
    elif dimension is Dimension.POWER:
        mode, setpoints = StepMode.CP, {"power": (signed, where)}
    elif dimension is Dimension.RESISTANCE:
        if sign > 0:
            ctx.fail(*where, "a constant resistance can only discharge: write 'Discharge at'")
        mode, setpoints = StepMode.CR, {"resistance": (value, where)}
    elif dimension is Dimension.VOLTAGE:
        ctx.fail(*where, f"to hold a voltage, write 'Hold at {phrase.setpoints['at']}'")
    else:
        ctx.fail(*where, f"after 'at', expected a current, C-rate, power or resistance, "
                 f"got {quote(phrase.setpoints['at'])}")
    if "to" in phrase.setpoints:
        if mode is not StepMode.CC:
            ctx.fail(*where, "'to <voltage>' (CC-CV) needs a current or C-rate after 'at'")
        try:
            volts = parse_value(phrase.setpoints["to"], Dimension.VOLTAGE)
        except UnitError as error:
            ctx.fail(*where, f"after 'to': {error}")
        mode, setpoints["voltage"] = StepMode.CCCV, (volts, where)
    until = _end_conditions(ctx, phrase, charging=sign > 0)
    return _step(ctx, mode, setpoints, until, phrase.text, None, where)


def _hold(ctx: _Context, phrase: _Phrase) -> StepSpec:
    where = (phrase.line, phrase.path)
    if set(phrase.setpoints) != {"at"}:
        ctx.fail(*where, f"expected 'Hold at <voltage>', got {quote(phrase.text)}")
    try:
        volts = parse_value(phrase.setpoints["at"], Dimension.VOLTAGE)
    except UnitError as error:
        ctx.fail(*where, f"after 'Hold at': {error}")
    until = _end_conditions(ctx, phrase, charging=True)
    return _step(ctx, StepMode.CV, {"voltage": (volts, where)}, until, phrase.text, None, where)


_VERBS: dict[str, Callable[[_Context, _Phrase], StepSpec]] = {
    "rest": _rest,
    "charge": _charge,
    "discharge": _charge,
    "hold": _hold,
}


@dataclass(frozen=True)
class _NodeKind:
    """A kind of step mapping: the keys it allows and how it is built."""

    keys: tuple[str, ...]
    build: Callable[[_Context, _Entries, int, str], Node]


# Keyed by the key that says which kind a mapping is.
_NODE_KINDS: dict[str, _NodeKind] = {
    "mode": _NodeKind(
        ("mode", "direction", *SETPOINT_DIMENSIONS, "until", "for", "label"), _mode_step
    ),
    "repeat": _NodeKind(("repeat", "cycle", "steps"), _loop),
}
