"""Plan language v1: YAML test plans, parsed into :class:`~cellbench_core.plan.model.Plan`.

A plan is a UTF-8 YAML file of at most 1 MiB::

    name: CC-CV cycling             # required
    capacity: 2.5 Ah                # optional; C-rates use the battery's capacity, else this
    limits:                         # global safety limits, every key optional
      voltage_max: battery + 0.05 V # the battery's registered U_max plus 50 mV
      voltage_min: 2.45 V
      current_max: 2C               # on the magnitude of the current; A or C-rate
      temperature_max: 60 °C for 5 s   # trips after 5 s beyond it
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

**Limits** are checked on every sample; a missing or non-finite reading trips at once. A limit is
a value, ``battery`` (the registered limit of the battery under test: U_max, U_min, the charge
and discharge current limits, T_max) or ``battery + <offset>`` / ``battery - <offset>``; then
optionally ``for <delay>``: the reading must stay beyond the limit that long before it trips.
A limit written against the battery replaces the battery's own; an absolute one applies together
with it, and the tighter wins.

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
``abs_step_ah``, ``step_wh``, ``abs_step_wh``, ``{step,cycle,test}_{charge,discharge}_{ah,wh}``,
``cycle_ah``, ``cycle_wh``, ``test_ah``, ``test_wh``, ``dv_dt``, ``abs_dv_dt`` (V/s),
``dtemp_dt`` (K/s), ``cycle`` (a bare number)), ops ``>=``, ``>``, ``<=``, ``<`` (a threshold is
met once reached, so ``>`` reads as ``>=``). ``for: <duration>`` adds ``step_time >= duration``.
``label`` names a step (letters, digits, ``_ . -``; unique in the plan).

An item of ``until`` may be a mapping ``{when: <expression>, then: <action>}``; the action is
``next`` (the default), ``goto <label>``, ``end loop`` (leave the innermost loop around the step)
or ``end test``. When several hold on one sample, the first listed wins. A goto may jump within its
loop or out of loops, never into a loop from outside it.

**Loops**: ``repeat: <count>`` runs its ``steps`` that many times; with ``until: <expression>``
the loop also ends once the expression holds at the end of a pass (on the last sample's
quantities); ``repeat: forever`` needs an ``until``. In a loop's ``until`` a threshold may be
``<percent> % of first``: that share of the quantity's value at the end of the first pass, e.g.
``until: cycle_discharge_ah < 80 % of first``. A plan whose steps can reach a point from which
no way leads to the end (a goto back with no other exit) is rejected.

**Ramps and profiles**: ``mode: ramp`` with ``from``, ``to`` (two currents, C-rates, powers or
voltages, signed as written) and ``over: <duration>`` moves the setpoint linearly;
``mode: profile`` with ``table: <CSV file>`` (relative to the plan's folder, read by the
``lookup`` plugin), ``column`` (needed when the table has several value columns) and optionally
``hold: true`` (each row's value holds until the next row, instead of linear) follows a table.
Both end at their last point, or earlier by ``until``/``for``; a voltage ramp or profile may
take a ``current`` (its current limit, like cv).

**Messages and set steps** take no time: ``message: <text>`` hands the text to the notifier
plugins (and the test's event log) when the plan gets there; ``set: {<name>: <expression>, ...,
reset: [<counter>, ...]}`` gives variables values, in order, and resets counters (``cycle``,
``test``, or one of ``cycle_ah``, ``cycle_wh``, ``cycle_time``, ``test_ah``, ``test_wh``). The
name ``capacity`` makes C-rates from there on use that capacity, e.g. ``step_discharge_ah``
(what the step before measured). Set steps' expressions read the last sample's quantities.

**Expressions** (:mod:`cellbench_core.plan.expr`): a setpoint, or the threshold of a step's end
condition, written ``=<expression>`` is computed from variables, ``capacity`` and
``battery.<field>``: ``current: =0.5C * q_meas``, ``until: voltage <= =v_end``. A variable must
be set earlier in plan order than it is used; its dimension is fixed by its first set step.

**Chamber steps**: ``chamber: <temperature>`` with optionally ``humidity`` (%), ``within``
(the band, in K, default 1 K), ``humidity_within`` (default 3 %), ``stable`` (default 5 min)
and ``timeout`` (required) set the test's climate chamber and rest the channel until the chamber
has been within the band for ``stable``; not stable by ``timeout`` fails the test.

**Includes**: ``include: <file>`` puts the steps of another plan file (relative to this one; a
mapping with ``steps`` and optionally ``name``) in its place, as a subroutine; its labels join
the plan's, its tables are found next to it, and its errors name it. Include cycles are errors.

Every step needs an end: a step with neither ``until`` nor ``for`` is an error. So is a setpoint
outside the plan's safety limits. All errors are :class:`PlanError` naming file, line and field
(a dotted path such as ``steps[2].steps[0].until``).

Extending the language: a new mapping step kind is an entry in ``_NODE_KINDS`` (its
discriminating key, allowed keys and builder); a new channel mode an entry in ``_MODES``; a new
text verb an entry in ``_VERBS``; a new condition quantity an entry in ``QUANTITY_DIMENSIONS``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol, TypeVar

import yaml

from cellbench_core.plan.expr import (
    MARK,
    RESERVED,
    Computed,
    Const,
    Expr,
    ExprError,
    Must,
    parse_expression,
)
from cellbench_core.plan.model import (
    COUNTERS,
    NEXT,
    Action,
    ActionKind,
    Amount,
    ChamberSpec,
    Condition,
    Limit,
    Loop,
    Message,
    Node,
    Op,
    Plan,
    PlanError,
    ProfileSpec,
    Quantity,
    SafetyLimits,
    SetStep,
    Signal,
    StepSpec,
)
from cellbench_core.plan.program import Program, ProgramError
from cellbench_core.plan.tables import TableLoader, plugin_table_loader
from cellbench_core.units import (
    Dimension,
    UnitError,
    Value,
    describe,
    format_value,
    noun,
    parse_duration,
    parse_quantity,
    parse_value,
    quote,
)
from cellbench_hal import ProfileQuantity, StepMode

MAX_PLAN_BYTES = 1 << 20
_MAX_DEPTH = 64  # YAML nesting; a plan needs two levels per loop
_MAX_REPEAT = 2**31 - 1  # cycle numbers must fit the database's integer columns

_NULL = "tag:yaml.org,2002:null"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_STR = "tag:yaml.org,2002:str"


def load_plan(path: str | Path, *, tables: TableLoader | None = None) -> Plan:
    """Read and parse the plan file at ``path``; ``tables`` reads the lookup tables of profile
    steps (by default the installed ``lookup`` plugin)."""
    return parse_plan(_read(path), str(path), tables=tables)


def _read(path: str | Path) -> str:
    """The text of the plan file at ``path``, or a PlanError naming it."""
    source = str(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PLAN_BYTES + 1)
    except OSError as error:
        raise PlanError(source, 0, "", f"cannot read the plan: {error.strerror or error}") from None
    if len(data) > MAX_PLAN_BYTES:
        raise PlanError(source, 0, "", f"the plan is larger than {MAX_PLAN_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise PlanError(source, line, "", "the plan is not UTF-8 text") from None


def parse_plan(text: str, source: str = "<string>", *,
               tables: TableLoader | None = None) -> Plan:
    """Parse a plan from its YAML ``text``; ``source`` names it in errors, and table files of
    profile steps are found relative to its folder. ``tables`` reads them (by default the
    installed ``lookup`` plugin)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PLAN_BYTES:
        raise PlanError(source, 0, "", f"the plan is larger than {MAX_PLAN_BYTES} bytes")
    ctx = _Context(source, tables=tables)
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


