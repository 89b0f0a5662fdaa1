"""Flow in plans: per-condition actions (next, goto, end loop, end test), loops with a count
and/or an ``until``, the quantities added for them, message and set steps (device writes
included), and every flow error with file, line and field."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cellbench_core.plan import (
    NEXT,
    Action,
    ActionKind,
    ChamberSpec,
    Condition,
    Loop,
    Message,
    Node,
    Op,
    Plan,
    PlanError,
    Quantity,
    SetStep,
    StepSpec,
    Value,
    dump_plan,
    load_plan,
    parse_plan,
)
from cellbench_core.plan import steps as steps_module
from cellbench_core.plan.expr import Const, Name
from cellbench_core.plan.model import Signal, SignalWrite
from cellbench_core.plan.program import END, Program
from cellbench_core.plan.show import show_plan
from cellbench_core.runner.conditions import QUANTITY_COLUMN
from cellbench_core.runner.cursor import Cursor
from cellbench_core.units import Dimension

GE, LE = Op.GE, Op.LE


def plan(body: str) -> Plan:
    return parse_plan("name: t\nsteps:\n" + textwrap.indent(textwrap.dedent(body), "  "),
                      "plan.yaml")


def without_lines(parsed: Plan) -> Plan:
    def node(item: Node) -> Node:
        if isinstance(item, Message | SetStep):
            return replace(item, line=0)
        if isinstance(item, Loop):
            until = tuple(tuple(replace(c, line=0) for c in g) for g in item.until)
            return replace(item, body=tuple(node(c) for c in item.body), line=0, until=until)
        until = tuple(tuple(replace(c, line=0) for c in g) for g in item.until)
        return replace(item, until=until, text="", line=0)

    return replace(parsed, steps=tuple(node(s) for s in parsed.steps), source="", text="")


ACTIONS = """\
- mode: rest
  for: 1 min
  label: top
- repeat: 5
  steps:
    - mode: cc
      current: -1 A
      until:
        - when: voltage <= 2.5 V or cycle >= 3
          then: end loop
        - when: temperature >= 50 °C
          then: END  TEST
        - abs_dv_dt <= 1 mV/min and step_time >= 10 s
        - when: dtemp_dt >= 1 K/min
          then: goto top
- mode: rest
  for: 1 s
