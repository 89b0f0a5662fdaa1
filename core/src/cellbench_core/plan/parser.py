"""Plan language v1: YAML test plans, parsed into :class:`~cellbench_core.plan.model.Plan`.

docs/plans.md describes the language. The parser's parts, one module each: the YAML source and the
helpers that read it (:mod:`~cellbench_core.plan.yaml_source`), the dimensions of values
(:mod:`~cellbench_core.plan.dimensions`), ``limits`` (:mod:`~cellbench_core.plan.limits`), the list
of steps, loops, includes and the other step kinds (:mod:`~cellbench_core.plan.steps`), steps as
text (:mod:`~cellbench_core.plan.text_steps`), steps with a ``mode``
(:mod:`~cellbench_core.plan.mode_steps`), what all channel steps share
(:mod:`~cellbench_core.plan.channel_steps`) and end conditions
(:mod:`~cellbench_core.plan.end_conditions`). The flow of a parsed plan is checked by compiling it
(:mod:`~cellbench_core.plan.program`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from cellbench_core.plan.dimensions import (
    LIMIT_DIMENSIONS,
    QUANTITY_DIMENSIONS,
    SETPOINT_DIMENSIONS,
    dimension_of,
)
from cellbench_core.plan.files import MAX_PLAN_BYTES, PlanFiles
from cellbench_core.plan.limits import parse_limits
from cellbench_core.plan.model import Plan, PlanError
from cellbench_core.plan.program import Program, ProgramError
from cellbench_core.plan.steps import parse_steps
from cellbench_core.plan.tables import TableLoader
from cellbench_core.plan.yaml_source import (
    ParseContext,
    check_keys,
    compose,
    join_path,
    node_entries,
    node_line,
    node_positive,
    node_text,
    read_plan_text,
)
from cellbench_core.text import TextError, check_name
from cellbench_core.units import Dimension, UnitError, check_physical

# What this module offered when it was the whole parser; importers keep importing it from here.
__all__ = [
    "LIMIT_DIMENSIONS",
    "MAX_PLAN_BYTES",
    "QUANTITY_DIMENSIONS",
    "SETPOINT_DIMENSIONS",
    "dimension_of",
    "load_plan",
    "parse_plan",
]


def load_plan(path: str | Path, *, tables: TableLoader | None = None,
              files: PlanFiles | None = None) -> Plan:
    """Read and parse the plan file at ``path``; ``tables`` reads the lookup tables of profile
    steps (without it, a profile table is an error). ``files`` is the policy for the files it
    reads (its includes and tables; by default any, relative to its own file), and its
    ``tables`` stand in for a missing ``tables``."""
    files = _policy(files, tables)
    return parse_plan(read_plan_text(path, files), str(path), files=files)


def parse_plan(text: str, source: str = "<string>", *, tables: TableLoader | None = None,
               files: PlanFiles | None = None) -> Plan:
    """Parse a plan from its YAML ``text``; ``source`` names it in errors, and the files it
    includes and the table files of profile steps are found relative to its folder. ``tables``
    reads the tables (without it, a profile table is an error). ``files`` is the policy for the
    files the plan reads (by default any: a plan that arrives as text passes one confined to the
    plans folder)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PLAN_BYTES:
        raise PlanError(source, 0, "", f"the plan is larger than {MAX_PLAN_BYTES} bytes")
    ctx = ParseContext(source, files=_policy(files, tables))
    return _plan(ctx, compose(ctx, text), text)


def _policy(files: PlanFiles | None, tables: TableLoader | None) -> PlanFiles:
    files = files or PlanFiles()
    return files if tables is None else replace(files, tables=tables)


_PLAN_KEYS = ("name", "capacity", "limits", "steps")


def _plan(ctx: ParseContext, root: yaml.Node | None, text: str) -> Plan:
    if root is None:
        ctx.fail(0, "", "the plan is empty; it needs a name and steps")
    entries = node_entries(ctx, root, "")
    check_keys(ctx, entries, _PLAN_KEYS, "")
    for key in ("name", "steps"):
        if key not in entries:
            ctx.fail(node_line(root), key, f"missing: a plan needs {key!r}")
    name = node_text(ctx, entries["name"][1], "name", "a name")
    try:  # it becomes the test's name, stored and shown everywhere
        check_name(name, "the plan's name")
    except TextError as error:
        ctx.fail(node_line(entries["name"][1]), "name", str(error))
    if "capacity" in entries:
        capacity = node_positive(ctx, entries["capacity"][1], "capacity", Dimension.CHARGE).si
        try:
            ctx.capacity_ah = check_physical(capacity, Dimension.CHARGE)
        except UnitError as error:
            ctx.fail(node_line(entries["capacity"][1]), "capacity", str(error))
    if "limits" in entries:
        ctx.limits = parse_limits(ctx, entries["limits"][1], "limits")
    plan = Plan(name=name, steps=parse_steps(ctx, entries["steps"][1], "steps"), limits=ctx.limits,
                capacity_ah=ctx.capacity_ah, source=ctx.source, text=text)
    _check_flow(ctx, plan)
    return plan


def _check_flow(ctx: ParseContext, plan: Plan) -> None:
    """Compile ``plan`` for its flow errors, and name the file, line and field of the first."""
    try:
        Program.compile(plan)
    except ProgramError as error:
        source, line, path = ctx.origins.get(id(error.node), (ctx.source, error.line, ""))
        where = join_path(path, error.field) if error.field else path
        raise PlanError(source, line, where, error.message) from None