_T = TypeVar("_T")


@dataclass
class _Context:
    """State of one parse: where errors point and what the plan has declared so far."""

    source: str
    tables: TableLoader | None = None
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    capacity_ah: float | None = None
    labels: dict[str, tuple[str, int]] = field(default_factory=dict)  # -> file and line
    # The variables set so far in plan order -> dimension, file and line of the first set.
    variables: dict[str, tuple[Dimension, str, int]] = field(default_factory=dict)
    # id() of each step and action -> (file, line, path), for flow errors found after parsing.
    origins: dict[int, tuple[str, int, str]] = field(default_factory=dict)
    including: tuple[Path, ...] = ()  # the files that include this one, outermost first

    def fail(self, line: int, path: str, message: str) -> NoReturn:
        raise PlanError(self.source, line, path, message)

    def origin(self, node: _T, line: int, path: str) -> _T:
        """``node``, remembered as written at ``line`` and ``path`` of this file."""
        self.origins[id(node)] = (self.source, line, path)
        return node


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


def _computed(ctx: _Context, text: str, line: int, path: str,
              allowed: Collection[Dimension] | None, *, sample: bool = False) -> Expr:
    """The expression ``text`` (after its ``=``), of one of the ``allowed`` dimensions (a
    C-rate counts as a current); ``sample``: it may read the last sample's quantities."""
    variables = {name: dimension for name, (dimension, _, _) in ctx.variables.items()}
    try:
        expr = parse_expression(text, variables, quantities=_QUANTITY_NAMES, sample=sample)
    except ExprError as error:
        ctx.fail(line, path, str(error))
    if allowed is not None and expr.dimension not in allowed and not (
            expr.dimension is Dimension.C_RATE and Dimension.CURRENT in allowed):
        ctx.fail(line, path, f"{quote(str(expr))} gives {noun(expr.dimension)}; expected "
                 f"{' or '.join(noun(d) for d in allowed)}")
    return expr


def _amount(ctx: _Context, text: str, line: int, path: str,
            allowed: Collection[Dimension] | None, must: Must) -> tuple[Dimension, Amount]:
    """A value as written, or with the leading ``=`` an expression, and its dimension (a
    C-rate's is CURRENT)."""
    if text.lstrip().startswith(MARK):
        expr = _computed(ctx, text.lstrip()[len(MARK):], line, path, allowed)
        dimension = Dimension.CURRENT if expr.dimension is Dimension.C_RATE else expr.dimension
        return dimension, Computed(expr, must)
    try:
        return parse_quantity(text, allowed)
    except UnitError as error:
        ctx.fail(line, path, str(error))


def _signed(amount: Amount, sign: float) -> Amount:
    """A magnitude given the sign of a direction (charge +1, discharge -1)."""
    if isinstance(amount, Computed):
        return Computed(amount.expr, Must.POSITIVE, sign)
    return Value(sign * amount.si, amount.per_capacity)


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
    plan = Plan(name=name, steps=_steps(ctx, entries["steps"][1], "steps"), limits=ctx.limits,
                capacity_ah=ctx.capacity_ah, source=ctx.source, text=text)
    _check_flow(ctx, plan)
    return plan


def _check_flow(ctx: _Context, plan: Plan) -> None:
    try:
        Program.compile(plan)
    except ProgramError as error:
        source, line, path = ctx.origins.get(id(error.node), (ctx.source, error.line, ""))
        where = _join(path, error.field) if error.field else path
        raise PlanError(source, line, where, error.message) from None


