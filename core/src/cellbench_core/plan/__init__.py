"""Test plans: the model, the YAML plan language (docs/plans.md, read by
:mod:`cellbench_core.plan.parser`), its normal form and the program a plan compiles to."""

from cellbench_core.plan.model import (
    NEXT,
    Action,
    ActionKind,
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
    StepSpec,
    Value,
)
from cellbench_core.plan.normalise import dump_plan
from cellbench_core.plan.parser import MAX_PLAN_BYTES, load_plan, parse_plan

__all__ = [
    "MAX_PLAN_BYTES",
    "NEXT",
    "Action",
    "ActionKind",
    "ChamberSpec",
    "Condition",
    "Limit",
    "Loop",
    "Message",
    "Node",
    "Op",
    "Plan",
    "PlanError",
    "ProfileSpec",
    "Quantity",
    "SafetyLimits",
    "SetStep",
    "StepSpec",
    "Value",
    "dump_plan",
    "load_plan",
    "parse_plan",
]
