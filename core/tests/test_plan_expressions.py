"""Plan expressions and user variables: parsing, dimensions, errors, resolution, cursor state."""

from __future__ import annotations

import math
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellbench_core.plan import Plan, PlanError, SetStep, StepSpec, parse_plan
from cellbench_core.plan.dimensions import QUANTITY_DIMENSIONS
from cellbench_core.plan.expr import (
    Computed,
    Const,
    Expr,
    ExprError,
    Must,
    Scope,
    parse_expression,
    product,
    quotient,
)
from cellbench_core.plan.program import Program
from cellbench_core.runner.cursor import Cursor
from cellbench_core.storage.records import BatteryRecord
from cellbench_core.units import Dimension as D

QUANTITIES = {q.value: d for q, d in QUANTITY_DIMENSIONS.items()}
BATTERY = BatteryRecord(1, "cell", "NMC", 2.5, 3.6, 4.2, 2.5, 5.0, None, 45.0, {}, 0.0)


def expr(text: str, *, sample: bool = False, **variables: D) -> Expr:
    return parse_expression(text, variables, quantities=QUANTITIES, sample=sample)


@pytest.mark.parametrize(("text", "variables", "dimension", "value"), [
    ("2 Ah / 1 h", {}, D.CURRENT, 2.0),
    ("0.5C * q", {"q": 2.0}, D.CURRENT, 1.0),
    ("C/20 * q", {"q": 2.0}, D.CURRENT, 0.1),
    ("q / 2 h", {"q": 2.0}, D.CURRENT, 1.0),
    ("2 A * 30 min", {}, D.CHARGE, 1.0),
    ("4 V * 2 A", {}, D.POWER, 8.0),
    ("10 W * 1 h", {}, D.ENERGY, 10.0),
    ("7.4 Wh / q", {"q": 2.0}, D.VOLTAGE, 3.7),
    ("50 mV / 1 A", {}, D.RESISTANCE, 0.05),
    ("1 mV/s * 10 min", {}, D.VOLTAGE, 0.6),
    ("2 A / q", {"q": 2.0}, D.C_RATE, 1.0),
    ("q / q", {"q": 2.0}, D.COUNT, 1.0),
    ("-(q - 3 Ah)", {"q": 2.0}, D.CHARGE, 1.0),
    ("max(battery.voltage_max - 50 mV, 4 V)", {}, D.VOLTAGE, 4.15),
    ("min(1 A, 2 A, abs(-0.5 A))", {}, D.CURRENT, 0.5),
    ("capacity * 0.8", {}, D.CHARGE, 2.4),
    ("2 hours + 30 Min", {}, D.TIME, 9000.0),
    ("25 °C - 5 °C", {}, D.TEMPERATURE, 20.0),
])
def test_expressions_have_a_dimension_and_a_value(text: str, variables: dict[str, float],
                                                   dimension: D, value: float) -> None:
    parsed = parse_expression(text, dict.fromkeys(variables, D.CHARGE), quantities=QUANTITIES)
    assert parsed.dimension is dimension
    assert parsed.variables == frozenset(variables)
    scope = Scope(variables, capacity_ah=3.0, battery=BATTERY)
    assert parsed.evaluate(scope) == pytest.approx(value, rel=1e-12)


def test_parts_without_names_are_computed_once() -> None:
    assert expr("(1 V + 2 V) * 2").tree == Const(6.0)
    # names ignore case, as quantities in conditions do
    assert expr("Q * (1 h / 2 h)", q=D.CHARGE).evaluate(Scope({"q": 4.0})) == 2.0


def test_set_steps_read_the_last_sample() -> None:
    parsed = expr("cycle_discharge_ah * 0.9", sample=True)
    assert parsed.evaluate(Scope(sample={"cycle_discharge_ah": 2.0}.__getitem__)) == 1.8
    with pytest.raises(ExprError, match="cycle_discharge_ah has no value on the last sample"):
        parsed.evaluate(Scope(sample=lambda _: math.nan))