# The dimension of each key of `limits`.
LIMIT_DIMENSIONS: dict[str, Dimension] = {
    "voltage_max": Dimension.VOLTAGE,
    "voltage_min": Dimension.VOLTAGE,
    "current_max": Dimension.CURRENT,
    "temperature_max": Dimension.TEMPERATURE,
    "temperature_min": Dimension.TEMPERATURE,
}


_FOR = re.compile(r"\bfor\b", re.IGNORECASE | re.ASCII)
_BATTERY = "battery"


def _limits(ctx: _Context, node: yaml.Node, path: str) -> SafetyLimits:
    entries = _keys(ctx, node, path)
    _check_keys(ctx, entries, tuple(LIMIT_DIMENSIONS), path)
    limits = {key: _limit(ctx, value_node, _join(path, key), LIMIT_DIMENSIONS[key])
              for key, (_, value_node) in entries.items()}
    current = limits.get("current_max")
    if current is not None and not current.battery and not (current.value and current.value.si > 0):
        ctx.fail(_line(entries["current_max"][1]), _join(path, "current_max"),
                 "must be positive: it limits the magnitude of the current")
    for low, high in (("voltage_min", "voltage_max"), ("temperature_min", "temperature_max")):
        a, b = limits.get(low), limits.get(high)
        if (a is not None and b is not None and a.battery == b.battery and a.value is not None
                and b.value is not None and a.value.si >= b.value.si):
            ctx.fail(_line(entries[low][1]), _join(path, low), f"must be below {high}")
    return SafetyLimits(**limits)


def _limit(ctx: _Context, node: yaml.Node, path: str, dimension: Dimension) -> Limit:
    """``<value>``, ``battery`` or ``battery ± <value>``, then optionally ``for <duration>``."""
    expected = (f"{describe(dimension)}, 'battery' or 'battery - <offset>', optionally "
                "followed by 'for <delay>'")
    text = _text(ctx, node, path, expected)
    line = _line(node)
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
            return Limit(parse_value(head, dimension), delay_s=delay_s)
        except UnitError as error:
            ctx.fail(line, path, f"{error} (or 'battery' for the battery's own limit)")
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


def _steps(ctx: _Context, node: yaml.Node, path: str) -> tuple[Node, ...]:
    if not isinstance(node, yaml.SequenceNode):
        ctx.fail(_line(node), path, f"expected a list of steps, got {_kind(node)}")
    if not node.value:
        ctx.fail(_line(node), path, "no steps: give at least one")
    nodes: list[Node] = []
    for index, item in enumerate(node.value):
        item_path = f"{path}[{index}]"
        if isinstance(item, yaml.MappingNode) and any(
                isinstance(key, yaml.ScalarNode) and key.value == "include"
                for key, _ in item.value):
            nodes += _include(ctx, _keys(ctx, item, item_path), item_path)
        else:
            nodes.append(_node(ctx, item, item_path))
    return tuple(nodes)


_MAX_INCLUDES = 16  # nesting depth of included files


def _include(ctx: _Context, entries: _Entries, path: str) -> tuple[Node, ...]:
    """``include: <file>``: the steps of another plan file, in place (a subroutine)."""
    _check_keys(ctx, entries, ("include",), path)
    key_line, node = entries["include"]
    where = _join(path, "include")
    name = _text(ctx, node, where, "a plan file like 'check-up.yaml'")
    file = Path(ctx.source).parent / name
    chain = (*ctx.including, Path(ctx.source).resolve())
    if file.resolve() in chain:
        cycle = " -> ".join(p.name for p in (*chain[chain.index(file.resolve()):], file))
        ctx.fail(key_line, where, f"include cycle: {cycle}")
    if len(chain) > _MAX_INCLUDES:
        ctx.fail(key_line, where, f"includes nested deeper than {_MAX_INCLUDES} files")
    child = _Context(str(file), tables=ctx.tables, limits=ctx.limits,
                     capacity_ah=ctx.capacity_ah, labels=ctx.labels, variables=ctx.variables,
                     origins=ctx.origins, including=chain)
    try:
        root = _compose(child, _read(file))
    except PlanError as error:
        if error.line:  # inside the included file: its own file and line say where
            raise
        ctx.fail(key_line, where, error.message)
    if root is None:
        child.fail(0, "", "the included plan is empty; it needs steps")
    included = _keys(child, root, "")
    _check_keys(child, included, ("name", "steps"), "")
    if "steps" not in included:
        child.fail(_line(root), "steps", "missing: an included plan needs 'steps'")
    return _steps(child, included["steps"][1], "steps")


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
    count: int | None = None
    if count_node.tag == _STR and count_node.value.casefold() == "forever":
        if "until" not in entries:
            ctx.fail(_line(count_node), count_path,
                     "a loop that repeats forever needs an 'until' to leave it")
    elif count_node.tag != _INT or not re.fullmatch(r"\+?[0-9]{1,10}", count_node.value,
                                                    re.ASCII):
        ctx.fail(_line(count_node), count_path,
                 f"expected a whole number of passes like 3 (or forever, with 'until'), "
                 f"got {_kind(count_node)}")
    else:
        count = int(count_node.value)
        if not 0 < count <= _MAX_REPEAT:
            ctx.fail(_line(count_node), count_path,
                     f"must be between 1 and {_MAX_REPEAT}, got {count}")
    cycle = True
    if "cycle" in entries:
        cycle_node = entries["cycle"][1]
        if cycle_node.tag != _BOOL:
            ctx.fail(_line(cycle_node), _join(path, "cycle"),
                     f"expected true or false, got {_kind(cycle_node)}")
        cycle = yaml.SafeLoader.bool_values[cycle_node.value.lower()]
    until: _Groups = []
    if "until" in entries:
        until_path = _join(path, "until")
        until = _expression(ctx, entries["until"][1], until_path, loop=True)
    if "steps" not in entries:
        ctx.fail(line, _join(path, "steps"), "missing: a loop needs the steps it repeats")
    body = _steps(ctx, entries["steps"][1], _join(path, "steps"))
    if not _runs_channel(body):
        ctx.fail(_line(entries["steps"][1]), _join(path, "steps"), "a loop needs at least one "
                 "step that runs the channel (not only messages and set steps)")
    return Loop(count=count, body=body, cycle=cycle, line=line, until=tuple(until))


