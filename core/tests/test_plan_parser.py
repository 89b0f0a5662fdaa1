"""Plan language v1: text and mapping steps, every rejection with its file, line and field, the
normal form's round trip, and fuzzing that shows any input gives a runnable plan or a PlanError."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cellbench_core.demo
from cellbench_core.plan import (
    MAX_PLAN_BYTES,
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
    dump_plan,
    load_plan,
    parse_plan,
)
from cellbench_core.plan.dimensions import QUANTITY_DIMENSIONS
from cellbench_core.plan.expr import Expr, Scope, parse_expression
from cellbench_core.plan.program import Program
from cellbench_core.plan.steps import runs_channel
from cellbench_core.plan.tables import TableLoader
from cellbench_core.runner.resolve import hal_step
from cellbench_core.units import Dimension
from cellbench_hal import ProfileQuantity, Step, StepMode

PLANS = Path(__file__).parents[2] / "plans"
DEMO = Path(cellbench_core.demo.__file__).parent / "cccv-cycling.yaml"
Q = Quantity
GE, LE = Op.GE, Op.LE


def A(si: float) -> Value:
    return Value(si)


def C(rate: float) -> Value:
    return Value(rate, per_capacity=True)


def cond(quantity: Quantity, op: Op, value: Value) -> Condition:
    return Condition(quantity, op, value)


def bare(plan: Plan) -> Plan:
    """The plan without what round trips may change: lines, texts and source."""

    def node(item: Node) -> Node:
        if isinstance(item, Message | SetStep):
            return replace(item, line=0)
        if isinstance(item, Loop):
            until = tuple(tuple(replace(c, line=0) for c in group) for group in item.until)
            return replace(item, body=tuple(node(child) for child in item.body), line=0,
                           until=until)
        until = tuple(tuple(replace(c, line=0) for c in group) for group in item.until)
        return replace(item, until=until, text="", line=0)

    return replace(plan, steps=tuple(node(item) for item in plan.steps), source="", text="")


def plan(text: str) -> Plan:
    return parse_plan(textwrap.dedent(text), "plan.yaml")


def one_step(step: str) -> StepSpec:
    parsed = bare(parse_plan(f"name: t\nsteps:\n  - {step}\n"))
    (only,) = parsed.steps
    assert isinstance(only, StepSpec)
    return only


# --- steps as text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rest for 10 minutes", StepSpec(StepMode.REST, ((cond(Q.STEP_TIME, GE, A(600)),),))),
        (
            "Charge at 1C until 4.2 V",
            StepSpec(StepMode.CC, ((cond(Q.VOLTAGE, GE, A(4.2)),),), current=C(1)),
        ),
        (
            "Hold at 4.2 V until C/20",
            StepSpec(StepMode.CV, ((cond(Q.ABS_CURRENT, LE, C(0.05)),),), voltage=A(4.2)),
        ),
        (
            "Discharge at 1C until 2.5 V",
            StepSpec(StepMode.CC, ((cond(Q.VOLTAGE, LE, A(2.5)),),), current=C(-1)),
        ),
        (
            "Charge at 0.5C to 4.2 V until C/20",
            StepSpec(
                StepMode.CCCV,
                ((cond(Q.ABS_CURRENT, LE, C(0.05)),),),
                current=C(0.5),
                voltage=A(4.2),
            ),
        ),
        (
            "Discharge at 5 W for 10 minutes or until 2.5 V",
            StepSpec(
                StepMode.CP,
                ((cond(Q.STEP_TIME, GE, A(600)),), (cond(Q.VOLTAGE, LE, A(2.5)),)),
                power=A(-5),
            ),
        ),
        (
            "Discharge at 2 A for 1 hour or until 2.5 V",
            StepSpec(
                StepMode.CC,
                ((cond(Q.STEP_TIME, GE, A(3600)),), (cond(Q.VOLTAGE, LE, A(2.5)),)),
                current=A(-2),
            ),
        ),
        (
            "Discharge at 4 Ohm until 2.5 V",
            StepSpec(StepMode.CR, ((cond(Q.VOLTAGE, LE, A(2.5)),),), resistance=A(4)),
        ),
        (
            "Hold at 4.2 V for 2 hours or until 50 mA",
            StepSpec(
                StepMode.CV,
                ((cond(Q.STEP_TIME, GE, A(7200)),), (cond(Q.ABS_CURRENT, LE, A(0.05)),)),
                voltage=A(4.2),
            ),
        ),
        (
            "charge AT 1 A UNTIL 1.2 Ah",
            StepSpec(StepMode.CC, ((cond(Q.ABS_STEP_AH, GE, A(1.2)),),), current=A(1)),
        ),
        (
            "Discharge at 1 A until 5 Wh",
            StepSpec(StepMode.CC, ((cond(Q.ABS_STEP_WH, GE, A(5)),),), current=A(-1)),
        ),
        (
            "Discharge at C/2 until 2.5 V or until 1 Ah",
            StepSpec(
                StepMode.CC,
                ((cond(Q.VOLTAGE, LE, A(2.5)),), (cond(Q.ABS_STEP_AH, GE, A(1)),)),
                current=C(-0.5),
            ),
        ),
        (
            "Discharge at C/2 until 2.5 V or 1 Ah",
            StepSpec(
                StepMode.CC,
                ((cond(Q.VOLTAGE, LE, A(2.5)),), (cond(Q.ABS_STEP_AH, GE, A(1)),)),
                current=C(-0.5),
            ),
        ),
        (
            "Discharge at 1C to 2.5 V until C/50",
            StepSpec(
                StepMode.CCCV, ((cond(Q.ABS_CURRENT, LE, C(0.02)),),), current=C(-1), voltage=A(2.5)
            ),
        ),
        (
            "Charge at 200 mA for 1 h",
            StepSpec(StepMode.CC, ((cond(Q.STEP_TIME, GE, A(3600)),),), current=A(0.2)),
        ),
    ],
)
def test_text_steps(text: str, expected: StepSpec) -> None:
    assert one_step(text) == expected


def test_text_steps_keep_their_text_and_line() -> None:
    parsed = plan("""\
        name: t
        steps:
          - Rest for 1 s
          - repeat: 2
            steps:
              - Charge at 1C for 1 h or until 4.2 V
        """)
    loop = parsed.steps[1]
    assert isinstance(loop, Loop)
    step = loop.body[0]
    assert isinstance(step, StepSpec)
    assert (step.text, step.line, loop.line) == ("Charge at 1C for 1 h or until 4.2 V", 6, 4)
    assert [c.line for group in step.until for c in group] == [6, 6]


# --- steps as mappings -----------------------------------------------------------------------


def test_mapping_step_from_the_language_reference() -> None:
    parsed = plan("""\
        name: t
        steps:
          - mode: cccv
            direction: charge
            current: 1C
            voltage: 4.2 V
            until: abs_current <= C/20
            for: 3 h
            label: full-charge
        """)
    assert parsed.steps[0] == StepSpec(
        StepMode.CCCV,
        ((Condition(Q.ABS_CURRENT, LE, C(0.05), 7),), (Condition(Q.STEP_TIME, GE, A(10800), 8),)),
        current=C(1),
        voltage=A(4.2),
        text="mode: cccv, direction: charge, current: 1C, voltage: 4.2 V, "
        "until: abs_current <= C/20, for: 3 h, label: full-charge",
        label="full-charge",
        line=3,
    )


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            "{mode: cc, current: -2 A, for: 1 h}",
            StepSpec(StepMode.CC, ((cond(Q.STEP_TIME, GE, A(3600)),),), current=A(-2)),
        ),
        (
            "{mode: cc, direction: discharge, current: 2 A, for: 1 h}",
            StepSpec(StepMode.CC, ((cond(Q.STEP_TIME, GE, A(3600)),),), current=A(-2)),
        ),
        (
            "{mode: cp, direction: Discharge, power: 5 W, until: voltage < 3 V}",
            StepSpec(StepMode.CP, ((cond(Q.VOLTAGE, LE, A(3)),),), power=A(-5)),
        ),
        (
            "{mode: cv, voltage: 4.2 V, current: 1 A, until: abs_current <= 50 mA}",
            StepSpec(
                StepMode.CV, ((cond(Q.ABS_CURRENT, LE, A(0.05)),),), voltage=A(4.2), current=A(1)
            ),
        ),
        (
            "{mode: cr, resistance: 2 Ohm, until: voltage <= 2.5 V}",
            StepSpec(StepMode.CR, ((cond(Q.VOLTAGE, LE, A(2.5)),),), resistance=A(2)),
        ),
        (
            "{mode: REST, until: voltage >= 3.6 V}",
            StepSpec(StepMode.REST, ((cond(Q.VOLTAGE, GE, A(3.6)),),)),
        ),
        (
            "{mode: cc, current: 1C, until: voltage >= 4.2 V and abs_current < 0.1 A "
            "or step_time > 1 h}",
            StepSpec(
                StepMode.CC,
                (
                    (cond(Q.VOLTAGE, GE, A(4.2)), cond(Q.ABS_CURRENT, LE, A(0.1))),
                    (cond(Q.STEP_TIME, GE, A(3600)),),
                ),
                current=C(1),
            ),
        ),
        (
            "{mode: cc, current: 1C, until: [voltage >= 4.2 V, "
            "temperature > 45 °C AND test_time >= 10 s]}",
            StepSpec(
                StepMode.CC,
                (
                    (cond(Q.VOLTAGE, GE, A(4.2)),),
                    (cond(Q.TEMPERATURE, GE, A(45)), cond(Q.TEST_TIME, GE, A(10))),
                ),
                current=C(1),
            ),
        ),
    ],
)
def test_mapping_steps(mapping: str, expected: StepSpec) -> None:
    assert one_step(mapping) == expected


_THRESHOLDS = {
    Dimension.VOLTAGE: ("3 V", A(3)),
    Dimension.CURRENT: ("C/10", C(0.1)),
    Dimension.POWER: ("-2 W", A(-2)),
    Dimension.TEMPERATURE: ("-5 °C", A(-5)),
    Dimension.TIME: ("2 min", A(120)),
    Dimension.CHARGE: ("100 mAh", A(0.1)),
    Dimension.ENERGY: ("1 Wh", A(1)),
    Dimension.VOLTAGE_RATE: ("-6 mV/min", A(-0.0001)),
    Dimension.TEMPERATURE_RATE: ("3 K/min", A(0.05)),
    Dimension.COUNT: ("10", A(10)),
}


@pytest.mark.parametrize("quantity", list(QUANTITY_DIMENSIONS))
def test_every_quantity_in_conditions(quantity: Quantity) -> None:
    text, value = _THRESHOLDS[QUANTITY_DIMENSIONS[quantity]]
    step = one_step(f"{{mode: rest, until: {quantity} <= {text}}}")
    assert step.until == ((cond(quantity, LE, value),),)


def test_loops() -> None:
    parsed = bare(
        plan("""\
        name: t
        steps:
          - repeat: 3
            steps:
              - Rest for 1 s
              - repeat: 2
                cycle: false
                steps: [Rest for 2 s]
        """)
    )
    rest = StepSpec(StepMode.REST, ((cond(Q.STEP_TIME, GE, A(1)),),))
    inner = Loop(2, (StepSpec(StepMode.REST, ((cond(Q.STEP_TIME, GE, A(2)),),)),), cycle=False)
    assert parsed.steps == (Loop(3, (rest, inner), cycle=True),)


def test_plan_header() -> None:
    parsed = plan("""\
        name: CC-CV cycling
        capacity: 2500 mAh
        limits:
          voltage_max: 4.25 V
          voltage_min: 2450 mV
          current_max: 2C
          temperature_max: 60 °C
          temperature_min: -20 degC
        steps: [Rest for 1 s]
        """)
    assert parsed.name == "CC-CV cycling"
    assert parsed.capacity_ah == 2.5
    assert parsed.limits == SafetyLimits(*map(Limit, (A(4.25), A(2.45), C(2), A(60), A(-20))))
    assert parsed.source == "plan.yaml"
    assert parsed.text.startswith("name: CC-CV cycling\n")


def test_limits_compare_c_rates_with_amperes_through_the_capacity() -> None:
    text = "name: t\n{}limits: {{current_max: 3 A}}\nsteps: [Charge at 2C until 4.2 V]\n"
    assert parse_plan(text.format("")).steps  # no capacity: checked when the battery is known
    with pytest.raises(PlanError, match=r"2 C exceeds limits\.current_max 3 A"):
        parse_plan(text.format("capacity: 2.5 Ah\n"))


# --- rejections ------------------------------------------------------------------------------

_ERRORS = [
    # YAML features and syntax
    ("name: t\nsteps:\n  - &a Rest for 1 s\n  - *a\n", 3, "", "anchors and aliases"),
    ("name: t\nsteps:\n  - !!str Rest for 1 s\n", 3, "", "YAML tags are not allowed"),
    (
        "name: [t\nsteps:\n",
        2,
        "",
        "invalid YAML: while parsing a flow sequence: expected ',' or ']', but got ':'",
    ),
    ("name: t\n---\nname: u\n", 2, "", "expected a single document"),
    ("name: t\nsteps:\n  - Rest \x00for 1 s\n", 3, "", "special characters are not allowed"),
    ("[" * 200, 1, "", "nested deeper than 64 levels"),
    ("", 0, "", "the plan is empty"),
    ("# only a comment\n", 0, "", "the plan is empty"),
    ("- Rest for 1 s\n", 1, "", "expected a mapping, got a list"),
    ("? [a]\n: b\n", 1, "", "expected a name as key, got a list"),
    # keys
    (
        "name: t\nname: u\nsteps: [Rest for 1 s]\n",
        2,
        "name",
        "duplicate key 'name' (first at line 1)",
    ),
    ("name: t\nstesp: [Rest for 1 s]\n", 2, "stesp", "unknown key 'stesp' (did you mean 'steps'?)"),
    (
        "name: t\nlimits: {voltage_mx: 4 V}\nsteps: [Rest for 1 s]\n",
        2,
        "limits.voltage_mx",
        "did you mean 'voltage_max'?",
    ),
    (
        "name: t\nsteps:\n  - mode: cc\n    curent: 1 A\n",
        4,
        "steps[0].curent",
        "unknown key 'curent' (did you mean 'current'?)",
    ),
    (
        "name: t\nsteps:\n  - mode: rest\n    for: 1 s\n    for: 2 s\n",
        5,
        "steps[0].for",
        "duplicate key 'for' (first at line 4)",
    ),
    ("steps: [Rest for 1 s]\n", 1, "name", "missing: a plan needs 'name'"),
    ("name: t\n", 1, "steps", "missing: a plan needs 'steps'"),
    # types and values
    ("name: t\nsteps: Rest for 1 s\n", 2, "steps", "expected a list of steps, got 'Rest for 1 s'"),
    ("name: t\nsteps: []\n", 2, "steps", "no steps: give at least one"),
    ("name:\nsteps: [Rest for 1 s]\n", 1, "name", "expected a name, got nothing"),
    ("name: ''\nsteps: [Rest for 1 s]\n", 1, "name", "must not be empty"),
    ("name: [a]\nsteps: [Rest for 1 s]\n", 1, "name", "expected a name, got a list"),
    (
        "name: t\ncapacity: 2.5\nsteps: [Rest for 1 s]\n",
        2,
        "capacity",
        "missing unit: expected a charge like '1.2 Ah', got '2.5'",
    ),
    ("name: t\ncapacity: 0 Ah\nsteps: [Rest for 1 s]\n", 2, "capacity", "must be positive"),
    ("name: t\ncapacity: 1e-300 Ah\nsteps: [Rest for 1 s]\n", 2, "capacity",
     "1e-300 Ah is outside the physical range of a charge, 1e-06 Ah to 100000 Ah"),
    ("name: t\nlimits: [4 V]\nsteps: [Rest for 1 s]\n", 2, "limits", "expected a mapping"),
    (
        "name: t\nlimits:\n  current_max: 4 V\nsteps: [Rest for 1 s]\n",
        3,
        "limits.current_max",
        "expected a current like '2 A' or '1C', got '4 V' (a voltage)",
    ),
    (
        "name: t\nlimits:\n  current_max: -1 A\nsteps: [Rest for 1 s]\n",
        3,
        "limits.current_max",
        "must be positive",
    ),
    (
        "name: t\nlimits:\n  voltage_max: 3 V\n  voltage_min: 3 V\nsteps: [Rest for 1 s]\n",
        4,
        "limits.voltage_min",
        "must be below voltage_max",
    ),
    (
        "name: t\nlimits:\n  temperature_min: 60 °C\n  temperature_max: 0 °C\n"
        "steps: [Rest for 1 s]\n",
        3,
        "limits.temperature_min",
        "must be below temperature_max",
    ),
    # loops
    (
        "name: t\nsteps:\n  - Rest for 1 s\n  - repeat: 0\n    steps: [Rest for 1 s]\n",
        4,
        "steps[1].repeat",
        "must be between 1 and 2147483647, got 0",
    ),
    (
        "name: t\nsteps:\n  - repeat: -2\n    steps: [Rest for 1 s]\n",
        3,
        "steps[0].repeat",
        "must be between 1 and 2147483647, got -2",
    ),
    (
        "name: t\nsteps:\n  - repeat: 2.5\n    steps: [Rest for 1 s]\n",
        3,
        "steps[0].repeat",
        "expected a whole number of passes like 3 (or forever, with 'until'), got '2.5'",
    ),
    (
        "name: t\nsteps:\n  - repeat: '3'\n    steps: [Rest for 1 s]\n",
        3,
        "steps[0].repeat",
        "expected a whole number of passes like 3 (or forever, with 'until'), got '3'",
    ),
    (
        "name: t\nsteps:\n  - repeat: yes\n    steps: [Rest for 1 s]\n",
        3,
        "steps[0].repeat",
        "expected a whole number of passes",
    ),
    (
        "name: t\nsteps:\n  - repeat: 0x10\n    steps: [Rest for 1 s]\n",
        3,
        "steps[0].repeat",
        "expected a whole number of passes",
    ),
    (
        "name: t\nsteps:\n  - repeat: 1000000000000\n    steps: [Rest for 1 s]\n",
        3,
        "steps[0].repeat",
        "must be between 1 and 2147483647, got 1000000000000",  # out of range, not "not whole"
    ),
    (
        "name: t\nsteps:\n  - repeat: 3000000000\n    steps: [Rest for 1 s]\n",
        3,
        "steps[0].repeat",
        "must be between 1 and 2147483647",
    ),
    (
        "name: t\nsteps:\n  - repeat: 2\n    cycle: maybe\n    steps: [Rest for 1 s]\n",
        4,
        "steps[0].cycle",
        "expected true or false, got 'maybe'",
    ),
    ("name: t\nsteps:\n  - repeat: 2\n", 3, "steps[0].steps", "a loop needs the steps it repeats"),
    (
        "name: t\nsteps:\n  - repeat: 2\n    steps:\n      - repeat: 2\n        steps: []\n",
        6,
        "steps[0].steps[0].steps",
        "no steps",
    ),
    # kinds of mapping
    (
        "name: t\nsteps:\n  - mode: cc\n    repeat: 2\n",
        3,
        "steps[0]",
        "needs exactly one of 'mode', 'repeat', 'message', 'chamber', 'set', 'external'; found "
        "'mode' and 'repeat'",
    ),
    (
        "name: t\nsteps:\n  - mdoe: cc\n",
        3,
        "steps[0]",
        "found none; unknown key 'mdoe' (did you mean 'mode'?)",
    ),
    ("name: t\nsteps:\n  - [Rest for 1 s]\n", 3, "steps[0]", "expected a step"),
    ("name: t\nsteps:\n  -\n", 3, "steps[0]", "expected a step like 'Rest for 10 minutes'"),
    # mapping steps
    (
        "name: t\nsteps:\n  - mode: rset\n",
        3,
        "steps[0].mode",
        "expected rest or cc or cv or cccv or cp or cr or ramp or profile, got 'rset' (did you "
        "mean 'rest'?)",
    ),
    (
        "name: t\nsteps:\n  - mode: cc\n    current: 1 A\n",
        3,
        "steps[0]",
        "this step could run forever: give it an end with 'until' or 'for'",
    ),
    (
        "name: t\nsteps:\n  - mode: cc\n    for: 1 s\n",
        3,
        "steps[0].current",
        "missing: a cc step needs a current",
    ),
    (
        "name: t\nsteps:\n  - mode: cc\n    current: 1 A\n    voltage: 4 V\n",
        5,
        "steps[0].voltage",
        "a cc step takes no voltage",
    ),
    (
        "name: t\nsteps:\n  - mode: cccv\n    current: 1 A\n    voltage: 4.2 A\n",
        5,
        "steps[0].voltage",
        "expected a voltage like '4.2 V', got '4.2 A' (a current)",
    ),
    (
        "name: t\nsteps:\n  - mode: cv\n    direction: charge\n    voltage: 4 V\n",
        4,
        "steps[0].direction",
        "only cc, cccv and cp steps take a direction",
    ),
    (
        "name: t\nsteps:\n  - mode: cc\n    current: 1 A\n    direction: up\n",
        5,
        "steps[0].direction",
        "expected charge or discharge, got 'up'",
    ),
    (
        "name: t\nsteps:\n  - mode: cc\n    direction: discharge\n    current: -1 A\n",
        5,
        "steps[0].current",
        "with a direction, give the magnitude",
    ),
    (
        "name: t\nsteps:\n  - mode: cc\n    current: 0 A\n    for: 1 s\n",
        4,
        "steps[0].current",
        "must not be zero",
    ),
    (
        "name: t\nsteps:\n  - mode: cr\n    resistance: -1 Ohm\n    for: 1 s\n",
        4,
        "steps[0].resistance",
        "must be positive",
    ),
    (
        "name: t\nsteps:\n  - mode: cv\n    voltage: 4 V\n    current: -1 A\n    for: 1 s\n",
        5,
        "steps[0].current",
        "must be positive",
    ),
    (
        "name: t\nsteps:\n  - mode: rest\n    until: volts >= 4 V\n",
        4,
        "steps[0].until",
        "unknown quantity 'volts' (did you mean 'voltage'?)",
    ),
    (
        "name: t\nsteps:\n  - mode: rest\n    until: voltage == 4 V\n",
        4,
        "steps[0].until",
        "unknown comparison '=='; use >=, >, <= or <",
    ),
    (
        "name: t\nsteps:\n  - mode: rest\n    until: voltage >= 4 A\n",
        4,
        "steps[0].until",
        "voltage: expected a voltage like '4.2 V', got '4 A' (a current)",
    ),
    (
        "name: t\nsteps:\n  - mode: rest\n    until: 4.2 V\n",
        4,
        "steps[0].until",
        "expected a condition like 'voltage >= 4.2 V', got '4.2 V'",
    ),
    (
        "name: t\nsteps:\n  - mode: rest\n    until: voltage >= 4 V or\n",
        4,
        "steps[0].until",
        "expected a condition like 'voltage >= 4.2 V', got ''",
    ),
    ("name: t\nsteps:\n  - mode: rest\n    until: []\n", 4, "steps[0].until", "got an empty list"),
    (
        "name: t\nsteps:\n  - mode: rest\n    until:\n      - voltage >= 4 V\n      - x\n",
        6,
        "steps[0].until[1]",
        "expected a condition like",
    ),
    (
        "name: t\nsteps:\n  - mode: rest\n    for: 0 s\n",
        4,
        "steps[0].for",
        "a duration must be positive",
    ),
    (
        "name: t\nsteps:\n  - mode: rest\n    for: 1 s\n    label: two words\n",
        5,
        "steps[0].label",
        "a label is a name of letters",
    ),
    (
        "name: t\nsteps:\n  - {mode: rest, for: 1 s, label: a}\n"
        "  - {mode: rest, for: 1 s, label: a}\n",
        4,
        "steps[1].label",
        "label 'a' is already used at line 3",
    ),
    # text steps
    ("name: t\nsteps:\n  - Charge at 1C\n", 3, "steps[0]", "this step could run forever"),
    ("name: t\nsteps:\n  - Rset for 10 min\n", 3, "steps[0]", "(did you mean 'rest'?)"),
    (
        "name: t\nsteps:\n  - Rest 10 minutes\n",
        3,
        "steps[0]",
        "expected 'at', 'for' or 'until' after 'Rest'",
    ),
    ("name: t\nsteps:\n  - Rest at 1 A for 1 s\n", 3, "steps[0]", "a rest takes no setpoint"),
    ("name: t\nsteps:\n  - Rest until 3 V\n", 3, "steps[0]", "a rest ends after a duration"),
    (
        "name: t\nsteps:\n  - Charge for 1 h\n",
        3,
        "steps[0]",
        "expected 'Charge at <current, C-rate, power or resistance>'",
    ),
    (
        "name: t\nsteps:\n  - Charge at 4.2 V until 1 A\n",
        3,
        "steps[0]",
        "to hold a voltage, write 'Hold at 4.2 V'",
    ),
    (
        "name: t\nsteps:\n  - Charge at 10 min until 1 A\n",
        3,
        "steps[0]",
        "after 'at', expected a current, C-rate, power or resistance, got '10 min'",
    ),
    (
        "name: t\nsteps:\n  - Charge at 4 Ohm until 4.2 V\n",
        3,
        "steps[0]",
        "a constant resistance can only discharge",
    ),
    (
        "name: t\nsteps:\n  - Charge at -1C until 4.2 V\n",
        3,
        "steps[0]",
        "give the magnitude after 'at': 'Charge' sets the sign",
    ),
    (
        "name: t\nsteps:\n  - Charge at 1 W to 4.2 V until 1 Ah\n",
        3,
        "steps[0]",
        "'to <voltage>' (CC-CV) needs a current",
    ),
    (
        "name: t\nsteps:\n  - Charge at 1C to 4.2 A until C/20\n",
        3,
        "steps[0]",
        "after 'to': expected a voltage like '4.2 V', got '4.2 A'",
    ),
    (
        "name: t\nsteps:\n  - Charge at 1C at 2C until 4.2 V\n",
        3,
        "steps[0]",
        "expected one value after 'at'",
    ),
    (
        "name: t\nsteps:\n  - Hold at 4.2 V to 3 V until 1 A\n",
        3,
        "steps[0]",
        "expected 'Hold at <voltage>'",
    ),
    (
        "name: t\nsteps:\n  - Hold at 1 A until 1 A\n",
        3,
        "steps[0]",
        "after 'Hold at': expected a voltage like '4.2 V', got '1 A'",
    ),
    (
        "name: t\nsteps:\n  - Charge at 1C until 10 min\n",
        3,
        "steps[0]",
        "(a duration follows 'for')",
    ),
    (
        "name: t\nsteps:\n  - Charge at 1C until 5 W\n",
        3,
        "steps[0]",
        "after 'until', expected a voltage, a current or C-rate, a charge (Ah) or an energy (Wh)",
    ),
    ("name: t\nsteps:\n  - Charge at 1C until -1 A\n", 3, "steps[0]", "must be positive"),
    (
        "name: t\nsteps:\n  - Charge at 1C until 4.2 V and 1 A\n",
        3,
        "steps[0]",
        "text steps join their ends with 'or' only",
    ),
    (
        "name: t\nsteps:\n  - Charge at 1C until 4.2 V until 1 A\n",
        3,
        "steps[0]",
        "join terms with 'or'",
    ),
    ("name: t\nsteps:\n  - Charge at 1C or until 4.2 V\n", 3, "steps[0]", "'or' must join two"),
    (
        "name: t\nsteps:\n  - Charge at 1C until 4.2 V or\n",
        3,
        "steps[0]",
        "expected 'for' or 'until' after 'or'",
    ),
    (
        "name: t\nsteps:\n  - Charge at 1C for 4.2 V\n",
        3,
        "steps[0]",
        "after 'for': expected a duration like '10 min', got '4.2 V' (a voltage)",
    ),
    ("name: t\nsteps:\n  - Charge at 1C until\n", 3, "steps[0]", "expected a value after 'until'"),
    (
        "name: t\nsteps:\n  - Charge at 1C for 1 h to 4.2 V\n",
        3,
        "steps[0]",
        "'to' must come before 'for' and 'until'",
    ),
    ("name: t\nsteps:\n  - Charge at nan A until 4 V\n", 3, "steps[0]", "not a finite number"),
    (
        "name: t\nsteps:\n  - Charge at \uff11 A until 4 V\n",
        3,
        "steps[0]",
        "expected a number with a unit",
    ),
    # setpoints beyond the safety limits
    (
        "name: t\nlimits: {voltage_max: 4.25 V}\nsteps:\n  - Rest for 1 s\n"
        "  - Hold at 4.3 V for 1 h\n",
        5,
        "steps[1]",
        "4.3 V is above limits.voltage_max",
    ),
    (
        "name: t\nlimits: {voltage_min: 2.5 V}\nsteps:\n  - {mode: cv, voltage: 2 V, for: 1 h}\n",
        4,
        "steps[0].voltage",
        "2 V is below limits.voltage_min",
    ),
    (
        "name: t\nlimits: {current_max: 2C}\nsteps:\n  - Discharge at 3C until 2.5 V\n",
        4,
        "steps[0]",
        "-3 C exceeds limits.current_max 2 C",
    ),
]


@pytest.mark.parametrize(("text", "line", "path", "message"), _ERRORS)
def test_rejections_name_line_and_field(text: str, line: int, path: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(text, "plan.yaml")
    error = caught.value
    assert (error.file, error.line, error.field) == ("plan.yaml", line, path), error
    assert message in error.message


def test_error_text_reads_file_line_field() -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan("name: t\nsteps:\n  - Charge at 1C\n", "plans/x.yaml")
    assert str(caught.value) == (
        "plans/x.yaml:3: steps[0]: this step could run forever: "
        "give it an end with 'until' or 'for'"
    )


def test_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_bytes(b"\xef\xbb\xbfname: t\nsteps: [Rest for 1 s]\n")  # with a UTF-8 BOM
    parsed = load_plan(good)
    assert (parsed.source, parsed.text) == (str(good), "name: t\nsteps: [Rest for 1 s]\n")

    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"name: t\nsteps: [Rest for 1 s]\n# r\xe9sum\xe9\n")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"name: t\nsteps: [Rest for 1 s]\n" + b"#" * MAX_PLAN_BYTES)
    for path, line, message in [
        (latin1, 3, "the plan is not UTF-8 text"),
        (big, 0, "the plan is larger than 1048576 bytes"),
        (tmp_path / "missing.yaml", 0, "cannot read the plan: No such file or directory"),
        (tmp_path, 0, "cannot read the plan"),
    ]:
        with pytest.raises(PlanError) as caught:
            load_plan(path)
        assert (caught.value.file, caught.value.line) == (str(path), line)
        assert message in caught.value.message
    with pytest.raises(PlanError, match="larger than"):
        parse_plan("#" * (MAX_PLAN_BYTES + 1))


# --- normal form -----------------------------------------------------------------------------


def test_normal_form() -> None:
    parsed = plan("""\
        name: 'yes'
        capacity: 2500 mAh
        limits: {voltage_max: 4.25 V, current_max: 5 A, temperature_max: 60 degC}
        steps:
          - Discharge at 5 W for 10 minutes or until 2.5 V
          - repeat: 2
            cycle: false
            steps:
              - {mode: cccv, direction: charge, current: C/20, voltage: 4.2 V,
                 until: voltage >= 4.2 V and abs_current < 100 mA, for: 1 h, label: top}
        """)
    assert dump_plan(parsed) == textwrap.dedent("""\
        name: 'yes'
        capacity: 2.5 Ah
        limits:
          voltage_max: 4.25 V
          current_max: 5 A
          temperature_max: 60 °C
        steps:
        - mode: cp
          power: -5 W
          until: step_time >= 600 s or voltage <= 2.5 V
        - repeat: 2
          cycle: false
          steps:
          - mode: cccv
            current: 0.05 C
            voltage: 4.2 V
            until: voltage >= 4.2 V and abs_current <= 0.1 A or step_time >= 3600 s
            label: top
        """)


@pytest.mark.parametrize("path", [*sorted(PLANS.glob("*.yaml")), DEMO], ids=lambda path: path.name)
def test_example_plans_parse_and_round_trip(path: Path, tables: TableLoader) -> None:
    parsed = load_plan(path, tables=tables)
    assert bare(parse_plan(dump_plan(parsed), str(path), tables=tables)) == bare(parsed)


def test_demo_plan() -> None:
    parsed = load_plan(DEMO)
    assert parsed.capacity_ah == 2.5
    assert parsed.limits == SafetyLimits(*map(Limit, (A(4.25), A(2.45), C(2), A(60))))
    first, loop = parsed.steps
    assert isinstance(first, StepSpec) and first.mode is StepMode.REST
    assert isinstance(loop, Loop) and loop.count == 3
    assert [step.mode for step in loop.body if isinstance(step, StepSpec)] == [
        StepMode.CCCV,
        StepMode.REST,
        StepMode.CC,
        StepMode.REST,
    ]


_positive = st.floats(min_value=1e-9, max_value=1e9, allow_nan=False)
_signed = st.builds(lambda x, negative: -x if negative else x, _positive, st.booleans())


def _values(dimension: Dimension) -> st.SearchStrategy[Value]:
    rates = st.booleans() if dimension is Dimension.CURRENT else st.just(False)
    return st.builds(Value, st.floats(allow_nan=False, allow_infinity=False), rates)


@st.composite
def _conditions(draw: st.DrawFn) -> Condition:
    quantity = draw(st.sampled_from(list(QUANTITY_DIMENSIONS)))
    value = draw(_values(QUANTITY_DIMENSIONS[quantity]))
    return Condition(quantity, draw(st.sampled_from(Op)), value)


_until = st.lists(
    st.lists(_conditions(), min_size=1, max_size=3).map(tuple), min_size=1, max_size=3
).map(tuple)
_currents = st.builds(Value, _signed, st.booleans())
_magnitudes = st.builds(Value, _positive)
_specs = st.one_of(
    st.builds(StepSpec, st.just(StepMode.REST), _until),
    st.builds(StepSpec, st.just(StepMode.CC), _until, current=_currents),
    st.builds(
        StepSpec,
        st.just(StepMode.CV),
        _until,
        voltage=_magnitudes,
        current=st.none() | st.builds(Value, _positive, st.booleans()),
    ),
    st.builds(StepSpec, st.just(StepMode.CCCV), _until, current=_currents, voltage=_magnitudes),
    st.builds(StepSpec, st.just(StepMode.CP), _until, power=st.builds(Value, _signed)),
    st.builds(StepSpec, st.just(StepMode.CR), _until, resistance=_magnitudes),
)


_durations = st.floats(1e-3, 1e6)
_capacities = st.floats(1e-6, 1e5)  # the physical range of a capacity
_ramps = st.builds(
    lambda q, a, b, over, rate, until: StepSpec(
        StepMode.PROFILE, until, profile=ProfileSpec(
            q, (0.0, over), (abs(a), abs(b)) if q is ProfileQuantity.VOLTAGE else (a, b),
            per_capacity=rate and q is ProfileQuantity.CURRENT)),
    st.sampled_from(ProfileQuantity), _signed, _signed, _durations, st.booleans(),
    st.just(()) | _until)
_chambers = st.builds(
    lambda t, humidity, band_k, band_pct, stable, extra: StepSpec(
        StepMode.REST, (), chamber=ChamberSpec(
            t, humidity, band_k, None if humidity is None else band_pct, stable, stable + extra)),
    st.floats(-80, 200), st.none() | st.floats(0, 100), _positive, st.floats(1e-3, 100),
    _durations, _durations)
_others = st.one_of(
    st.builds(Message, st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
                               min_size=1, max_size=50).filter(str.strip)),
    st.builds(lambda text: SetStep((("capacity", _set_expression(text)),)),
              st.sampled_from([q.value for q in Quantity if q.endswith("_ah")])
              | _positive.map(lambda ah: f"{ah!r} Ah")),
)
def _set_expression(text: str) -> Expr:
    return parse_expression(text, {}, quantities={q.value: d for q, d in
                                                 QUANTITY_DIMENSIONS.items()}, sample=True)


_loops = st.builds(
    lambda count, until: (count, until if count is not None else until or (
        (Condition(Quantity.CYCLE, Op.GE, Value(3.0)),),)),
    st.none() | st.integers(1, 10**6), st.just(()) | _until)
_trees: st.SearchStrategy[list[Node]] = st.recursive(
    st.lists(_specs | _ramps | _chambers, min_size=1, max_size=3),
    lambda children: st.lists(
        _specs | _ramps | _chambers | _others
        | st.builds(lambda loop, body, cycle: Loop(loop[0], body, cycle, until=loop[1]),
                    _loops, children.map(tuple).filter(runs_channel), st.booleans()),
        min_size=1,
        max_size=3,
    ),
    max_leaves=8,
)


@st.composite
def _plans(draw: st.DrawFn) -> Plan:
    steps = draw(_trees)
    labels = iter(f"step-{index}" for index in range(100))
    steps = [_label(node, labels, draw(st.booleans())) for node in steps]
    name = draw(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1,
                max_size=255).filter(lambda name: name.strip() == name != "")
    )
    limits = SafetyLimits(
        temperature_max=draw(st.none() | st.builds(Limit, st.builds(Value, st.floats(0, 100)))),
        voltage_max=draw(st.none() | st.builds(Limit, st.none() | st.builds(Value, _signed),
                                               st.just(True), st.just(0.0) | _durations)),
    )
    return Plan(name, tuple(steps), limits, draw(st.none() | _capacities))


def _label(node: Node, labels: Iterator[str], labelled: bool) -> Node:
    if isinstance(node, Loop):
        return replace(node, body=tuple(_label(child, labels, labelled) for child in node.body))
    if isinstance(node, StepSpec) and labelled:
        return replace(node, label=next(labels))
    return node


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plans())
def test_generated_plans_round_trip(generated: Plan) -> None:
    assert bare(parse_plan(dump_plan(generated))) == bare(generated)


# --- fuzzing ---------------------------------------------------------------------------------


def _assert_runnable(parsed: Plan) -> None:
    """Every step of a parsed plan makes a valid channel setpoint and has an end."""

    def walk(nodes: tuple[Node, ...]) -> None:
        for node in nodes:
            if isinstance(node, Loop):
                assert node.count is None or node.count >= 1
                assert node.count is not None or node.until
                walk(node.body)
            elif isinstance(node, StepSpec):
                assert node.ends and all(node.until)
                step = hal_step(node, Scope(capacity_ah=2.5))  # the runner's conversion
                assert isinstance(step, Step)

    assert parsed.steps
    walk(parsed.steps)
    Program.compile(parsed)  # the flow is sound


def _parse_or_reject(text: str) -> None:
    try:
        parsed = parse_plan(text)
    except PlanError as error:
        assert error.message
        return
    _assert_runnable(parsed)


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=200)
    | st.text(st.sampled_from("name:steps- []{}&*!|>'\"#\n\t,?%@`~0.CV/\\"), max_size=200)
)
def test_any_text_gives_a_plan_or_a_plan_error(text: str) -> None:
    _parse_or_reject(text)


# Plan-shaped input: every slot mostly holds a value that fits it and sometimes a mistake, so
# that a good share of examples are valid plans (checked to be runnable) and the rest are near
# misses that reach deep into the parser.
_MISTAKES = [
    "1C",
    "4.2 V",
    "-1 A",
    "0 A",
    "5 W",
    "10 min",
    "0 s",
    "nan V",
    "1e999 A",
    "4.2",
    "x",
    "",
    "to",
    "and",
]
_DURATIONS = ["10 min", "1 s", "2 hours"]
_CURRENTS = ["1C", "C/20", "50 mA", "2 A"]
_VOLTAGES = ["4.2 V", "2.5 V", "3.7 V"]
_SETPOINT_VALUES = {
    "current": _CURRENTS,
    "voltage": _VOLTAGES,
    "power": ["5 W", "1 kW"],
    "resistance": ["4 Ohm", "50 mOhm"],
}
_NEEDS = {
    "cc": ["current"],
    "cv": ["voltage"],
    "cccv": ["current", "voltage"],
    "cp": ["power"],
    "cr": ["resistance"],
}


# True one time in ten (st.one_of and st.integers do not draw their choices evenly).
_rarely = st.sampled_from([False] * 9 + [True])


@st.composite
def _slot(draw: st.DrawFn, fitting: list[str]) -> str:
    """Mostly one of the ``fitting`` values, sometimes a mistake."""
    if draw(_rarely):
        return draw(st.sampled_from(_MISTAKES) | st.text(max_size=6))
    return draw(st.sampled_from(fitting))


_text_ends = st.lists(
    _slot(_DURATIONS).map("for {}".format)
    | _slot([*_VOLTAGES, *_CURRENTS, "1 Ah", "5 Wh"]).map("until {}".format),
    min_size=1,
    max_size=3,
).map(" or ".join)
_step_texts = st.one_of(
    st.builds("Rest for {}".format, _slot(_DURATIONS)),
    st.builds(
        "{} at {}{} {}".format,
        _slot(["Charge", "Discharge", "discharge"]),
        _slot([*_CURRENTS, "5 W", "4 Ohm"]),
        st.just("") | _slot(_VOLTAGES).map(" to {}".format),
        _text_ends,
    ),
    st.builds("Hold at {} {}".format, _slot(_VOLTAGES), _text_ends),
)
_condition_texts = st.lists(
    st.builds(
        "{} {} {}".format,
        st.sampled_from([*QUANTITY_DIMENSIONS, "volts"]),
        st.sampled_from([">=", "<=", ">", "<", "=="]),
        _slot([*_VOLTAGES, *_DURATIONS]),
    ),
    min_size=1,
    max_size=3,
).map(" or ".join)


_actions = _slot(["next", "end loop", "end test", "goto step-a", "goto nowhere"])
_until_items = _condition_texts | st.fixed_dictionaries(
    {"when": _condition_texts, "then": _actions})


@st.composite
def _mode_steps(draw: st.DrawFn) -> dict[str, object]:
    mode = draw(_slot(["rest", "cc", "cv", "cccv", "cp", "cr", "ramp"]))
    step: dict[str, object] = {"mode": mode}
    for key in _NEEDS.get(mode, []):
        if not draw(_rarely):
            step[key] = draw(_slot(_SETPOINT_VALUES[key]))
    if mode == "ramp":
        values = draw(st.sampled_from([_CURRENTS, _VOLTAGES, ["0 A", "-1C"], ["5 W", "-5 W"]]))
        step |= {"from": draw(_slot(values)), "to": draw(_slot(values)),
                 "over": draw(_slot(_DURATIONS))}
    if not draw(_rarely):
        step["until"] = draw(_condition_texts | st.lists(_until_items, max_size=2))
    if draw(_rarely):
        step["label"] = draw(st.sampled_from(["step-a", "step-b"]))
    if draw(st.booleans()):
        step["for"] = draw(_slot(_DURATIONS))
    if draw(_rarely):
        key = draw(st.sampled_from(["direction", "label", "bogus", *_SETPOINT_VALUES]))
        step[key] = draw(_slot(["charge", "discharge", "a", *_CURRENTS]))
    return step


_other_steps = st.one_of(
    st.fixed_dictionaries({"message": _slot(["hello"])}),
    st.fixed_dictionaries({"set": st.fixed_dictionaries(
        {"capacity": _slot(["2 Ah", "step_discharge_ah", "cycle", "0 Ah"])})}),
    st.fixed_dictionaries(
        {"chamber": _slot(["25 °C", "-10 °C"]), "timeout": _slot(_DURATIONS)},
        optional={"stable": _slot(_DURATIONS), "within": _slot(["0.5 K", "1 °C"]),
                  "humidity": _slot(["50 %", "120 %"])}),
)
_step_lists = st.recursive(
    st.lists(_step_texts | _mode_steps() | _other_steps, min_size=1, max_size=3),
    lambda children: st.lists(
        _step_texts
        | _mode_steps()
        | _other_steps
        | st.fixed_dictionaries(
            {"repeat": st.integers(1, 3) | st.sampled_from([0, "2", 2.5, None, "forever"]),
             "steps": children},
            optional={"cycle": st.booleans() | st.just("maybe"),
                      "until": _slot(["cycle >= 2", "cycle_discharge_ah < 80 % of first",
                                      "voltage <= 80 % of first"])},
        ),
        min_size=1,
        max_size=3,
    ),
    max_leaves=6,
)
_limit_sets = st.fixed_dictionaries(
    {},
    optional={
        "voltage_max": _slot(["4.3 V", "battery + 0.05 V", "4.3 V for 2 s"]),
        "voltage_min": _slot(["2 V", "battery"]),
        "current_max": _slot(["3C", "10 A", "battery - 1 A for 100 ms"]),
        "temperature_max": _slot(["60 °C", "battery for 1 min"]),
    },
)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {"name": _slot(["t"]), "steps": _step_lists},
        optional={"capacity": _slot(["2.5 Ah"]), "limits": _limit_sets},
    )
)
def test_any_plan_shaped_yaml_gives_a_plan_or_a_plan_error(document: dict[str, object]) -> None:
    _parse_or_reject(yaml.safe_dump(document, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.lists(_step_texts, min_size=1, max_size=3))
def test_any_text_steps_give_a_plan_or_a_plan_error(steps: list[str]) -> None:
    _parse_or_reject(yaml.safe_dump({"name": "t", "steps": steps}))