"""


def test_each_condition_group_has_its_action() -> None:
    step = plan(ACTIONS).steps[1].body[0]  # type: ignore[union-attr]
    assert isinstance(step, StepSpec)
    assert [str(step.action(g)) for g in range(len(step.until))] == [
        "end loop", "end loop", "end test", "next", "goto top"]
    assert step.until[1] == (Condition(Quantity.CYCLE, GE, Value(3), 11),)
    assert step.until[3] == (Condition(Quantity.ABS_DV_DT, LE, Value(1e-3 / 60), 15),
                             Condition(Quantity.STEP_TIME, GE, Value(10), 15))
    assert step.until[4][0].value.si == pytest.approx(1 / 60)
    assert "then: goto top" in step.text


def test_steps_that_only_go_next_keep_no_actions() -> None:
    step = plan("- mode: rest\n  until: [{when: step_time >= 1 s, then: next}]\n").steps[0]
    assert isinstance(step, StepSpec) and step.then == () and step.action(0) == NEXT


@pytest.mark.parametrize("body", [
    ACTIONS,
    "- repeat: forever\n  until: cycle_discharge_ah < 80 % of first or cycle >= 100\n"
    "  steps: [Discharge at 1 A until 3 V, Charge at 1 A for 1 h]\n",
    "- repeat: 3\n  until: test_charge_wh >= 10 Wh\n  cycle: false\n  steps: [Rest for 1 s]\n",
])
def test_normal_form_round_trips_flow(body: str) -> None:
    parsed = plan(body)
    assert without_lines(parse_plan(dump_plan(parsed))) == without_lines(parsed)


def test_loops_with_a_count_and_or_a_condition() -> None:
    forever, counted = plan("""\
        - repeat: forever
          until: cycle_discharge_ah < 80.5 % of first
          steps: [Discharge at 1 A until 3 V]
        - repeat: 2
          until: test_ah <= -1 Ah
          steps: [Rest for 1 s]
        """).steps
    assert isinstance(forever, Loop) and forever.count is None
    assert forever.until == ((Condition(Quantity.CYCLE_DISCHARGE_AH, LE, Value(0.805), 4,
                                        of_first=True),),)
    assert isinstance(counted, Loop) and counted.count == 2
    assert counted.until[0][0].quantity is Quantity.TEST_AH


def _cursor(body: str) -> Cursor:
    return Cursor(Program.compile(plan(body)))


def test_cursor_follows_actions() -> None:
    cursor = _cursor(ACTIONS)
    program = cursor.program
    assert cursor.advance() is not None and cursor.step.label == "top"
    assert cursor.advance(0) is not None and cursor.step_index == 1 and cursor.cycle == 1
    assert program.continue_at[cursor.pc] == (4, 4, END, 3, 0)  # LoopEnd at 3, last step at 4
    cursor.advance(4)  # goto top: out of the loop, no new cycle
    assert cursor.step.label == "top" and cursor.cycle == 1
    cursor.advance()
    assert cursor.advance(0) is not None and cursor.step_index == 2  # end loop, count left over
    cursor = _cursor(ACTIONS)
    cursor.advance()
    cursor.advance()
    assert cursor.advance(2) is None  # end test


def test_loop_until_is_decided_at_the_end_of_each_pass() -> None:
    cursor = _cursor("""\
        - repeat: 10
          until: cycle_discharge_ah < 50 % of first
          steps: [Discharge at 1 A until 3 V]
        """)
    q = np.full(len(QUANTITY_COLUMN), np.nan)
    column = QUANTITY_COLUMN[Quantity.CYCLE_DISCHARGE_AH]
    cursor.advance()
    for discharged in (2.0, 1.5, 1.01):
        q[column] = discharged
        assert cursor.advance(0, q) is not None
    q[column] = 0.99
    assert cursor.advance(0, q) is None
    assert cursor.counters == [4]


def test_a_loop_stops_at_its_count_even_when_until_never_holds() -> None:
    cursor = _cursor("- repeat: 2\n  until: cycle >= 100\n  steps: [Rest for 1 s]\n")
    cursor.advance()
    q = np.zeros(len(QUANTITY_COLUMN))
    assert cursor.advance(0, q) is not None
    assert cursor.advance(0, q) is None


_ERRORS = [
    ("- mode: rest\n  until: [{when: step_time >= 1 s, then: jump}]\n", 4,
     "steps[0].until[0].then", "expected 'next', 'goto <label>', 'end loop' or 'end test'"),
    ("- mode: rest\n  until: [{when: step_time >= 1 s, then: end tset}]\n", 4,
     "steps[0].until[0].then", "did you mean 'end test'?"),
    ("- mode: rest\n  until: [{when: step_time >= 1 s}]\n", 4,
     "steps[0].until[0].then", "missing: give both 'when'"),
    ("- mode: rest\n  until: [{when: step_time >= 1 s, then: next, else: x}]\n", 4,
     "steps[0].until[0].else", "unknown key 'else'"),
    ("- mode: rest\n  until: [{when: step_time >= 1 s, then: goto nowhere}]\n", 4,
     "steps[0].until[0].then", "goto 'nowhere': no step has this label"),
    ("- mode: rest\n  until: [{when: step_time >= 1 s, then: end loop}]\n", 4,
     "steps[0].until[0].then", "'end loop' needs a loop around the step"),
    ("- mode: rest\n  until: [{when: step_time >= 1 s, then: goto in}]\n"
     "- repeat: 2\n  steps:\n    - {mode: rest, for: 1 s, label: in}\n", 4,
     "steps[0].until[0].then", "jumps into a loop from outside it"),
    ("- {mode: rest, for: 1 s, label: a}\n"
     "- mode: rest\n  until: [{when: step_time >= 1 s, then: goto a}]\n", 4,
     "steps[1].until", "the plan can never end from this step"),
    ("- repeat: 3\n  steps:\n    - {mode: rest, for: 1 s, label: a}\n"
     "    - {mode: rest, until: [{when: step_time >= 1 s, then: goto a}]}\n", 6,
     "steps[0].steps[1].until", "the plan can never end from this step"),
    ("- repeat: forever\n  steps: [Rest for 1 s]\n", 3, "steps[0].repeat",
     "a loop that repeats forever needs an 'until'"),
    ("- repeat: always\n  until: cycle >= 3\n  steps: [Rest for 1 s]\n", 3, "steps[0].repeat",
     "expected a whole number of passes like 3 (or forever, with 'until')"),
    ("- mode: rest\n  until: voltage <= 80 % of first\n", 4, "steps[0].until",
     "'% of first' compares with a loop's first pass"),
    ("- mode: rest\n  until: cycle >= 3 V\n", 4, "steps[0].until",
     "cycle: expected a number like '10', got '3 V'"),
    ("- mode: rest\n  until: dv_dt >= 3 V\n", 4, "steps[0].until",
     "dv_dt: expected a voltage rate like '1 mV/min'"),
    ("- repeat: 2\n  until: cycle >= nan\n  steps: [Rest for 1 s]\n", 4, "steps[0].until",
     "is not a finite number"),
]


@pytest.mark.parametrize(("body", "line", "field", "message"), _ERRORS)
def test_flow_errors_name_line_and_field(body: str, line: int, field: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        plan(body)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("plan.yaml", line, field)
    assert message in caught.value.message


def test_a_goto_loop_with_a_way_out_is_accepted() -> None:
    parsed = plan("""\
        - {mode: rest, for: 1 s, label: a}
        - mode: rest
          until:
            - {when: cycle < 3 and step_time >= 1 s, then: goto a}
            - step_time >= 2 s
        """)
    step = parsed.steps[1]
    assert isinstance(step, StepSpec) and step.then == (Action(ActionKind.GOTO, "a"), NEXT)


def test_messages_and_set_steps() -> None:
    parsed = plan("""\
        - message: check-up starts
        - set: {capacity: Step_Discharge_Ah}
        - set: {capacity: 2400 mAh}
        - repeat: 2
          steps: [Rest for 1 s, {message: next}]
        """)
    assert parsed.steps[0] == Message("check-up starts", 3)
    measured, given = parsed.steps[1:3]
    assert isinstance(measured, SetStep) and isinstance(given, SetStep)
    assert (measured.line, given.line) == (4, 5)
    values = measured.values + given.values
    assert [(name, expr.dimension, expr.tree) for name, expr in values] == [
        ("capacity", Dimension.CHARGE, Name("sample", "step_discharge_ah")),
        ("capacity", Dimension.CHARGE, Const(2.4))]
    assert without_lines(parse_plan(dump_plan(parsed))).steps[:3] == without_lines(
        parsed).steps[:3]
    program = Program.compile(parsed)
    assert program.steps_total == 2
    cursor = Cursor(program)
    cursor.advance()
    assert cursor.passed == list(parsed.steps[:3])
    cursor.advance(0)
    assert cursor.passed == [Message("next", 7)]


def test_set_steps_write_device_signals() -> None:
    parsed = plan("""\
        - set:
            bms.charge_enable: 1
            q: step_discharge_ah
            bms.contactor: false
            rig.heater_power_w: 2.5 kW
        - Rest for 1 s
        """)
    step = parsed.steps[0]
    assert isinstance(step, SetStep) and [name for name, _ in step.values] == ["q"]
    assert step.writes == (SignalWrite(Signal("bms.charge_enable", Dimension.COUNT), Value(1)),
                           SignalWrite(Signal("bms.contactor", Dimension.COUNT), Value(0)),
                           SignalWrite(Signal("rig.heater_power_w", Dimension.POWER),
                                       Value(2500)))
    assert [write.line for write in step.writes] == [4, 6, 7]
    again = parse_plan(dump_plan(parsed)).steps[0]
    assert isinstance(again, SetStep) and again.writes == step.writes
    assert "Set q to step_discharge_ah; write bms.charge_enable = 1; write bms.contactor = 0; " \
           "write rig.heater_power_w = 2500 W" in show_plan(parsed)


@pytest.mark.parametrize(("body", "line", "field", "message"), [
    ("- set: {Bms.x: 1}\n- Rest for 1 s\n", 3, "steps[0].set.Bms.x",
     "'Bms.x' is not a signal name like 'bms.cell_max_v'"),
    ("- set: {bms.x: =q + 1}\n- Rest for 1 s\n", 3, "steps[0].set.bms.x",
     "bms.x: a signal is set to a written value (its unit is the device's), not an expression"),
    ("- set: {bms.x: [1]}\n- Rest for 1 s\n", 3, "steps[0].set.bms.x",
     "expected a value like '1' or '4.2 V', got a list"),
    ("- set: {bms.x: 1 parsec}\n- Rest for 1 s\n", 3, "steps[0].set.bms.x", "bms.x: "),
    ("- set: {bms.x: 0.5C}\n- Rest for 1 s\n", 3, "steps[0].set.bms.x",
     "a C-rate needs a battery"),
    ("- message: ''\n- Rest for 1 s\n", 3, "steps[0].message", "must not be empty"),
    ("- message: [a]\n- Rest for 1 s\n", 3, "steps[0].message", "expected the message's text"),
    ("- set: {capacity: voltage}\n- Rest for 1 s\n", 3, "steps[0].set.capacity",
     "capacity is a charge (the capacity C-rates use); '=voltage' gives a voltage"),
    ("- set: {capacity: 0 Ah}\n- Rest for 1 s\n", 3, "steps[0].set.capacity",
     "'=0 Ah' gives 0 Ah: a capacity must be positive"),
    ("- set: {capacity: step_dischage_ah}\n", 3, "steps[0].set.capacity",
     "did you mean 'step_discharge_ah'?"),
    ("- set: {}\n", 3, "steps[0].set", "expected variables to set, like 'q_meas: "
     "cycle_discharge_ah', counters to reset, like 'reset: [cycle]', or device signals to "
     "write, like 'bms.charge_enable: 1'"),
    ("- repeat: 2\n  steps: [{message: hi}]\n", 4, "steps[0].steps",
     "a loop needs at least one step that runs the channel"),
    ("- {message: hi, for: 1 s}\n", 3, "steps[0].for", "unknown key 'for'"),
])
def test_message_and_set_errors(body: str, line: int, field: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        plan(body)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert message in caught.value.message


def test_chamber_steps() -> None:
    hot, dry = plan("""\
        - {chamber: 45 °C, within: 0.5 K, stable: 10 min, timeout: 2 h, label: hot}
        - {chamber: -10 °C, humidity: 30 %, humidity_within: 2 %, timeout: 1 h}
        """).steps
    assert isinstance(hot, StepSpec) and isinstance(dry, StepSpec)
    assert hot.chamber == ChamberSpec(45.0, None, 0.5, None, 600.0, 7200.0)
    assert hot.label == "hot" and hot.until == () and hot.ends == 1
    assert dry.chamber == ChamberSpec(-10.0, 30.0, 1.0, 2.0, 300.0, 3600.0)  # the defaults
    again = parse_plan(dump_plan(plan("- {chamber: 45 °C, humidity: 50 %, timeout: 2 h}\n")))
    assert again.steps[0].chamber == ChamberSpec(45.0, 50.0, 1.0, 3.0, 300.0, 7200.0)  # type: ignore[union-attr]


@pytest.mark.parametrize(("body", "field", "message"), [
    ("- {chamber: 45 °C}", "steps[0].timeout", "missing: how long to wait for the chamber"),
    ("- {chamber: 45 V, timeout: 1 h}", "steps[0].chamber", "expected a temperature"),
    ("- {chamber: 45 °C, timeout: 1 h, within: 1 °C}", "steps[0].within",
     "a positive temperature band in kelvin like '0.5 K'"),
    ("- {chamber: 45 °C, timeout: 1 h, within: 0 K}", "steps[0].within", "positive"),
    ("- {chamber: 45 °C, timeout: 1 h, humidity: 101 %}", "steps[0].humidity",
     "between 0 % and 100 %"),
    ("- {chamber: 45 °C, timeout: 1 h, humidity_within: 2 %}", "steps[0].humidity_within",
     "needs a 'humidity' setpoint"),
    ("- {chamber: 45 °C, timeout: 1 min, stable: 10 min}", "steps[0].timeout",
     "at least as long as 'stable'"),
    ("- {chamber: 45 °C, timeout: 1 h, until: voltage < 3 V}", "steps[0].until",
     "unknown key 'until'"),
])
def test_chamber_step_errors(body: str, field: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        plan(body + "\n")
    assert (caught.value.line, caught.value.field) == (3, field)
    assert message in caught.value.message


def _files(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path / "main.yaml"


def test_includes_splice_another_files_steps(tmp_path: Path) -> None:
    main = _files(tmp_path, **{
        "main.yaml": """\
            name: main
            steps:
              - include: lib/check.yaml
              - repeat: 2
                steps:
                  - {mode: rest, for: 1 s, label: top}
                  - include: lib/check.yaml
            """,
        "lib__check.yaml": """\
            name: check-up
            steps:
              - Rest for 2 s
              - include: pulse.yaml
            """,
        "lib__pulse.yaml": "steps: [Discharge at 1 A for 10 s]\n",
    })
    parsed = load_plan(main)
    first, second, loop = parsed.steps
    assert isinstance(first, StepSpec) and first.text == "Rest for 2 s" and first.line == 3
    assert isinstance(second, StepSpec) and second.current == Value(-1.0)
    assert isinstance(loop, Loop) and [n.text for n in loop.body] == [  # type: ignore[union-attr]
        "mode: rest, for: 1 s, label: top", "Rest for 2 s", "Discharge at 1 A for 10 s"]
    assert "include" not in dump_plan(parsed)  # the normal form has every step written out


@pytest.mark.parametrize(("files", "where", "message"), [
    ({"main.yaml": "name: m\nsteps:\n  - include: a.yaml\n",
      "a.yaml": "steps:\n  - include: b.yaml\n", "b.yaml": "steps:\n  - include: a.yaml\n"},
     "b.yaml:2: steps[0].include", "include cycle: a.yaml -> b.yaml -> a.yaml"),
    ({"main.yaml": "name: m\nsteps:\n  - include: main.yaml\n"},
     "main.yaml:3: steps[0].include", "include cycle: main.yaml -> main.yaml"),
    ({"main.yaml": "name: m\nsteps:\n  - include: gone.yaml\n"},
     "main.yaml:3: steps[0].include", "cannot read the plan"),
    ({"main.yaml": "name: m\nsteps:\n  - {include: a.yaml, for: 1 s}\n", "a.yaml": ""},
     "main.yaml:3: steps[0].for", "unknown key 'for'"),
    ({"main.yaml": "name: m\nsteps:\n  - include: a.yaml\n", "a.yaml": "name: a\n"},
     "a.yaml:1: steps", "missing: an included plan needs 'steps'"),
    ({"main.yaml": "name: m\nsteps:\n  - include: a.yaml\n", "a.yaml": "stepz: []\n"},
     "a.yaml:1: not a plan",  # it may be any file: nothing of it is quoted, not even a key
     "an included file is a mapping with 'steps' (and optionally 'name') (did you mean "
     "'steps'?)"),
    ({"main.yaml": "name: m\nsteps:\n  - include: a.yaml\n", "a.yaml": "root:x:0:0:/root\n"},
     "a.yaml:1: not a plan", "an included file is a mapping with 'steps'"),
    ({"main.yaml": "name: m\nsteps:\n  - {mode: rest, for: 1 s, label: x}\n  - include: a.yaml\n",
      "a.yaml": "steps:\n  - {mode: rest, for: 1 s, label: x}\n"},
     "a.yaml:2: steps[0].label", "label 'x' is already used at "),
    ({"main.yaml": "name: m\nsteps:\n  - include: a.yaml\n",
      "a.yaml": "steps:\n  - {mode: rest, until: [{when: step_time >= 1 s, then: goto y}]}\n"},
     "a.yaml:2: steps[0].until[0].then", "goto 'y': no step has this label"),
    ({"main.yaml": "name: m\nlimits: {voltage_max: 4 V}\nsteps:\n  - include: a.yaml\n",
      "a.yaml": "steps: [Charge at 1 A to 4.2 V for 1 h]\n"},
     "a.yaml:1: steps[0]", "4.2 V is above limits.voltage_max"),
])
def test_include_errors_name_the_file_that_has_them(
        tmp_path: Path, files: dict[str, str], where: str, message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(PlanError) as caught:
        load_plan(tmp_path / "main.yaml")
    assert str(caught.value).startswith(f"{tmp_path}/{where}")
    assert message in caught.value.message


@pytest.mark.faults
def test_includes_that_fan_out_past_the_size_cap_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file includes the next three times: 3**4 steps written out, over a cap of 50."""
    monkeypatch.setattr(steps_module, "MAX_PLAN_SIZE", 50)
    for level in range(4):
        steps = "".join(f"  - include: l{level + 1}.yaml\n" for _ in range(3))
        (tmp_path / f"l{level}.yaml").write_text(f"name: l{level}\nsteps:\n{steps}")
    (tmp_path / "l4.yaml").write_text("name: l4\nsteps:\n" + "  - Rest for 1 s\n" * 3)
    with pytest.raises(PlanError, match="includes written out, has more than 50 steps"):
        load_plan(tmp_path / "l0.yaml")

