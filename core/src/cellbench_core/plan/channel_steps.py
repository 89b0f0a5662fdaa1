"""What every step that runs the channel shares, whichever form it is written in: the modes and
the setpoints each takes, the checks on them, and the label that names a step.

A new channel mode is an entry in :data:`MODES`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cellbench_core.plan.end_conditions import ConditionGroups
from cellbench_core.plan.expr import Computed
from cellbench_core.plan.limits import check_against_limits
from cellbench_core.plan.model import Action, ActionKind, Amount, StepSpec
from cellbench_core.plan.yaml_source import (
    Entries,
    ParseContext,
    Where,
    join_path,
    node_line,
    node_text,
)
from cellbench_core.units import quote
from cellbench_hal import StepMode


@dataclass(frozen=True)
class ModeRule:
    """The setpoints a mode takes; every setpoint is positive except ``signed``."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    signed: str | None = None  # set by ``direction`` (or its own sign), positive when charging


MODES: dict[StepMode, ModeRule] = {
    StepMode.REST: ModeRule(),
    StepMode.CC: ModeRule(("current",), signed="current"),
    StepMode.CV: ModeRule(("voltage",), ("current",)),
    StepMode.CCCV: ModeRule(("current", "voltage"), signed="current"),
    StepMode.CP: ModeRule(("power",), signed="power"),
    StepMode.CR: ModeRule(("resistance",)),
}
#: The sign a direction gives a cc or cccv current, or a cp power: positive when charging.
DIRECTIONS = {"charge": 1.0, "discharge": -1.0}


def build_step(ctx: ParseContext, mode: StepMode, setpoints: dict[str, tuple[Amount, Where]],
               until: ConditionGroups, text: str, label: str | None, where: Where,
               then: Sequence[Action] = ()) -> StepSpec:
    """Check a step's setpoints against its mode and the safety limits, then build it."""
    rule = MODES[mode]
    for name, (value, (line, path)) in setpoints.items():
        if isinstance(value, Computed):
            continue  # checked when the runner computes it
        if name == rule.signed and value.si == 0:
            ctx.fail(line, path, "must not be zero (a step that does nothing is a rest)")
        if name != rule.signed and not value.si > 0:
            ctx.fail(line, path, "must be positive")
    check_against_limits(ctx, setpoints)
    if not until:
        ctx.fail(*where, "this step could run forever: give it an end with 'until' or 'for'")
    values = {name: value for name, (value, _) in setpoints.items()}
    return ctx.origin(StepSpec(
        mode=mode, until=tuple(until), text=text, label=label, line=where[0],
        then=step_actions(then),
        current=values.get("current"), voltage=values.get("voltage"), power=values.get("power"),
        resistance=values.get("resistance")), *where)


def step_actions(then: Sequence[Action]) -> tuple[Action, ...]:
    """The action of each end condition group, or none when every one is ``next``."""
    return tuple(then) if any(action.kind is not ActionKind.NEXT for action in then) else ()


def step_label(ctx: ParseContext, entries: Entries, path: str) -> str | None:
    """The ``label`` of a step mapping, if it has one; unique in the plan."""
    if "label" not in entries:
        return None
    node = entries["label"][1]
    path = join_path(path, "label")
    label = node_text(ctx, node, path, "a label")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", label, re.ASCII):
        ctx.fail(node_line(node), path, f"a label is a name of letters, digits, '_', '.' and '-' "
                 f"starting with a letter or '_', got {quote(label)}")
    if label in ctx.labels:
        ctx.fail(node_line(node), path, f"label {quote(label)} is already used at "
                 f"{ctx.place(*ctx.labels[label])}")
    ctx.labels[label] = (ctx.source, node_line(node))
    return label