@pytest.mark.parametrize(("text", "message"), [
    ("", "expected an expression after '=', got nothing"),
    ("q + 1 V", "'=q + 1 V': cannot add a charge and a voltage"),
    ("1 V - 1 A", "cannot subtract a voltage and a current"),
    ("1 V * 1 V", "cannot multiply a voltage by a voltage"),
    ("1 / 1 A", "cannot divide a number by a current"),
    ("25 °C / 5 °C", "cannot divide a temperature by a temperature"),
    ("1 V / 0", "'=1 V / 0': division by zero"),
    ("1 V / (2 - 2)", "division by zero"),
    ("1e308 V * 10", "a part without names is too large to compute"),
    ("1e999 V", "'1e999 V' is not a finite number"),
    ("nan V", "not an expression"),
    ("q_mess", "unknown name 'q_mess' (did you mean 'q_meas'?): a variable must be set by a set "
     "step earlier in the plan"),
    ("cycle_discharge_ah", "cycle_discharge_ah is a quantity of the last sample, which only a "
     "set step reads; store it first, e.g. set: {my_cycle_discharge_ah: cycle_discharge_ah}"),
    ("battery.u_max", "unknown battery field 'u_max'; battery fields are capacity, "
     "voltage_nominal, voltage_max"),
    ("battery", "write battery.<field>, one of capacity"),
    ("q_meas.x", "only battery.<field> has fields; got 'q_meas.x'"),
    ("min(1 V)", "min() takes two or more arguments, got 1"),
    ("abs(1 V, 2 V)", "abs() takes one argument, got 2"),
    ("max(1 V, 1 A)", "max() of values of different kinds: a current, a voltage"),
    ("sqrt(4 V)", "unknown function 'sqrt'; the functions are min, max and abs"),
    ("min", "min is a function: write min(...)"),
    ("2 ** 3", "not an expression like '0.5C * q_meas'"),
    ("q_meas if q_meas else 1 Ah", "'q_meas if q_meas else 1 Ah' is not supported"),
    ("None", "unknown name 'none'"),  # names ignore case, as quantities do
    ("__import__('os')", "names start with a letter, got '__import__'"),
    ("q_meas; 1", "unexpected character ';' at position 7"),
    ("ｑ_meas", "unexpected character 'ｑ' at position 1"),
    ("2 m", "not an expression"),
    ("1 V" + " + 1 V" * 80, "longer than 400 characters"),
])
def test_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ExprError) as caught:
        expr(text, q=D.CHARGE, q_meas=D.CHARGE)
    assert message in str(caught.value)


def test_what_cannot_be_computed_at_run_time_is_an_error() -> None:
    with pytest.raises(ExprError, match="variable 'q' has no value yet"):
        expr("q * 2", q=D.CHARGE).evaluate(Scope())
    with pytest.raises(ExprError, match="battery.voltage_max needs a battery, and the test has"):
        expr("battery.voltage_max").evaluate(Scope())
    with pytest.raises(ExprError, match="battery 'cell' has no registered current_max_discharge"):
        expr("battery.current_max_discharge").evaluate(Scope(battery=BATTERY))
    with pytest.raises(ExprError, match="no capacity is known"):
        expr("capacity").evaluate(Scope())
    with pytest.raises(ExprError, match="division by zero"):
        expr("1 V / q", q=D.COUNT).evaluate(Scope({"q": 0.0}))
    with pytest.raises(ExprError, match="gives inf, not a finite number"):
        expr("q * 1e300", q=D.COUNT).evaluate(Scope({"q": 1e300}))


def test_computed_setpoints_check_their_sign() -> None:
    # a C-rate: on the capacity
    rate = Computed(expr("0.5C * q / q", q=D.CHARGE), Must.POSITIVE, -1.0)
    assert rate.resolve(Scope({"q": 1.0}, capacity_ah=2.0)) == -1.0
    with pytest.raises(ExprError, match="a C-rate needs the battery's capacity"):
        rate.resolve(Scope({"q": 1.0}))
    with pytest.raises(ExprError, match=r"gives -1, which must be positive \(the direction"):
        Computed(expr("-q", q=D.CURRENT), Must.POSITIVE, 1.0).resolve(Scope({"q": 1.0}))
    with pytest.raises(ExprError, match="gives 0 \\(a step that does nothing is a rest\\)"):
        Computed(expr("q", q=D.CURRENT), Must.NONZERO).resolve(Scope({"q": 0.0}))


def test_the_dimension_algebra_is_symmetric_and_closed() -> None:
    for a in D:
        for b in D:
            found = product(a, b)
            assert found == product(b, a)
            if found is not None and D.COUNT not in (a, b):
                c, factor = found
                for divisor, result in ((a, b), (b, a)):
                    back = quotient(c, divisor)
                    assert back is not None and back[0] is result
                    assert back[1] == pytest.approx(1 / factor)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([*"qC0123456789.eE+-*/(), _VAhsm%°", "min", "max", "abs",
                                 "q_meas", "battery.", "capacity", "voltage"]),
                max_size=40).map("".join) | st.text(max_size=60))
def test_any_text_gives_an_expression_or_an_error(text: str) -> None:
    try:
        parsed = expr(text, q_meas=D.CHARGE)
    except ExprError as error:
        assert str(error)
        return
    try:
        value = parsed.evaluate(Scope({"q_meas": 2.0}, capacity_ah=2.5, battery=BATTERY))
    except ExprError:
        return
    assert math.isfinite(value)


# --- in plans --------------------------------------------------------------------------------


