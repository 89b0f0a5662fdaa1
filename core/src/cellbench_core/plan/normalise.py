"""A plan written back as YAML in its normal form: every step a mapping, every value in SI
units (or a C-rate), every end in one ``until`` expression.

The output parses back into an equal plan (apart from source lines and texts), so it can be
stored with a test as the exact record of what ran.
"""

from __future__ import annotations

import math
from dataclasses import fields

import yaml

from cellbench_core.plan.model import Condition, Loop, Node, Plan, StepSpec
from cellbench_core.plan.parser import (
    LIMIT_DIMENSIONS,
    QUANTITY_DIMENSIONS,
    SETPOINT_DIMENSIONS,
)
from cellbench_core.units import Dimension, Value, format_value

# Dumped as plain Python data; yaml.safe_dump handles the quoting.
_Data = dict[str, object]


def dump_plan(plan: Plan) -> str:
    """The plan (as the parser produced it) in normal form, as YAML text."""
    document: _Data = {"name": plan.name}
    if plan.capacity_ah is not None:
        document["capacity"] = format_value(Value(plan.capacity_ah), Dimension.CHARGE)
    limits: _Data = {}
    for item in fields(plan.limits):
        limit = getattr(plan.limits, item.name)
        if limit is not None:
            value = limit if isinstance(limit, Value) else Value(limit)
            limits[item.name] = format_value(value, LIMIT_DIMENSIONS[item.name])
    if limits:
        document["limits"] = limits
    document["steps"] = [_node(node) for node in plan.steps]
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=math.inf)


def _node(node: Node) -> _Data:
    if isinstance(node, Loop):
        return {"repeat": node.count, "cycle": node.cycle,
                "steps": [_node(child) for child in node.body]}
    return _step(node)


def _step(step: StepSpec) -> _Data:
    data: _Data = {"mode": step.mode.value}
    for name, dimension in SETPOINT_DIMENSIONS.items():
        value = getattr(step, name)
        if value is not None:
            data[name] = format_value(value, dimension)
    data["until"] = " or ".join(" and ".join(_condition(c) for c in group) for group in step.until)
    if step.label is not None:
        data["label"] = step.label
    return data


def _condition(condition: Condition) -> str:
    threshold = format_value(condition.value, QUANTITY_DIMENSIONS[condition.quantity])
    return f"{condition.quantity.value} {condition.op.value} {threshold}"