# --- messages and set steps ------------------------------------------------------------------

_MAX_MESSAGE = 2000


def _message(ctx: _Context, entries: _Entries, line: int, path: str) -> Message:
    node = entries["message"][1]
    text = _text(ctx, node, _join(path, "message"), "the message's text")
    if not text.strip():
        ctx.fail(_line(node), _join(path, "message"), "must not be empty")
    if len(text) > _MAX_MESSAGE:
        ctx.fail(_line(node), _join(path, "message"),
                 f"longer than {_MAX_MESSAGE} characters")
    return Message(text, line)


_CHAMBER_KEYS = ("chamber", "humidity", "within", "humidity_within", "stable", "timeout", "label")
_BAND = re.compile(r"\s*(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*K\s*",
                   re.ASCII)


def _chamber(ctx: _Context, entries: _Entries, line: int, path: str) -> StepSpec:
    """``chamber: <temperature>``: set the chamber, rest until it is stable, or fail."""
    temperature = _value(ctx, entries["chamber"][1], _join(path, "chamber"),
                         Dimension.TEMPERATURE).si
    humidity = band_pct = None
    if "humidity" in entries:
        node = entries["humidity"][1]
        humidity = _value(ctx, node, _join(path, "humidity"), Dimension.HUMIDITY).si
        if not 0 <= humidity <= 100:
            ctx.fail(_line(node), _join(path, "humidity"), "must be between 0 % and 100 %")
        band_pct = 3.0
    if "humidity_within" in entries:
        where = _join(path, "humidity_within")
        if humidity is None:
            ctx.fail(entries["humidity_within"][0], where, "needs a 'humidity' setpoint")
        band_pct = _positive(ctx, entries["humidity_within"][1], where, Dimension.HUMIDITY).si
    band_k = 1.0
    if "within" in entries:
        node = entries["within"][1]
        text = _text(ctx, node, _join(path, "within"), "a temperature band like '0.5 K'")
        match = _BAND.fullmatch(text)
        if match is None or not 0 < float(match["number"]) < math.inf:
            ctx.fail(_line(node), _join(path, "within"), f"expected a positive temperature band "
                     f"in kelvin like '0.5 K', got {quote(text)}")
        band_k = float(match["number"])
    stable = (_duration(ctx, entries["stable"][1], _join(path, "stable"))
              if "stable" in entries else 300.0)
    if "timeout" not in entries:
        ctx.fail(line, _join(path, "timeout"), "missing: how long to wait for the chamber at "
                 "most, like 'timeout: 2 h'")
    timeout = _duration(ctx, entries["timeout"][1], _join(path, "timeout"))
    if timeout < stable:
        ctx.fail(entries["timeout"][0], _join(path, "timeout"),
                 "must be at least as long as 'stable'")
    label = _label(ctx, entries["label"][1], _join(path, "label")) if "label" in entries else None
    return ctx.origin(StepSpec(
        StepMode.REST, (), text=_mapping_text(entries), label=label, line=line,
        chamber=ChamberSpec(temperature, humidity, band_k, band_pct, stable, timeout)), line, path)


# What ``reset`` takes: a scope (all its counters) or one counter.
_RESETS: dict[str, tuple[str, ...]] = {
    "cycle": tuple(c for c in COUNTERS if c.startswith("cycle_")),
    "test": tuple(c for c in COUNTERS if c.startswith("test_")),
    **{counter: (counter,) for counter in COUNTERS},
}
_VARIABLE = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)
_CAPACITY = "capacity"
_RESET = "reset"


def _set(ctx: _Context, entries: _Entries, line: int, path: str) -> SetStep:
    """``set: {<name>: <expression>, ..., reset: [<counter>, ...]}``, applied in order."""
    set_path = _join(path, "set")
    items = _keys(ctx, entries["set"][1], set_path)
    if not items:
        ctx.fail(line, set_path, "expected variables to set, like 'q_meas: cycle_discharge_ah', "
                 "or counters to reset, like 'reset: [cycle]'")
    values: list[tuple[str, Expr]] = []
    resets: list[str] = []
    for name, (key_line, node) in items.items():
        where = _join(set_path, name)
        if name == _RESET:
            resets += [c for c in dict.fromkeys(_resets(ctx, node, where)) if c not in resets]
            continue
        _check_variable(ctx, name, key_line, where)
        text = _text(ctx, node, where, "an expression like 'cycle_discharge_ah' or "
                     "'0.8 * q_meas'").strip()
        text = text[len(MARK):] if text.startswith(MARK) else text
        expr = _computed(ctx, text, _line(node), where, None, sample=True)
        known = ctx.variables.get(name)
        wanted = Dimension.CHARGE if name == _CAPACITY else known[0] if known else None
        if wanted is not None and expr.dimension is not wanted:
            first = ("the capacity C-rates use" if name == _CAPACITY else
                     f"set at {_place(ctx, *known[1:])}" if known else "")
            ctx.fail(_line(node), where, f"{name} is {noun(wanted)} ({first}); "
                     f"{quote(str(expr))} gives {noun(expr.dimension)}")
        if name == _CAPACITY and isinstance(expr.tree, Const) and not expr.tree.value > 0:
            ctx.fail(_line(node), where, f"{quote(str(expr))} gives "
                     f"{format_value(Value(expr.tree.value), Dimension.CHARGE)}: a capacity must "
                     "be positive")
        if name != _CAPACITY and known is None:
            ctx.variables[name] = (expr.dimension, ctx.source, key_line)
        values.append((name, expr))
    return SetStep(tuple(values), tuple(resets), line)


