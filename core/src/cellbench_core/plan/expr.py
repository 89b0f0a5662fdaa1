"""Expressions in plans: ``0.5C * q_meas``, ``min(battery.voltage_max, 4.2 V) - 50 mV``.

The text is read with Python's :mod:`ast` and never run by Python: only the nodes below are
accepted, everything else is an :class:`ExprError`. An expression has

- value literals with units, as :mod:`cellbench_core.units` reads them (``4.2 V``, ``30 min``,
  ``0.5C``, ``C/20``; a bare number is a count);
- ``+ - * /``, unary minus, parentheses, ``min(a, b, ...)``, ``max(a, b, ...)``, ``abs(a)``;
- names: variables (set earlier by a set step), ``capacity`` (the capacity C-rates use),
  ``battery.<field>`` (see :data:`BATTERY_FIELDS`) and, in set steps only, the quantities of
  the last sample (``cycle_discharge_ah``).

Every expression has a dimension, worked out when it is parsed: ``+``, ``-``, ``min`` and
``max`` take values of one dimension; ``*`` and ``/`` follow :data:`PRODUCTS` (and a count
scales anything, a value over one of its own dimension is a count). Parts without names are
computed once, when parsed, so ``1 V / 0`` or ``1e308 V * 10`` are errors of the plan.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from cellbench_core.units import (
    Dimension,
    UnitError,
    Value,
    literal_end,
    noun,
    parse_quantity,
    quote,
    unit_spellings,
)

MAX_EXPRESSION = 400  # characters; keeps the tree shallow enough to walk recursively
MARK = "="  # how a step's value says it is an expression: ``current: =0.5C * q_meas``

_D = Dimension
_HOUR = 3600.0
#: The products the dimension algebra knows: ``a * b`` (either order) is ``c`` times ``factor``
#: (SI is V, A, s, Ah, Wh; an ampere-second is 1/3600 Ah). Quotients follow from them:
#: ``c / a`` is ``b`` and ``c / b`` is ``a``, each divided by ``factor``.
PRODUCTS: dict[tuple[Dimension, Dimension], tuple[Dimension, float]] = {
    (_D.CURRENT, _D.TIME): (_D.CHARGE, 1 / _HOUR),
    (_D.POWER, _D.TIME): (_D.ENERGY, 1 / _HOUR),
    (_D.VOLTAGE, _D.CURRENT): (_D.POWER, 1.0),
    (_D.VOLTAGE, _D.CHARGE): (_D.ENERGY, 1.0),
    (_D.CURRENT, _D.RESISTANCE): (_D.VOLTAGE, 1.0),
    (_D.C_RATE, _D.CHARGE): (_D.CURRENT, 1.0),
    (_D.VOLTAGE_RATE, _D.TIME): (_D.VOLTAGE, 1.0),
    (_D.TEMPERATURE_RATE, _D.TIME): (_D.TEMPERATURE, 1.0),
}

#: ``battery.<name>``: the attribute of the registered battery it reads, and its dimension.
BATTERY_FIELDS: dict[str, tuple[str, Dimension]] = {
    "capacity": ("nominal_capacity_ah", _D.CHARGE),
    "voltage_nominal": ("nominal_voltage_v", _D.VOLTAGE),
    "voltage_max": ("voltage_max_v", _D.VOLTAGE),
    "voltage_min": ("voltage_min_v", _D.VOLTAGE),
    "current_max_charge": ("current_max_charge_a", _D.CURRENT),
    "current_max_discharge": ("current_max_discharge_a", _D.CURRENT),
    "temperature_max": ("temperature_max_c", _D.TEMPERATURE),
}

CAPACITY = "capacity"
_BATTERY = "battery"
_FUNCTIONS = ("min", "max", "abs")
#: Names a variable may not take: they mean something else in a plan's text.
RESERVED = frozenset({CAPACITY, _BATTERY, *_FUNCTIONS, "and", "or", "at", "to", "for", "until",
                      "of", "first", "reset"}
                     | {u for u in unit_spellings() if re.fullmatch(r"[a-z]\w*", u, re.ASCII)})
_NAME = re.compile(r"[A-Za-z_]\w*", re.ASCII)
_PUNCTUATION = frozenset(" \t+-*/(),.")


class ExprError(ValueError):
    """An expression is not valid, or cannot be computed now; the message says why."""


class Must(StrEnum):
    """What a computed setpoint or threshold must be once computed."""

    ANY = "any"
    NONZERO = "nonzero"  # a signed setpoint: its sign says charge or discharge
    POSITIVE = "positive"


class Battery(Protocol):
    """The registered battery ``battery.<field>`` reads (a stored battery record): its name,
    and the attributes :data:`BATTERY_FIELDS` names, read by name."""

    @property
    def name(self) -> str:
        """The battery's registered name, for errors."""


