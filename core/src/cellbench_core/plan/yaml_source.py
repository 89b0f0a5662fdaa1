"""The YAML source of a plan: its text read and composed into nodes that keep their lines, the
state of one parse, and the helpers every part of the parser reads nodes with.

Anchors, aliases, tags, duplicate keys and unknown keys are refused here, so the rest of the parser
sees plain mappings, lists and scalars; every error is a :class:`PlanError` naming the file, the
line and the field (a dotted path such as ``steps[2].steps[0].until``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol, TypeVar

import yaml

from cellbench_core.plan.dimensions import QUANTITY_NAMES
from cellbench_core.plan.expr import MARK, Computed, Expr, ExprError, Must, parse_expression
from cellbench_core.plan.files import FileRefused, PlanFiles
from cellbench_core.plan.model import Amount, PlanError, SafetyLimits
from cellbench_core.text import TextError, check_text
from cellbench_core.units import (
    Dimension,
    UnitError,
    Value,
    describe,
    noun,
    parse_duration,
    parse_quantity,
    parse_value,
    quote,
)

_MAX_DEPTH = 64  # YAML nesting; a plan needs two levels per loop

# The tags PyYAML resolves plain scalars to: how a node was written (3 is an int, "3" a str).
_NULL = "tag:yaml.org,2002:null"
INT_TAG = "tag:yaml.org,2002:int"
BOOL_TAG = "tag:yaml.org,2002:bool"
STR_TAG = "tag:yaml.org,2002:str"


def read_plan_text(path: str | Path, files: PlanFiles | None = None) -> str:
    """The text of the plan file at ``path`` (read as ``files`` says), or a PlanError naming
    it."""
    source = str(path)
    try:
        data = (files or PlanFiles()).read_plan(Path(path))
    except FileRefused as error:
        raise PlanError(source, 0, "", error.reason) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise PlanError(source, line, "", "the plan is not UTF-8 text") from None


class _Loader(yaml.SafeLoader):
    """Composes nodes (keeping their lines) and refuses YAML features a plan has no use for."""

    def __init__(self, text: str, ctx: ParseContext) -> None:
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


def compose(ctx: ParseContext, text: str) -> yaml.Node | None:
    """The YAML ``text`` composed into nodes (None for an empty document); errors name
    ``ctx``'s file."""
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


def node_line(node: yaml.Node) -> int:
    """The 1-based line where ``node`` starts."""
    return _mark_line(node.start_mark)


def node_kind(node: yaml.Node) -> str:
    """What ``node`` is, for an error that says what was found instead."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return quote(node.value)


_T = TypeVar("_T")


@dataclass
class ParseContext:
    """State of one parse: where errors point and what the plan has declared so far."""

    source: str
    files: PlanFiles = field(default_factory=PlanFiles)  # what else it may read, and how
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    capacity_ah: float | None = None
    labels: dict[str, tuple[str, int]] = field(default_factory=dict)  # -> file and line
    # The variables set so far in plan order -> dimension, file and line of the first set.
    variables: dict[str, tuple[Dimension, str, int]] = field(default_factory=dict)
    # id() of each step and action -> (file, line, path), for flow errors found after parsing.
    origins: dict[int, tuple[str, int, str]] = field(default_factory=dict)
    including: tuple[Path, ...] = ()  # the files that include this one, outermost first

    def fail(self, line: int, path: str, message: str) -> NoReturn:
        """Raise the PlanError ``message`` about ``line`` and field ``path`` of this file."""
        raise PlanError(self.source, line, path, message)

    def place(self, source: str, line: int) -> str:
        """``line`` of ``source`` as an error in this file names it."""
        return f"line {line}" if source == self.source else f"{source}:{line}"

    def origin(self, node: _T, line: int, path: str) -> _T:
        """``node``, remembered as written at ``line`` and ``path`` of this file."""
        self.origins[id(node)] = (self.source, line, path)
        return node


Entries = dict[str, tuple[int, yaml.Node]]  # key -> (line of the key, value node)
Where = tuple[int, str]  # line and field an error about a value points at


def join_path(path: str, key: str) -> str:
    """The field ``key`` of the field at ``path``: ``steps[2].until``."""
    return f"{path}.{key}" if path else key


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or nothing."""
    options = [str(choice) for choice in choices]  # StrEnum members would show as <Mode.X: 'x'>
    close = difflib.get_close_matches(word.casefold(), options, n=1) if len(word) <= 40 else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def node_entries(ctx: ParseContext, node: yaml.Node, path: str) -> Entries:
    """The entries of a mapping node; rejects other nodes, complex and duplicate keys."""
    if not isinstance(node, yaml.MappingNode):
        ctx.fail(node_line(node), path, f"expected a mapping, got {node_kind(node)}")
    entries: Entries = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL:
            ctx.fail(node_line(key_node), path,
                     f"expected a name as key, got {node_kind(key_node)}")
        key = key_node.value
        if key in entries:
            ctx.fail(node_line(key_node), join_path(path, key),
                     f"duplicate key {quote(key)} (first at line {entries[key][0]})")
        entries[key] = (node_line(key_node), value_node)
    return entries