def _place(ctx: _Context, source: str, line: int) -> str:
    return f"line {line}" if source == ctx.source else f"{source}:{line}"


def _check_variable(ctx: _Context, name: str, line: int, path: str) -> None:
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


def _resets(ctx: _Context, node: yaml.Node, path: str) -> list[str]:
    """The counters ``reset`` names: one word or a list of them."""
    expected = f"counters to reset: {', '.join(_RESETS)}"
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if not nodes:
        ctx.fail(_line(node), path, f"expected {expected}, got an empty list")
    counters: list[str] = []
    for item in nodes:
        word = _text(ctx, item, path, expected).strip().casefold()
        if word == "step" or word.startswith("step_"):
            ctx.fail(_line(item), path, "step counters start from zero at every step already")
        if word == "test_time":
            ctx.fail(_line(item), path, "test_time is the test's clock and is never reset; "
                     "reset cycle_time instead")
        if word not in _RESETS:
            ctx.fail(_line(item), path, f"unknown counter {quote(word)}"
                     f"{_suggest(word, _RESETS)}; expected {', '.join(_RESETS)}")
        counters += _RESETS[word]
    return counters


def _runs_channel(nodes: tuple[Node, ...]) -> bool:
    return any(isinstance(node, StepSpec) or (isinstance(node, Loop) and _runs_channel(node.body))
               for node in nodes)


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


def _step(ctx: _Context, mode: StepMode, setpoints: dict[str, tuple[Amount, _Where]],
          until: _Groups, text: str, label: str | None, where: _Where,
          then: Sequence[Action] = ()) -> StepSpec:
    """Check a step's setpoints against its mode and the safety limits, then build it."""
    rule = _MODES[mode]
    for name, (value, (line, path)) in setpoints.items():
        if isinstance(value, Computed):
            continue  # checked when the runner computes it
        if name == rule.signed and value.si == 0:
            ctx.fail(line, path, "must not be zero (a step that does nothing is a rest)")
        if name != rule.signed and not value.si > 0:
            ctx.fail(line, path, "must be positive")
    _check_against_limits(ctx, setpoints)
    if not until:
        ctx.fail(*where, "this step could run forever: give it an end with 'until' or 'for'")
    actions = tuple(then) if any(action.kind is not ActionKind.NEXT for action in then) else ()
    values = {name: value for name, (value, _) in setpoints.items()}
    return ctx.origin(StepSpec(
        mode=mode, until=tuple(until), text=text, label=label, line=where[0], then=actions,
        current=values.get("current"), voltage=values.get("voltage"), power=values.get("power"),
        resistance=values.get("resistance")), *where)


def _check_against_limits(ctx: _Context, setpoints: dict[str, tuple[Amount, _Where]]) -> None:
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


def _label(ctx: _Context, node: yaml.Node, path: str) -> str:
    label = _text(ctx, node, path, "a label")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", label, re.ASCII):
        ctx.fail(_line(node), path, f"a label is a name of letters, digits, '_', '.' and '-' "
                 f"starting with a letter or '_', got {quote(label)}")
    if label in ctx.labels:
        source, line = ctx.labels[label]
        where = f"line {line}" if source == ctx.source else f"{source}:{line}"
        ctx.fail(_line(node), path, f"label {quote(label)} is already used at {where}")
    ctx.labels[label] = (ctx.source, _line(node))
    return label


# --- steps as mappings -----------------------------------------------------------------------


def _mode_step(ctx: _Context, entries: _Entries, line: int, path: str) -> StepSpec:
    mode_node = entries["mode"][1]
    word = _choice(ctx, mode_node, _join(path, "mode"), (*_MODES, *_PROFILE_STEPS))
    if word in _PROFILE_STEPS:
        return _PROFILE_STEPS[word](ctx, entries, line, path)
    mode = StepMode(word)
    rule = _MODES[mode]
    allowed = (*rule.required, *rule.optional)
    _no_profile_keys(ctx, entries, path, word, ())
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
    setpoints: dict[str, tuple[Amount, _Where]] = {}
    for name in allowed:
        if name in entries:
            node = entries[name][1]
            where = (_line(node), _join(path, name))
            dimension = SETPOINT_DIMENSIONS[name]
            text = _text(ctx, node, where[1], describe(dimension))
            must = Must.NONZERO if name == rule.signed else Must.POSITIVE
            _, value = _amount(ctx, text, *where, (dimension,), must)
            if name == rule.signed and "direction" in entries:
                if isinstance(value, Value) and not value.si > 0:
                    ctx.fail(*where, "with a direction, give the magnitude (a positive value)")
                value = _signed(value, sign)
            setpoints[name] = (value, where)
    until, then, label = _step_ends(ctx, entries, path)
    return _step(ctx, mode, setpoints, until, _mapping_text(entries), label, (line, path), then)


