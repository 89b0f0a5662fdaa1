"""``external`` steps: the channel takes setpoints from a superior system for a while.

``- external: {watchdog: 2 s, for: 8 h}``: the keys are ``watchdog`` (required), ``for``,
``until`` and ``label``, as on a mode step. The plan's safety limits apply as on any step.
"""

from __future__ import annotations

from cellbench_core.plan.channel_steps import step_actions
from cellbench_core.plan.mode_steps import step_ends
from cellbench_core.plan.model import ExternalSpec, StepSpec
from cellbench_core.plan.yaml_source import (
    Entries,
    ParseContext,
    check_keys,
    join_path,
    mapping_text,
    node_duration,
    node_entries,
    node_line,
)
from cellbench_hal import StepMode

#: The keys of an external step's mapping.
EXTERNAL_KEYS = ("watchdog", "for", "until", "label")


def external_step(ctx: ParseContext, entries: Entries, line: int, path: str) -> StepSpec:
    """The step ``external: {watchdog: ..., for/until: ..., label: ...}`` describes."""
    where = join_path(path, "external")
    node = entries["external"][1]
    inner = node_entries(ctx, node, where)
    check_keys(ctx, inner, EXTERNAL_KEYS, where)
    if "watchdog" not in inner:
        ctx.fail(node_line(node), join_path(where, "watchdog"), "missing: an external step "
                 "needs a watchdog, like watchdog: 2 s (no setpoint or keepalive for that "
                 "long switches the output off and ends the step)")
    watchdog = node_duration(ctx, inner["watchdog"][1], join_path(where, "watchdog"))
    until, then, label = step_ends(ctx, inner, where)
    return ctx.origin(StepSpec(mode=StepMode.REST, until=tuple(until),
                               text=f"external: {{{mapping_text(inner)}}}", label=label,
                               line=line, then=step_actions(then),
                               external=ExternalSpec(watchdog)), line, path)
