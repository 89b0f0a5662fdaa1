"""Test plans: the model, the YAML plan language (see :mod:`cellbench_core.plan.parser`) and its
normal form."""

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
    Value,
)
from cellbench_core.plan.normalise import dump_plan
from cellbench_core.plan.parser import MAX_PLAN_BYTES, load_plan, parse_plan

__all__ = [
    "MAX_PLAN_BYTES",
    "Condition",
    "Loop",
    "Node",
    "Op",
    "Plan",
    "PlanError",
    "Quantity",
    "SafetyLimits",
    "StepSpec",
    "Value",
    "dump_plan",
    "load_plan",
    "parse_plan",
]