def _step_ends(ctx: _Context, entries: _Entries,
               path: str) -> tuple[_Groups, list[Action], str | None]:
    """A mapping step's end conditions with their actions (``until``, ``for``) and label."""
    until: _Groups = []
    then: list[Action] = []
    if "until" in entries:
        until, then = _until(ctx, entries["until"][1], _join(path, "until"))
    if "for" in entries:
        node = entries["for"][1]
        seconds = _duration(ctx, node, _join(path, "for"))
        until.append((Condition(Quantity.STEP_TIME, Op.GE, Value(seconds), _line(node)),))
        then.append(NEXT)
    label = _label(ctx, entries["label"][1], _join(path, "label")) if "label" in entries else None
    return until, then, label


# --- ramps and profiles ----------------------------------------------------------------------

_RAMP_KEYS = ("from", "to", "over")
_TABLE_KEYS = ("table", "column", "hold")
_PROFILE_DIMENSIONS = (Dimension.CURRENT, Dimension.POWER, Dimension.VOLTAGE)


def _no_profile_keys(ctx: _Context, entries: _Entries, path: str, mode: str,
                     allowed: Sequence[str]) -> None:
    others: tuple[str, ...] = (*_RAMP_KEYS, *_TABLE_KEYS)
    if mode in _PROFILE_STEPS:  # a ramp or profile sets its own value and its sign
        others += ("direction", "power", "voltage", "resistance")
    for key in others:
        if key in entries and key not in allowed:
            ctx.fail(entries[key][0], _join(path, key), f"a {mode} step takes no {key}")


def _ramp_step(ctx: _Context, entries: _Entries, line: int, path: str) -> StepSpec:
    """``mode: ramp``: from one current, power or voltage to another over a duration."""
    _no_profile_keys(ctx, entries, path, "ramp", _RAMP_KEYS)
    for key in _RAMP_KEYS:
        if key not in entries:
            ctx.fail(line, _join(path, key), "missing: a ramp needs 'from', 'to' and 'over', "
                     "like from: 0 A, to: 2 A, over: 10 min")
    ends: list[Value] = []
    dimension = Dimension.CURRENT
    for key in ("from", "to"):
        node = entries[key][1]
        text = _text(ctx, node, _join(path, key), "a current, C-rate, power or voltage")
        try:
            found, value = parse_quantity(text, _PROFILE_DIMENSIONS)
        except UnitError as error:
            ctx.fail(_line(node), _join(path, key), str(error))
        if ends and found is dimension and value.per_capacity != ends[0].per_capacity:
            if ends[0].si == 0:  # "from: 0 A, to: 1C": zero is zero in either unit
                ends[0] = Value(0.0, value.per_capacity)
            elif value.si == 0:
                value = Value(0.0, ends[0].per_capacity)
        if ends and (found is not dimension or value.per_capacity != ends[0].per_capacity):
            ctx.fail(_line(node), _join(path, key), "give 'from' and 'to' in the same kind of "
                     "unit (both currents in A, both C-rates, both powers or both voltages)")
        if found is Dimension.VOLTAGE and not value.si > 0:
            ctx.fail(_line(node), _join(path, key), "a voltage must be positive")
        dimension = found
        ends.append(value)
    over = _duration(ctx, entries["over"][1], _join(path, "over"))
    profile = ProfileSpec(ProfileQuantity(dimension.value), (0.0, over),
                          (ends[0].si, ends[1].si), per_capacity=ends[0].per_capacity)
    where = [(value, (_line(entries[key][1]), _join(path, key)))
             for key, value in zip(("from", "to"), ends, strict=True)]
    return _profile_step(ctx, entries, line, path, profile, where)


def _table_step(ctx: _Context, entries: _Entries, line: int, path: str) -> StepSpec:
    """``mode: profile``: a current, power or voltage following a column of a lookup table."""
    _no_profile_keys(ctx, entries, path, "profile", _TABLE_KEYS)
    if "table" not in entries:
        ctx.fail(line, _join(path, "table"), "missing: a profile step needs a 'table' (a CSV file "
                 "with a time column and a value column)")
    node = entries["table"][1]
    table_path = _join(path, "table")
    name = _text(ctx, node, table_path, "a table file like 'drive-cycle.csv'")
    file = Path(ctx.source).parent / name
    try:
        table = (ctx.tables or plugin_table_loader())(file)
    except (ValueError, OSError) as error:
        ctx.fail(_line(node), table_path, str(error))
    columns = dict(table.columns)
    if "column" in entries:
        column_node = entries["column"][1]
        column = _text(ctx, column_node, _join(path, "column"), "a column name")
        if column not in columns:
            ctx.fail(_line(column_node), _join(path, "column"), f"the table has no column "
                     f"{quote(column)}{_suggest(column, columns)}; it has {', '.join(columns)}")
    elif len(columns) == 1:
        column = next(iter(columns))
    else:
        ctx.fail(line, _join(path, "column"), f"missing: the table has several columns "
                 f"({', '.join(columns)}); name one with 'column'")
    unit, raw = columns[column]
    try:
        dimension, scale = parse_quantity(f"1 {unit}", _PROFILE_DIMENSIONS)
    except UnitError as error:
        ctx.fail(_line(node), table_path, f"column {column!r}: {error}")
    values = tuple(v * scale.si for v in raw)
    if not all(map(math.isfinite, values)):
        ctx.fail(_line(node), table_path, f"column {column!r} has values too large for {unit}")
    if dimension is Dimension.VOLTAGE and not min(values) > 0:
        ctx.fail(_line(node), table_path, f"column {column!r}: voltages must be positive")
    hold = False
    if "hold" in entries:
        hold_node = entries["hold"][1]
        if hold_node.tag != _BOOL:
            ctx.fail(_line(hold_node), _join(path, "hold"),
                     f"expected true or false, got {_kind(hold_node)}")
        hold = yaml.SafeLoader.bool_values[hold_node.value.lower()]
    profile = ProfileSpec(ProfileQuantity(dimension.value), tuple(table.time_s), values,
                          per_capacity=scale.per_capacity, hold=hold, table=name, column=column)
    extremes = [(Value(value, scale.per_capacity), (_line(node), table_path))
                for value in (min(values), max(values))]
    return _profile_step(ctx, entries, line, path, profile, extremes)