def plan(body: str) -> Plan:
    return parse_plan("name: t\ncapacity: 2.5 Ah\nsteps:\n"
                      + textwrap.indent(textwrap.dedent(body), "  "), "plan.yaml")


CHECKUP = """\
- Discharge at C/5 until 2.5 V
- set: {q_meas: step_discharge_ah}
"""


def test_set_steps_and_expressions_in_steps() -> None:
    parsed = plan(CHECKUP + textwrap.dedent("""\
        - set:
            v_end: =max(2.5 V, 2.4 V + 50 mV)
            capacity: q_meas
            reset: [cycle, test_ah, cycle_wh]
        - mode: cc
          direction: discharge
          current: =0.5C * q_meas
          until: voltage <= =v_end
        - Charge at =q_meas / 2 h to 4.2 V until =C/20 * q_meas
        """))
    second = parsed.steps[2]
    assert isinstance(second, SetStep)
    assert [name for name, _ in second.values] == ["v_end", "capacity"]
    assert second.resets == ("cycle_ah", "cycle_wh", "cycle_time", "test_ah")
    step = parsed.steps[3]
    assert isinstance(step, StepSpec) and isinstance(step.current, Computed)
    assert step.current.direction == -1.0 and str(step.current.expr) == "=0.5C * q_meas"
    charge = parsed.steps[4]
    assert isinstance(charge, StepSpec) and isinstance(charge.current, Computed)
    assert charge.current.direction == 1.0


@pytest.mark.parametrize(("body", "line", "field", "message"), [
    ("- Charge at =q_meas / 1 h for 1 h\n", 4, "steps[0]",
     "unknown name 'q_meas': a variable must be set by a set step earlier in the plan"),
    (CHECKUP + "- Charge at =q_meas for 1 h\n", 6, "steps[2]",
     "after 'at', expected a current, C-rate, power or resistance, got '=q_meas'"),
    (CHECKUP + "- {mode: cc, current: =q_meas, for: 1 h}\n", 6, "steps[2].current",
     "'=q_meas' gives a charge; expected a current"),
    (CHECKUP + "- {mode: rest, until: voltage >= =q_meas}\n", 6, "steps[2].until",
     "'=q_meas' gives a charge; expected a voltage"),
    (CHECKUP + "- set: {q_meas: 4.2 V}\n", 6, "steps[2].set.q_meas",
     "q_meas is a charge (set at line 5); '=4.2 V' gives a voltage"),
    ("- set: {voltage: 4.2 V}\n", 4, "steps[0].set.voltage",
     "voltage is a quantity of the samples; give the variable another name, like my_voltage"),
    ("- set: {min: 4.2 V}\n", 4, "steps[0].set.min", "'min' is reserved"),
    ("- set: {h: 1 h}\n", 4, "steps[0].set.h", "'h' is reserved"),
    ("- set: {Q: 1 Ah}\n", 4, "steps[0].set.Q", "a variable name is lower-case letters"),
    ("- set: {q: 1 V / 0}\n", 4, "steps[0].set.q", "'=1 V / 0': division by zero"),
    ("- set: {q: battery.u_max}\n", 4, "steps[0].set.q", "unknown battery field 'u_max'"),
    ("- set: {reset: step}\n", 4, "steps[0].set.reset",
     "step counters start from zero at every step already"),
    ("- set: {reset: [cycle, test_time]}\n", 4, "steps[0].set.reset",
     "test_time is the test's clock and is never reset"),
    ("- set: {reset: [cycel]}\n", 4, "steps[0].set.reset",
     "unknown counter 'cycel' (did you mean 'cycle'?)"),
    (CHECKUP + "- repeat: 2\n  until: cycle_ah >= =q_meas\n  steps: [Rest for 1 s]\n", 7,
     "steps[2].until", "cycle_ah: a loop's 'until' compares with written values, not "
     "expressions"),
    (CHECKUP + "- {mode: rest, until: bms.cell_v >= =q_meas}\n", 6, "steps[2].until",
     "bms.cell_v: a signal compares with a written value (its unit is the device's), not an "
     "expression"),
])
def test_plan_errors_name_line_and_field(body: str, line: int, field: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        plan(body)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert message in caught.value.message


def test_variables_are_part_of_the_cursor_state() -> None:
    parsed = plan(CHECKUP + "- Charge at =0.5C * q_meas for 1 h\n")
    program = Program.compile(parsed)
    cursor = Cursor(program, capacity_ah=2.5)
    cursor.advance()
    cursor.advance(0)
    cursor.variables["q_meas"] = 2.2
    restored = Cursor.restore(program, cursor.state())
    assert restored.variables == {"q_meas": 2.2} and restored.pc == cursor.pc
    older = {key: value for key, value in cursor.state().items() if key != "variables"}
    assert Cursor.restore(program, older).variables == {}  # stored before plans had variables
