"""Steps written as text, after PyBaMM's experiment strings: ``Rest for 10 minutes``,
``Charge at 0.5C to 4.2 V until C/20``, ``Discharge at 5 W for 10 minutes or until 2.5 V``,
``Hold at 4.2 V until 50 mA``.

A new verb is an entry in :data:`VERBS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import yaml

from cellbench_core.plan.channel_steps import DIRECTIONS, build_step
from cellbench_core.plan.end_conditions import AND_KEYWORD, ConditionGroups
from cellbench_core.plan.expr import Computed, Must
from cellbench_core.plan.model import Amount, Condition, Op, Quantity, StepSpec
from cellbench_core.plan.yaml_source import (
    ParseContext,
    Where,
    did_you_mean,
    node_line,
    node_text,
    parse_amount,
    with_sign,
)
from cellbench_core.units import Dimension, UnitError, Value, parse_duration, parse_value, quote
from cellbench_hal import StepMode

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


def text_step(ctx: ParseContext, node: yaml.ScalarNode, path: str) -> StepSpec:
    """The step a text like ``Charge at 1C until 4.2 V`` describes."""
    text = node_text(ctx, node, path, f"a step like {_EXAMPLE_STEPS}")
    line = node_line(node)
    head, *rest = _KEYWORD.split(text)
    verb = head.strip().casefold()
    if verb not in VERBS:
        first = verb.split()[0] if verb.split() else verb
        if first in VERBS:
            ctx.fail(line, path, f"expected 'at', 'for' or 'until' after {first.capitalize()!r}, "
                     f"got {quote(text)}")
        ctx.fail(line, path, f"expected a step like {_EXAMPLE_STEPS}, got {quote(text)}"
                 f"{did_you_mean(first, VERBS)}")
    pairs = [(keyword.casefold(), argument.strip()) for keyword, argument in zip(
        rest[::2], rest[1::2], strict=True)]
    setpoints: dict[str, str] = {}
    while pairs and pairs[0][0] in ("at", "to"):
        keyword, argument = pairs.pop(0)
        if keyword in setpoints or not argument:
            ctx.fail(line, path, f"expected one value after {keyword!r} in {quote(text)}")
        setpoints[keyword] = argument
    phrase = _Phrase(verb, setpoints, _ends(ctx, pairs, text, line, path), text, line, path)
    return VERBS[verb](ctx, phrase)


def _ends(ctx: ParseContext, pairs: list[tuple[str, str]], text: str, line: int,
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
        if AND_KEYWORD.search(argument):
            ctx.fail(line, path, "text steps join their ends with 'or' only; for 'and', "
                     "write the step as a mapping with 'until'")
        ends.append((keyword, argument))
        joined = False
    if joined:
        ctx.fail(line, path, f"expected 'for' or 'until' after 'or' in {quote(text)}")
    return ends


def _quantity(ctx: ParseContext, phrase: _Phrase, text: str) -> tuple[Dimension, Amount]:
    return parse_amount(ctx, text, phrase.line, phrase.path, None, Must.ANY)


def _end_conditions(ctx: ParseContext, phrase: _Phrase, charging: bool) -> ConditionGroups:
    """The conditions of a text step's ``for``/``until`` terms, each a group of its own."""
    groups: ConditionGroups = []
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


def _rest(ctx: ParseContext, phrase: _Phrase) -> StepSpec:
    if phrase.setpoints:
        ctx.fail(phrase.line, phrase.path, "a rest takes no setpoint: write 'Rest for 10 minutes'"
                 f", got {quote(phrase.text)}")
    if any(keyword == "until" for keyword, _ in phrase.ends):
        ctx.fail(phrase.line, phrase.path, "a rest ends after a duration ('Rest for 10 minutes'); "
                 "for other ends write it as a mapping, e.g. 'mode: rest' with 'until'")
    return build_step(ctx, StepMode.REST, {}, _end_conditions(ctx, phrase, charging=False),
                 phrase.text, None, (phrase.line, phrase.path))


def _charge(ctx: ParseContext, phrase: _Phrase) -> StepSpec:
    sign = DIRECTIONS[phrase.verb]
    verb = phrase.verb.capitalize()
    where = (phrase.line, phrase.path)
    if "at" not in phrase.setpoints:
        ctx.fail(*where, f"expected '{verb} at <current, C-rate, power or resistance>', "
                 f"got {quote(phrase.text)}")
    dimension, value = _quantity(ctx, phrase, phrase.setpoints["at"])
    if isinstance(value, Value) and not value.si > 0:
        ctx.fail(*where, f"give the magnitude after 'at': {verb!r} sets the sign")
    signed = with_sign(value, sign)
    setpoints: dict[str, tuple[Amount, Where]]
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
    return build_step(ctx, mode, setpoints, until, phrase.text, None, where)


def _hold(ctx: ParseContext, phrase: _Phrase) -> StepSpec:
    where = (phrase.line, phrase.path)
    if set(phrase.setpoints) != {"at"}:
        ctx.fail(*where, f"expected 'Hold at <voltage>', got {quote(phrase.text)}")
    try:
        volts = parse_value(phrase.setpoints["at"], Dimension.VOLTAGE)
    except UnitError as error:
        ctx.fail(*where, f"after 'Hold at': {error}")
    until = _end_conditions(ctx, phrase, charging=True)
    return build_step(ctx, StepMode.CV, {"voltage": (volts, where)}, until, phrase.text, None,
                      where)


VERBS: dict[str, Callable[[ParseContext, _Phrase], StepSpec]] = {
    "rest": _rest,
    "charge": _charge,
    "discharge": _charge,
    "hold": _hold,
}