def _profile_step(ctx: _Context, entries: _Entries, line: int, path: str, profile: ProfileSpec,
                  points: list[tuple[Value, _Where]]) -> StepSpec:
    """A ramp or profile step: its current limit (voltage only), its extreme ``points``
    checked against the limits, its ends."""
    setpoints: dict[str, tuple[Amount, _Where]] = {}
    if "current" in entries:
        where = (_line(entries["current"][1]), _join(path, "current"))
        if profile.quantity is not ProfileQuantity.VOLTAGE:
            ctx.fail(*where, "only a voltage ramp or profile takes a current (its limit)")
        setpoints["current"] = (_positive(ctx, entries["current"][1], where[1],
                                          Dimension.CURRENT), where)
    name = "voltage" if profile.quantity is ProfileQuantity.VOLTAGE else "current"
    if profile.quantity is not ProfileQuantity.POWER:
        for value, where in points:
            _check_against_limits(ctx, {name: (value, where)})
    until, then, label = _step_ends(ctx, entries, path)
    if not until and profile.time_s[-1] == 0:
        ctx.fail(line, path, "a table of one row sets a constant: give the step an end with "
                 "'until' or 'for'")
    actions = tuple(then) if any(action.kind is not ActionKind.NEXT for action in then) else ()
    return ctx.origin(StepSpec(mode=StepMode.PROFILE, until=tuple(until),
                               text=_mapping_text(entries), label=label, line=line, then=actions,
                               profile=profile,
                               current=setpoints["current"][0] if setpoints else None), line, path)


_PROFILE_STEPS: dict[str, Callable[[_Context, _Entries, int, str], StepSpec]] = {
    "ramp": _ramp_step,
    "profile": _table_step,
}


def _mapping_text(entries: _Entries) -> str:
    """The step's mapping on one line, as written: ``mode: cc, current: 1C, for: 1 h``."""
    return ", ".join(f"{key}: {_flow(node)}" for key, (_, node) in entries.items())