@dataclass(frozen=True)
class Scope:
    """What an expression reads when it is computed. ``sample`` gives a quantity of the last
    sample by name (set steps only)."""

    variables: Mapping[str, float] = field(default_factory=dict)
    capacity_ah: float | None = None
    battery: Battery | None = None
    sample: Callable[[str], float] | None = None


# --- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: float


@dataclass(frozen=True)
class Name:
    """A variable, ``capacity``, a ``battery.<field>`` or a quantity of the last sample."""

    kind: str  # "variable", "capacity", "battery" or "sample"
    name: str


@dataclass(frozen=True)
class Neg:
    operand: Tree


@dataclass(frozen=True)
class Binary:
    op: str  # + - * /
    left: Tree
    right: Tree
    factor: float = 1.0  # of a product or quotient, from PRODUCTS


@dataclass(frozen=True)
class Call:
    function: str  # min, max, abs
    args: tuple[Tree, ...]


Tree = Const | Name | Neg | Binary | Call


@dataclass(frozen=True)
class Expr:
    """A parsed expression: its text as written (without the leading ``=``), its dimension and
    the variables it reads."""

    text: str
    dimension: Dimension
    tree: Tree
    variables: frozenset[str] = frozenset()

    def evaluate(self, scope: Scope) -> float:
        """The value (SI; a C-rate in A/Ah); ExprError if something it reads has no value."""
        value = _evaluate(self.tree, scope)
        if not math.isfinite(value):
            raise ExprError(f"{quote(MARK + self.text)} gives {value}, not a finite number")
        return value

    def __str__(self) -> str:
        return MARK + self.text


@dataclass(frozen=True)
class Computed:
    """A setpoint or threshold computed from ``expr`` whenever the runner resolves its step.

    With ``direction`` (+1 charge, -1 discharge) the expression gives the magnitude; a result
    of :attr:`Dimension.C_RATE` where a current is wanted is a C-rate on ``capacity``.
    """

    expr: Expr
    must: Must = Must.ANY
    direction: float | None = None

    def resolve(self, scope: Scope) -> float:
        """The value in SI units; ExprError if it cannot be computed or breaks ``must``."""
        value = self.expr.evaluate(scope)
        if self.expr.dimension is Dimension.C_RATE:
            if scope.capacity_ah is None:
                raise ExprError(f"{quote(str(self.expr))}: a C-rate needs the battery's capacity")
            value *= scope.capacity_ah
        if self.direction is not None or self.must is Must.POSITIVE:
            if not value > 0:
                raise ExprError(f"{quote(str(self.expr))} gives {value:g}, which must be positive"
                                + (" (the direction sets the sign)" if self.direction else ""))
            return value * (self.direction or 1.0)
        if self.must is Must.NONZERO and value == 0:
            raise ExprError(f"{quote(str(self.expr))} gives 0 (a step that does nothing is a "
                            "rest)")
        return value


def resolve(value: Value | Computed, scope: Scope) -> float:
    """A plan value in SI units: a written value (a C-rate on the scope's capacity) or a
    computed one; ValueError if it cannot be resolved."""
    return value.resolve(scope) if isinstance(value, Computed) else value.resolve(
        scope.capacity_ah)


# --- parsing ---------------------------------------------------------------------------------


