"""Ramps and profile steps: parsing, the normal form, and every rejection with file, line and
field. Tables come from the installed ``lookup`` plugin (the ``tables`` fixture), as they do for
``cellbench plan check``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cellbench_core.plan import PlanError, ProfileSpec, StepSpec, dump_plan, load_plan, parse_plan
from cellbench_core.plan.tables import TableLoader
from cellbench_hal import ProfileQuantity, StepMode

CURRENT, VOLTAGE, POWER = ProfileQuantity.CURRENT, ProfileQuantity.VOLTAGE, ProfileQuantity.POWER


def step(body: str, source: str = "plan.yaml", tables: TableLoader | None = None) -> StepSpec:
    text = "name: t\nlimits: {voltage_max: 4.2 V, current_max: 3 A}\nsteps:\n" + textwrap.indent(
        textwrap.dedent(body), "  ")
    parsed = parse_plan(text, source, tables=tables).steps[0]
    assert isinstance(parsed, StepSpec)
    return parsed


@pytest.mark.parametrize(("body", "profile"), [
    ("- {mode: ramp, from: 0 A, to: -2 A, over: 10 min}",
     ProfileSpec(CURRENT, (0.0, 600.0), (0.0, -2.0))),
    ("- {mode: ramp, from: 0 A, to: 1C, over: 1 h}",
     ProfileSpec(CURRENT, (0.0, 3600.0), (0.0, 1.0), per_capacity=True)),
    ("- {mode: ramp, from: 3 V, to: 4.1 V, over: 2 h, current: 1 A}",
     ProfileSpec(VOLTAGE, (0.0, 7200.0), (3.0, 4.1))),
    ("- {mode: ramp, from: -5 W, to: 5 W, over: 1 s}",
     ProfileSpec(POWER, (0.0, 1.0), (-5.0, 5.0))),
])
def test_ramps(body: str, profile: ProfileSpec) -> None:
    parsed = step(body)
    assert parsed.mode is StepMode.PROFILE and parsed.profile == profile
    assert parsed.until == ()  # the step ends with its ramp


def test_ramps_round_trip_through_the_normal_form() -> None:
    text = ("name: t\ncapacity: 2 Ah\nsteps:\n"
            "  - {mode: ramp, from: 0 A, to: 1C, over: 10 min, until: voltage >= 4 V}\n"
            "  - {mode: ramp, from: 3 V, to: 4.1 V, over: 2 h, current: 1 A, label: v}\n")
    parsed = parse_plan(text)
    again = parse_plan(dump_plan(parsed))
    for a, b in zip(parsed.steps, again.steps, strict=True):
        assert isinstance(a, StepSpec) and isinstance(b, StepSpec)
        assert (a.profile, a.current, a.label) == (b.profile, b.current, b.label)
        assert [[c.value for c in g] for g in a.until] == [[c.value for c in g] for g in b.until]


DRIVE = "time [s],current [A],power [W],voltage [V]\n0,-1,-4,3.5\n10,2,8,3.6\n20,-1,-4,3.7\n"


def test_profiles_from_a_table_file(tmp_path: Path, tables: TableLoader) -> None:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "drive.csv").write_text(DRIVE, encoding="utf-8")
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: t\nsteps:\n"
                    "  - {mode: profile, table: tables/drive.csv, column: current, hold: true,"
                    " until: voltage <= 2.5 V}\n"
                    "  - {mode: profile, table: tables/drive.csv, column: power}\n", "utf-8")
    current, power = load_plan(plan, tables=tables).steps
    assert isinstance(current, StepSpec) and isinstance(power, StepSpec)
    assert current.profile == ProfileSpec(CURRENT, (0.0, 10.0, 20.0), (-1.0, 2.0, -1.0),
                                          hold=True, table="tables/drive.csv", column="current")
    assert power.profile is not None and power.profile.values == (-4.0, 8.0, -4.0)
    normal = tmp_path / "normal.yaml"
    normal.write_text(dump_plan(load_plan(plan, tables=tables)), "utf-8")
    assert [s.profile for s in load_plan(normal, tables=tables).steps] == [  # type: ignore[union-attr]
        current.profile, power.profile]


_ERRORS = [
    ("- {mode: ramp, from: 0 A, to: 1 A}", 4, "steps[0].over", "a ramp needs 'from', 'to' and"),
    ("- {mode: ramp, from: 0 A, to: 4 V, over: 1 s}", 4, "steps[0].to", "the same kind of unit"),
    ("- {mode: ramp, from: 1 A, to: 1C, over: 1 s}", 4, "steps[0].to", "the same kind of unit"),
    ("- {mode: ramp, from: 0 V, to: 4 V, over: 1 s}", 4, "steps[0].from", "must be positive"),
    ("- {mode: ramp, from: 0 Ah, to: 4 Ah, over: 1 s}", 4, "steps[0].from",
     "expected a current like '2 A' or '1C' or a power like '5 W' or a voltage"),
    ("- {mode: ramp, from: 0 A, to: 1 A, over: 0 s}", 4, "steps[0].over",
     "a duration must be positive"),
    ("- {mode: ramp, from: 0 A, to: 1 A, over: 1 s, direction: charge}", 4,
     "steps[0].direction", "a ramp step takes no direction"),
    ("- {mode: ramp, from: 0 A, to: 1 A, over: 1 s, table: x.csv}", 4, "steps[0].table",
     "a ramp step takes no table"),
    ("- {mode: ramp, from: 0 A, to: 1 A, over: 1 s, current: 1 A}", 4, "steps[0].current",
     "only a voltage ramp or profile takes a current"),
    ("- {mode: ramp, from: 3 V, to: 4.3 V, over: 1 s}", 4, "steps[0].to",
     "4.3 V is above limits.voltage_max"),
    ("- {mode: ramp, from: 0 A, to: -4 A, over: 1 s}", 4, "steps[0].to",
     "-4 A exceeds limits.current_max 3 A"),
    ("- {mode: cc, current: 1 A, for: 1 s, over: 1 s}", 4, "steps[0].over",
     "a cc step takes no over"),
    ("- {mode: profile, for: 1 s}", 4, "steps[0].table", "missing: a profile step needs a 'table'"),
    ("- {mode: profile, table: missing.csv}", 4, "steps[0].table", "cannot read the table"),
]


@pytest.mark.parametrize(("body", "line", "field", "message"), _ERRORS)
def test_bad_ramps_and_profiles(body: str, line: int, field: str, message: str,
                                tables: TableLoader) -> None:
    with pytest.raises(PlanError) as caught:
        step(body, tables=tables)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert message in caught.value.message


@pytest.mark.parametrize(("csv", "extra", "field", "message"), [
    (DRIVE, "", "steps[0].column", "missing: the table has several columns (current, power, "
     "voltage); name one with 'column'"),
    (DRIVE, ", column: curent", "steps[0].column", "no column 'curent' (did you mean 'current'?)"),
    ("time [s],x [Ah]\n0,1\n1,1\n", "", "steps[0].table", "column 'x': expected a current"),
    ("time [s],v [V]\n0,1\n1,0\n", "", "steps[0].table", "voltages must be positive"),
    ("time [s],v [V]\n0,4.5\n1,4\n", "", "steps[0].table",
     "4.5 V is above limits.voltage_max"),
    ("time [s],v [A]\n0,1\n", "", "steps[0]", "a table of one row sets a constant"),
    ("time [s],v [A]\n0,1\n1,2\n", ", hold: 1", "steps[0].hold", "expected true or false"),
    ("time [s],v [A]\n0,1\n0,2\n", "", "steps[0].table", "drive.csv:3: the time must rise"),
])
def test_bad_tables_are_plan_errors(tmp_path: Path, csv: str, extra: str, field: str,
                                    message: str, tables: TableLoader) -> None:
    (tmp_path / "drive.csv").write_text(csv, encoding="utf-8")
    with pytest.raises(PlanError) as caught:
        step(f"- {{mode: profile, table: drive.csv{extra}}}", str(tmp_path / "plan.yaml"), tables)
    assert caught.value.field == field and caught.value.line == 4
    assert message in caught.value.message