def recognised_entries(ctx: ParseContext, node: yaml.Node, keys: Collection[str],
                       expected: str) -> Entries:
    """The entries of ``node``, a mapping of some of ``keys`` only, in a file not known to be a
    plan until then; anything else is an error saying ``expected`` that quotes nothing of the
    file (a plan may name any file, and its errors go where that file's readers may not look)."""
    if not isinstance(node, yaml.MappingNode):
        ctx.fail(node_line(node), "", f"not a plan: {expected}")
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.value not in keys:
            hint = did_you_mean(key_node.value, keys) if isinstance(key_node.value, str) else ""
            ctx.fail(node_line(key_node), "", f"not a plan: {expected}{hint}")
    return node_entries(ctx, node, "")


def check_keys(ctx: ParseContext, entries: Entries, allowed: Sequence[str], path: str) -> None:
    """Refuse a key of ``entries`` that is not ``allowed``."""
    for key, (line, _) in entries.items():
        if key not in allowed:
            ctx.fail(line, join_path(path, key),
                     f"unknown key {quote(key)}{did_you_mean(key, allowed)}; "
                     f"expected {', '.join(allowed)}")


def node_text(ctx: ParseContext, node: yaml.Node, path: str, expected: str) -> str:
    """The text of a scalar node; anything else is an error saying ``expected``."""
    if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
        ctx.fail(node_line(node), path, f"expected {expected}, got {node_kind(node)}")
    try:  # every text a plan holds enters here: one rule for all of it
        return check_text(node.value, "the text")
    except TextError as error:
        ctx.fail(node_line(node), path, str(error))


_WHOLE = re.compile(r"[+-]?[0-9]{1,40}", re.ASCII)


def node_whole(ctx: ParseContext, node: yaml.Node, path: str, low: int, high: int,
               expected: str) -> int:
    """The whole number from ``low`` to ``high`` a scalar node gives in decimal digits;
    anything else is an error saying ``expected``, and one out of range says the range."""
    if node.tag != INT_TAG or not _WHOLE.fullmatch(node.value):
        ctx.fail(node_line(node), path, f"expected {expected}, got {node_kind(node)}")
    number = int(node.value)
    if not low <= number <= high:
        ctx.fail(node_line(node), path, f"must be between {low} and {high}, got {number}")
    return number


def node_value(ctx: ParseContext, node: yaml.Node, path: str, dimension: Dimension) -> Value:
    """The value with units of a scalar node, of ``dimension``."""
    text = node_text(ctx, node, path, describe(dimension))
    try:
        return parse_value(text, dimension)
    except UnitError as error:
        ctx.fail(node_line(node), path, str(error))