def parse_expression(text: str, variables: Mapping[str, Dimension], *,
                     quantities: Mapping[str, Dimension],
                     sample: bool = False) -> Expr:
    """Parse ``text`` (without its leading ``=``) with the ``variables`` set so far; names in
    ``quantities`` are the last sample's, readable only with ``sample``. ExprError says what is
    wrong."""
    text = text.strip()
    if not text:
        raise ExprError("expected an expression after '=', got nothing")
    if len(text) > MAX_EXPRESSION:
        raise ExprError(f"longer than {MAX_EXPRESSION} characters")
    try:
        source, literals = _scan(text)
        try:
            body = ast.parse(source, mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            raise ExprError("not an expression like '0.5C * q_meas' or "
                            "'battery.voltage_max - 50 mV'") from None
        builder = _Builder(literals, variables, quantities, sample)
        tree, dimension = builder.build(body)
    except ExprError as error:
        raise ExprError(f"{quote(MARK + text)}: {error}") from None
    return Expr(text, dimension, tree, frozenset(builder.used))


@dataclass(frozen=True)
class _Literal:
    text: str
    dimension: Dimension
    value: float


def _scan(text: str) -> tuple[str, list[_Literal]]:
    """``text`` with each value literal replaced by a name ``_<n>`` (which no plan name can be,
    as they start with a letter), and the literals."""
    out: list[str] = []
    literals: list[_Literal] = []
    at = 0
    while at < len(text):
        end = literal_end(text, at) if text[at].isascii() else at
        if end > at and not (at and _NAME.fullmatch(text[at - 1])):
            dimension, value = _literal(text[at:end])
            literals.append(_Literal(text[at:end], Dimension.C_RATE if value.per_capacity
                                     else dimension, value.si))
            out.append(f"_{len(literals) - 1}")
            at = end
            continue
        name = _NAME.match(text, at)
        if name:
            if name[0].startswith("_"):
                raise ExprError(f"names start with a letter, got {quote(name[0])}")
            out.append(name[0].casefold())  # as quantities in conditions are
            at = name.end()
            continue
        if text[at] not in _PUNCTUATION:
            raise ExprError(f"unexpected character {text[at]!r} at position {at + 1} of "
                            f"{quote(text)}")
        out.append(text[at])
        at += 1
    return " ".join(out), literals


def _literal(text: str) -> tuple[Dimension, Value]:
    """A value with its unit, or a bare number (a count)."""
    try:
        return parse_quantity(text, (Dimension.COUNT,))
    except UnitError:
        try:
            return parse_quantity(text)
        except UnitError as error:
            raise ExprError(str(error)) from None


class _Builder:
    """Turns the ast of one expression into a :data:`Tree`, checking names and dimensions."""

    def __init__(self, literals: list[_Literal], variables: Mapping[str, Dimension],
                 quantities: Mapping[str, Dimension], sample: bool) -> None:
        self.literals = literals
        self.variables, self.quantities, self.sample = variables, quantities, sample
        self.used: set[str] = set()

    def show(self, node: ast.AST) -> str:
        """``node`` as written (its literals put back), quoted."""
        return quote(re.sub(r"\b_([0-9]+)\b", lambda m: self.literals[int(m[1])].text,
                            ast.unparse(node)))

    def build(self, node: ast.expr) -> tuple[Tree, Dimension]:
        tree, dimension = self._node(node)
        return _fold(tree), dimension

    def _node(self, node: ast.expr) -> tuple[Tree, Dimension]:
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.value.id == _BATTERY):
                raise ExprError(f"only battery.<field> has fields; got {self.show(node)}")
            if node.attr not in BATTERY_FIELDS:
                raise ExprError(f"unknown battery field {quote(node.attr)}"
                                f"{_suggest(node.attr, BATTERY_FIELDS)}; battery fields are "
                                f"{', '.join(BATTERY_FIELDS)}")
            return Name(_BATTERY, node.attr), BATTERY_FIELDS[node.attr][1]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand, dimension = self._node(node.operand)
            return (Neg(operand) if isinstance(node.op, ast.USub) else operand), dimension
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult
                                                      | ast.Div):
            return self._binary(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise ExprError(f"{self.show(node)} is not supported; use numbers with "
                        "units, names, + - * /, parentheses, min(), max() and abs()")

    def _name(self, name: str) -> tuple[Tree, Dimension]:
        if name.startswith("_"):  # a literal, by _scan
            literal = self.literals[int(name[1:])]
            return Const(literal.value), literal.dimension
        if name == CAPACITY:
            return Name(CAPACITY, name), Dimension.CHARGE
        if name in self.variables:
            self.used.add(name)
            return Name("variable", name), self.variables[name]
        if name in self.quantities:
            if not self.sample:
                raise ExprError(f"{name} is a quantity of the last sample, which only a set step "
                                f"reads; store it first, e.g. set: {{my_{name}: {name}}}")
            return Name("sample", name), self.quantities[name]
        if name == _BATTERY:
            raise ExprError(f"write battery.<field>, one of {', '.join(BATTERY_FIELDS)}")
        if name in _FUNCTIONS:
            raise ExprError(f"{name} is a function: write {name}(...)")
        known = [*self.variables, *self.quantities, CAPACITY]
        raise ExprError(f"unknown name {quote(name)}{_suggest(name, known)}: a variable must "
                        "be set by a set step earlier in the plan")

    def _binary(self, node: ast.BinOp) -> tuple[Tree, Dimension]:
        left, a = self._node(node.left)
        right, b = self._node(node.right)
        if isinstance(node.op, ast.Add | ast.Sub):
            op = "+" if isinstance(node.op, ast.Add) else "-"
            if a is not b:
                verb = "add" if op == "+" else "subtract"
                raise ExprError(f"cannot {verb} {noun(a)} and {noun(b)}")
            return Binary(op, left, right), a
        if isinstance(node.op, ast.Mult):
            found = product(a, b)
            if found is None:
                raise ExprError(f"cannot multiply {noun(a)} by {noun(b)} (see 'Dimensions' in "
                                "docs/plans.md for what multiplies)")
            return Binary("*", left, right, found[1]), found[0]
        found = quotient(a, b)
        if found is None:
            raise ExprError(f"cannot divide {noun(a)} by {noun(b)} (see 'Dimensions' in "
                            "docs/plans.md for what divides)")
        return Binary("/", left, right, found[1]), found[0]

    def _call(self, node: ast.Call) -> tuple[Tree, Dimension]:
        function = node.func.id if isinstance(node.func, ast.Name) else ""
        if function not in _FUNCTIONS:
            raise ExprError(f"unknown function {self.show(node.func)}; the functions "
                            "are min, max and abs")
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ExprError(f"{function}() takes plain arguments")
        wanted = "one argument" if function == "abs" else "two or more arguments"
        if (len(node.args) == 1) != (function == "abs") or not node.args:
            raise ExprError(f"{function}() takes {wanted}, got {len(node.args)}")
        built = [self._node(arg) for arg in node.args]
        dimensions = {dimension for _, dimension in built}
        if len(dimensions) > 1:
            raise ExprError(f"{function}() of values of different kinds: "
                            f"{', '.join(sorted(noun(d) for d in dimensions))}")
        return Call(function, tuple(tree for tree, _ in built)), built[0][1]


def product(a: Dimension, b: Dimension) -> tuple[Dimension, float] | None:
    """The dimension of ``a * b`` and the factor its SI value takes, or None if not allowed."""
    if a is Dimension.COUNT or b is Dimension.COUNT:
        return (b if a is Dimension.COUNT else a), 1.0
    return PRODUCTS.get((a, b)) or PRODUCTS.get((b, a))


def quotient(a: Dimension, b: Dimension) -> tuple[Dimension, float] | None:
    """The dimension of ``a / b`` and the factor its SI value takes, or None if not allowed."""
    if b is Dimension.COUNT:
        return a, 1.0
    if a is b and a is not Dimension.TEMPERATURE:  # a ratio of °C means nothing
        return Dimension.COUNT, 1.0
    for (x, y), (c, factor) in PRODUCTS.items():
        if a is c and b in (x, y):
            return (y if b is x else x), 1 / factor
    return None


def _fold(tree: Tree) -> Tree:
    """``tree`` with every part that reads no name computed now (errors are the plan's)."""
    if isinstance(tree, Neg):
        tree = Neg(_fold(tree.operand))
    elif isinstance(tree, Binary):
        tree = Binary(tree.op, _fold(tree.left), _fold(tree.right), tree.factor)
    elif isinstance(tree, Call):
        tree = Call(tree.function, tuple(_fold(arg) for arg in tree.args))
    if isinstance(tree, Const | Name) or not _constant(tree):
        return tree
    value = _evaluate(tree, Scope())
    if not math.isfinite(value):
        raise ExprError("a part without names is too large to compute")
    return Const(value)


def _constant(tree: Tree) -> bool:
    if isinstance(tree, Neg):
        return isinstance(tree.operand, Const)
    if isinstance(tree, Binary):
        return isinstance(tree.left, Const) and isinstance(tree.right, Const)
    if isinstance(tree, Call):
        return all(isinstance(arg, Const) for arg in tree.args)
    return isinstance(tree, Const)


def _evaluate(tree: Tree, scope: Scope) -> float:
    if isinstance(tree, Const):
        return tree.value
    if isinstance(tree, Name):
        return _read(tree, scope)
    if isinstance(tree, Neg):
        return -_evaluate(tree.operand, scope)
    if isinstance(tree, Call):
        args = [_evaluate(arg, scope) for arg in tree.args]
        return abs(args[0]) if tree.function == "abs" else (
            min(args) if tree.function == "min" else max(args))
    left, right = _evaluate(tree.left, scope), _evaluate(tree.right, scope)
    if tree.op == "+":
        return left + right
    if tree.op == "-":
        return left - right
    if tree.op == "*":
        return left * right * tree.factor
    if right == 0:
        raise ExprError("division by zero")
    return left / right * tree.factor


def _read(name: Name, scope: Scope) -> float:
    value: Any
    if name.kind == "variable":
        value = scope.variables.get(name.name)
        what = f"variable {name.name!r} has no value yet (no set step has run for it)"
    elif name.kind == CAPACITY:
        value = scope.capacity_ah
        what = "no capacity is known: give a battery or the plan's capacity"
    elif name.kind == _BATTERY:
        battery = scope.battery
        value = None if battery is None else getattr(battery, BATTERY_FIELDS[name.name][0])
        what = (f"battery.{name.name} needs a battery, and the test has none" if battery is None
                else f"battery {battery.name!r} has no registered {name.name}")
    else:
        value = None if scope.sample is None else scope.sample(name.name)
        what = f"{name.name} has no value on the last sample"
    if value is None or not math.isfinite(value):
        raise ExprError(what)
    return float(value)


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1) if len(word) <= 40 else []
    return f" (did you mean {close[0]!r}?)" if close else ""