def _flow(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return f"[{', '.join(_flow(item) for item in node.value)}]"
    if isinstance(node, yaml.MappingNode):
        return "{" + ", ".join(f"{key.value}: {_flow(value)}" for key, value in node.value) + "}"
    text: str = node.value
    return text


def _duration(ctx: _Context, node: yaml.Node, path: str) -> float:
    text = _text(ctx, node, path, describe(Dimension.TIME))
    try:
        return parse_duration(text)
    except UnitError as error:
        ctx.fail(_line(node), path, str(error))


# The quantities a condition can watch, and the dimension of their thresholds.
def dimension_of(quantity: Quantity | Signal) -> Dimension:
    """The dimension of a condition's quantity or signal (a signal's is its threshold's)."""
    return quantity.dimension if isinstance(quantity, Signal) else QUANTITY_DIMENSIONS[quantity]


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
_QUANTITY_NAMES = {quantity.value: dimension for quantity, dimension in QUANTITY_DIMENSIONS.items()}
_OPS = {">=": Op.GE, ">": Op.GE, "<=": Op.LE, "<": Op.LE}
_COMPARISON = re.compile(r"\s*(?P<quantity>\w+(?:\.\w+)?)\s*(?P<op>[<>=!]=?)\s*"
                         r"(?P<value>.*?)\s*", re.ASCII | re.DOTALL)
_SIGNAL = re.compile(r"[a-z][a-z0-9_]{0,31}\.\w{1,64}", re.ASCII)
_OR = re.compile(r"\bor\b", re.IGNORECASE | re.ASCII)
_AND = re.compile(r"\band\b", re.IGNORECASE | re.ASCII)
_EXAMPLE_CONDITION = "a condition like 'voltage >= 4.2 V'"


_ACTION_EXAMPLE = "'next', 'goto <label>', 'end loop' or 'end test'"
_GOTO = re.compile(r"goto\s+(?P<label>\S+)", re.ASCII | re.IGNORECASE)
_WHEN_KEYS = ("when", "then")


def _until(ctx: _Context, node: yaml.Node, path: str) -> tuple[_Groups, list[Action]]:
    """A step's end conditions and the action of each group.

    ``until`` is an expression, a ``{when: <expression>, then: <action>}`` mapping, or a list of
    either."""
    items = [(node, path)]
    if isinstance(node, yaml.SequenceNode):
        if not node.value:
            ctx.fail(_line(node), path, f"expected {_EXAMPLE_CONDITION} or a list of them, "
                     "got an empty list")
        items = [(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
    groups: _Groups = []
    actions: list[Action] = []
    for item, item_path in items:
        action = NEXT
        if isinstance(item, yaml.MappingNode):
            entries = _keys(ctx, item, item_path)
            _check_keys(ctx, entries, _WHEN_KEYS, item_path)
            for key in _WHEN_KEYS:
                if key not in entries:
                    ctx.fail(_line(item), _join(item_path, key), f"missing: give both 'when' "
                             f"(a condition) and 'then' ({_ACTION_EXAMPLE})")
            action = _action(ctx, entries["then"][1], _join(item_path, "then"))
            item, item_path = entries["when"][1], _join(item_path, "when")
        expression = _expression(ctx, item, item_path)
        groups += expression
        actions += [action] * len(expression)
    return groups, actions


def _action(ctx: _Context, node: yaml.Node, path: str) -> Action:
    text = " ".join(_text(ctx, node, path, _ACTION_EXAMPLE).split())
    line = _line(node)
    goto = _GOTO.fullmatch(text)
    if goto:
        return ctx.origin(Action(ActionKind.GOTO, goto["label"], line), line, path)
    kinds = {kind.value: kind for kind in ActionKind if kind is not ActionKind.GOTO}
    kind = kinds.get(text.casefold())
    if kind is None:
        ctx.fail(_line(node), path, f"expected {_ACTION_EXAMPLE}, got {quote(text)}"
                 f"{_suggest(text, [*kinds, 'goto'])}")
    return ctx.origin(Action(kind, line=line), line, path)


def _expression(ctx: _Context, node: yaml.Node, path: str, *, loop: bool = False) -> _Groups:
    text = _text(ctx, node, path, _EXAMPLE_CONDITION)
    return [tuple(_comparison(ctx, term, _line(node), path, loop)
                  for term in _AND.split(alternative))
            for alternative in _OR.split(text)]


_OF_FIRST = re.compile(r"(?P<percent>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*%\s*of\s+first", re.ASCII)


def _comparison(ctx: _Context, text: str, line: int, path: str, loop: bool = False) -> Condition:
    match = _COMPARISON.fullmatch(text)
    if match is None or not match["value"]:
        ctx.fail(line, path, f"expected {_EXAMPLE_CONDITION}, got {quote(text.strip())}")
    name, op_text = match["quantity"].casefold(), match["op"]
    if "." in match["quantity"]:
        return _signal_comparison(ctx, match, line, path, loop)
    if name not in QUANTITY_DIMENSIONS:
        ctx.fail(line, path, f"unknown quantity {quote(name)}{_suggest(name, QUANTITY_DIMENSIONS)}"
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
        _, amount = _amount(ctx, match["value"], line, path, (QUANTITY_DIMENSIONS[quantity],),
                            Must.ANY)
        return Condition(quantity, _OPS[op_text], amount, line)
    try:
        value = parse_value(match["value"], QUANTITY_DIMENSIONS[quantity])
    except UnitError as error:
        ctx.fail(line, path, f"{name}: {error}")
    return Condition(quantity, _OPS[op_text], value, line)


def _signal_comparison(ctx: _Context, match: re.Match[str], line: int, path: str,
                       loop: bool) -> Condition:
    """``<device>.<signal> >= <value>``: a device's or chamber's signal; its unit is checked
    against the station's device when the test starts."""
    name, op_text = match["quantity"], match["op"]
    if not _SIGNAL.fullmatch(name):
        ctx.fail(line, path, f"{quote(name)} is not a signal name like 'bms.cell_max_v' "
                 "(a device or chamber name of the station file, a dot, its signal)")
    if loop:
        ctx.fail(line, path, f"{name}: a loop's 'until' takes the quantities of the last "
                 "sample, not device signals; end a step on the signal instead")
    if op_text not in _OPS:
        ctx.fail(line, path, f"unknown comparison {quote(op_text)}; use >=, >, <= or <")
    if match["value"].startswith(MARK):
        ctx.fail(line, path, f"{name}: a signal compares with a written value (its unit is the "
                 "device's), not an expression")
    try:
        dimension, value = parse_quantity(match["value"], None)
    except UnitError:
        try:
            dimension, value = parse_quantity(match["value"], (Dimension.COUNT,))
        except UnitError as error:
            ctx.fail(line, path, f"{name}: {error}")
    if value.per_capacity:
        ctx.fail(line, path, f"{name}: a C-rate needs a battery; compare a signal with amperes")
    return Condition(Signal(name, dimension), _OPS[op_text], value, line)


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


def _quantity(ctx: _Context, phrase: _Phrase, text: str) -> tuple[Dimension, Amount]:
    return _amount(ctx, text, phrase.line, phrase.path, None, Must.ANY)


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
        if isinstance(value, Value) and not value.si > 0:
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
    if isinstance(value, Value) and not value.si > 0:
        ctx.fail(*where, f"give the magnitude after 'at': {verb!r} sets the sign")
    signed = _signed(value, sign)
    setpoints: dict[str, tuple[Amount, _Where]]
    if dimension is Dimension.CURRENT:
        mode, setpoints = StepMode.CC, {"current": (signed, where)}
    elif dimension is Dimension.POWER:
        mode, setpoints = StepMode.CP, {"power": (signed, where)}
    elif dimension is Dimension.RESISTANCE:
        if sign > 0:
            ctx.fail(*where, "a constant resistance can only discharge: write 'Discharge at'")
        positive = Computed(value.expr, Must.POSITIVE) if isinstance(value, Computed) else value
        mode, setpoints = StepMode.CR, {"resistance": (positive, where)}
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
        ("mode", "direction", *SETPOINT_DIMENSIONS, *_RAMP_KEYS, *_TABLE_KEYS, "until", "for",
         "label"), _mode_step
    ),
    "repeat": _NodeKind(("repeat", "cycle", "until", "steps"), _loop),
    "message": _NodeKind(("message",), _message),
    "chamber": _NodeKind(_CHAMBER_KEYS, _chamber),
    "set": _NodeKind(("set",), _set),
}