def node_positive(ctx: ParseContext, node: yaml.Node, path: str, dimension: Dimension) -> Value:
    """The positive value with units of a scalar node, of ``dimension``."""
    value = node_value(ctx, node, path, dimension)
    if not value.si > 0:
        ctx.fail(node_line(node), path, f"must be positive, got {quote(node.value)}")
    return value


def node_choice(ctx: ParseContext, node: yaml.Node, path: str, choices: Collection[str]) -> str:
    """One of the words ``choices`` (in any case), as a scalar node gives it, in lower case."""
    expected = " or ".join(choices)
    word = node_text(ctx, node, path, expected).casefold()
    if word not in choices:
        ctx.fail(node_line(node), path,
                 f"expected {expected}, got {quote(node.value)}{did_you_mean(word, choices)}")
    return word


def node_duration(ctx: ParseContext, node: yaml.Node, path: str) -> float:
    """The duration (s) a scalar node gives, like ``10 min``."""
    text = node_text(ctx, node, path, describe(Dimension.TIME))
    try:
        return parse_duration(text)
    except UnitError as error:
        ctx.fail(node_line(node), path, str(error))


def node_flag(ctx: ParseContext, node: yaml.Node, path: str) -> bool:
    """The YAML boolean (true or false) a scalar node gives."""
    if node.tag != BOOL_TAG:
        ctx.fail(node_line(node), path, f"expected true or false, got {node_kind(node)}")
    flag: bool = yaml.SafeLoader.bool_values[node.value.lower()]
    return flag


def parse_computed(ctx: ParseContext, text: str, line: int, path: str,
                   allowed: Collection[Dimension] | None, *, sample: bool = False) -> Expr:
    """The expression ``text`` (after its ``=``), of one of the ``allowed`` dimensions (a
    C-rate counts as a current); ``sample``: it may read the last sample's quantities."""
    variables = {name: dimension for name, (dimension, _, _) in ctx.variables.items()}
    try:
        expr = parse_expression(text, variables, quantities=QUANTITY_NAMES, sample=sample)
    except ExprError as error:
        ctx.fail(line, path, str(error))
    if allowed is not None and expr.dimension not in allowed and not (
            expr.dimension is Dimension.C_RATE and Dimension.CURRENT in allowed):
        ctx.fail(line, path, f"{quote(str(expr))} gives {noun(expr.dimension)}; expected "
                 f"{' or '.join(noun(d) for d in allowed)}")
    return expr


def parse_amount(ctx: ParseContext, text: str, line: int, path: str,
                 allowed: Collection[Dimension] | None, must: Must) -> tuple[Dimension, Amount]:
    """A value as written, or with the leading ``=`` an expression, and its dimension (a
    C-rate's is CURRENT)."""
    if text.lstrip().startswith(MARK):
        expr = parse_computed(ctx, text.lstrip()[len(MARK):], line, path, allowed)
        dimension = Dimension.CURRENT if expr.dimension is Dimension.C_RATE else expr.dimension
        return dimension, Computed(expr, must)
    try:
        return parse_quantity(text, allowed)
    except UnitError as error:
        ctx.fail(line, path, str(error))


def with_sign(amount: Amount, sign: float) -> Amount:
    """A magnitude given the sign of a direction (charge +1, discharge -1)."""
    if isinstance(amount, Computed):
        return Computed(amount.expr, Must.POSITIVE, sign)
    return Value(sign * amount.si, amount.per_capacity)


def mapping_text(entries: Entries) -> str:
    """The step's mapping on one line, as written: ``mode: cc, current: 1C, for: 1 h``."""
    return ", ".join(f"{key}: {_flow(node)}" for key, (_, node) in entries.items())


def _flow(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return f"[{', '.join(_flow(item) for item in node.value)}]"
    if isinstance(node, yaml.MappingNode):
        return "{" + ", ".join(f"{key.value}: {_flow(value)}" for key, value in node.value) + "}"
    text: str = node.value
    return text
