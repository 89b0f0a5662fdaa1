"""``cellbench plan check`` on the grown language: flow, limit and table errors exit 2 naming
file, line and field; good plans print in normal form."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app

runner = CliRunner()


@pytest.mark.parametrize(("steps", "where"), [
    ("  - {mode: rest, until: [{when: step_time >= 1 s, then: goto nowhere}]}\n",
     "plan.yaml:3: steps[0].until[0].then: goto 'nowhere': no step has this label"),
    ("  - {mode: rest, for: 1 s, label: a}\n"
     "  - {mode: rest, until: [{when: step_time >= 1 s, then: goto a}]}\n",
     "plan.yaml:4: steps[1].until: the plan can never end from this step"),
    ("  - {mode: profile, table: drive.csv}\n",
     "plan.yaml:3: steps[0].table: "),
])
def test_check_names_file_line_and_field(tmp_path: Path, steps: str, where: str) -> None:
    (tmp_path / "drive.csv").write_text("time [s],current [A]\n0,1\n0,2\n", encoding="utf-8")
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"name: t\nsteps:\n{steps}", encoding="utf-8")
    result = runner.invoke(app, ["plan", "check", str(plan)])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert f"{tmp_path}/{where}" in output
    if "table" in where:
        assert "drive.csv:3: the time must rise from row to row" in output


def test_check_prints_the_golden_plans_in_normal_form() -> None:
    plans = Path(__file__).parents[1] / "plans"
    result = runner.invoke(app, ["plan", "check", str(plans / "drive-cycle.yaml")])
    assert result.exit_code == 0, result.output
    assert "table: tables/urban-drive-cycle.csv" in result.output
    assert "then: end loop" in result.output


def test_show_prints_numbered_readable_steps() -> None:
    plans = Path(__file__).parents[1] / "plans"
    result = runner.invoke(app, ["plan", "show", str(plans / "cycle-life.yaml")])
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.output.splitlines()]
    assert lines[0] == "Cycle life (capacity 2.5 Ah)"
    assert lines[1] == ("limits: voltage_max 4.25 V, voltage_min 2.45 V, current_max 2 C, "
                        "temperature_max 55 °C")
    body = [" ".join(line.split()) for line in lines[2:]]
    assert body[:4] == [
        "Repeat 20 times: line 12",
        "Message 'capacity check-up' line 15",
        "1 Charge at 0.3333 C to 4.2 V until abs_current <= 0.05 C line 16",
        "2 Rest for 1 h line 17",
    ]
    assert body[4] == ("3 Discharge at 0.2 C until voltage <= 2.5 V and step_discharge_ah <= 2 Ah "
                       "(end test), or until voltage <= 2.5 V [check-up-discharge] line 18")
    assert body[5] == "Set the capacity for C-rates to step_discharge_ah line 26"
    assert body[7] == "Repeat 50 times, a new cycle each pass: line 29"


def test_show_of_ramps_profiles_and_loop_conditions(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("time [s],p [W]\n0,1\n90,2\n", encoding="utf-8")
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: p\nsteps:\n"
                    "  - repeat: forever\n"
                    "    until: cycle_discharge_ah < 80 % of first\n"
                    "    cycle: false\n"
                    "    steps:\n"
                    "      - {mode: ramp, from: 3 V, to: 4 V, over: 2 h, current: 1 A}\n"
                    "      - {mode: profile, table: t.csv, label: p}\n", encoding="utf-8")
    result = runner.invoke(app, ["plan", "show", str(plan)])
    assert result.exit_code == 0, result.output
    body = [" ".join(line.split()) for line in result.output.splitlines()[1:]]
    assert body == [
        "Repeat forever until cycle_discharge_ah <= 80 % of the first pass: line 3",
        "1 Ramp from 3 V to 4 V over 2 h (at most 1 A) until its end line 7",
        "2 Follow power 'p' of t.csv (linear between rows, 90 s) until its end [p] line 8",
    ]


def test_show_refuses_a_bad_plan_like_check(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: t\nsteps: [Rest]\n", encoding="utf-8")
    result = runner.invoke(app, ["plan", "show", str(plan)])
    assert result.exit_code == 2
    assert f"{plan}:2: steps[0]" in " ".join(result.output.split())


def test_import_from_pybamm_strings_and_files(tmp_path: Path) -> None:
    listed = tmp_path / "experiment.json"
    listed.write_text('["Charge at 1 A until 4.1 V (1 minute period)", "Hold at 4.1 V until '
                      'C/50"]', encoding="utf-8")
    out = tmp_path / "plan.yaml"
    result = runner.invoke(app, ["plan", "import", "--from", "pybamm", "Rest for 1 hour",
                                 str(listed), "Discharge at -2 W for 1 h", "--name", "cycle",
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == (
        "name: cycle\nsteps:\n- Rest for 1 hour\n- Charge at 1 A until 4.1 V\n"
        "- Hold at 4.1 V until C/50\n"
        "- Charge at 2 W for 1 h\n")  # PyBaMM's negative discharge power charges
    assert runner.invoke(app, ["plan", "check", str(out)]).exit_code == 0


@pytest.mark.parametrize(("args", "message"), [
    (["Rest for 1 hour", "Charge at 1 A until 5 parsecs"],
     "<pybamm>:2: steps[1]: step 2 ('Charge at 1 A until 5 parsecs'): unknown unit 'parsecs'"),
    (["Run US06 (A)"], "PyBaMM drive cycles have no string form here"),
])
def test_import_names_the_step_it_cannot_convert(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["plan", "import", "--from", "pybamm", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_import_reads_one_step_per_line_and_refuses_bad_files(tmp_path: Path) -> None:
    lines = tmp_path / "steps.txt"
    lines.write_text("# a check-up\nRest for 10 minutes\n\nDischarge at C/5 until 2.5 V\n",
                     encoding="utf-8")
    result = runner.invoke(app, ["plan", "import", "--from", "pybamm", str(lines)])
    assert result.exit_code == 0
    assert "- Rest for 10 minutes\n- Discharge at C/5 until 2.5 V\n" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('["Rest for 1 hour", 3]', encoding="utf-8")
    result = runner.invoke(app, ["plan", "import", "--from", "pybamm", str(bad)])
    assert result.exit_code == 2
    assert "expected a JSON list of experiment strings" in result.output


# Issue 3's bad-input list, one case each, through the CLI: exit 2 and file:line: field.
@pytest.mark.parametrize(("steps", "where"), [
    ("  - {mode: rest, fro: 1 s}\n", "plan.yaml:3: steps[0].fro: unknown key 'fro'"),
    ("  - {mode: cc, current: [1], for: 1 s}\n", "plan.yaml:3: steps[0].current: expected a "
     "current like '2 A' or '1C', got a list"),
    ("  - {mode: cc, current: 1, for: 1 s}\n", "plan.yaml:3: steps[0].current: missing unit"),
    ("  - {mode: cc, current: 1 parsec, for: 1 s}\n",
     "plan.yaml:3: steps[0].current: unknown unit 'parsec'"),
    ("  - {mode: cc, current: nan A, for: 1 s}\n",
     "plan.yaml:3: steps[0].current: 'nan A' is not a finite number"),
    ("  - {mode: cc, current: 1 A, for: inf s}\n",
     "plan.yaml:3: steps[0].for: 'inf s' is not a finite number"),
    ("  - {mode: cc, current: \u0661 A, for: 1 s}\n",
     "plan.yaml:3: steps[0].current: expected a current like '2 A' or '1C', got '\u0661 A'"),
    ("  - {mode: cc, current: 1 A}\n", "plan.yaml:3: steps[0]: this step could run forever"),
    ("  - {mode: rest, for: 1 s, label: a}\n  - {mode: rest, for: 1 s, label: a}\n",
     "plan.yaml:4: steps[1].label: label 'a' is already used at line 3"),
    ("  - repeat: 0\n    steps: [Rest for 1 s]\n",
     "plan.yaml:3: steps[0].repeat: must be between 1 and"),
    ("  - repeat: -2\n    steps: [Rest for 1 s]\n",
     "plan.yaml:3: steps[0].repeat: must be between 1 and 2147483647, got -2"),
    ("  - repeat: forever\n    steps: [Rest for 1 s]\n",
     "plan.yaml:3: steps[0].repeat: a loop that repeats forever needs an 'until'"),
    ("  - include: a.yaml\n", "b.yaml:2: steps[0].include: include cycle: a.yaml -> b.yaml"),
    ("  - Charge at 1 A to 4.3 V until 50 mA\nlimits: {voltage_max: 4.2 V}\n",
     "plan.yaml:3: steps[0]: 4.3 V is above limits.voltage_max"),
    ("  - &r Rest for 1 s\n  - *r\n", "plan.yaml:3: YAML anchors and aliases are not allowed"),
    ("  - Rest for 1 s\n" * 70_000, "plan.yaml: the plan is larger than 1048576 bytes"),
    (b"  - Rest for 1 s \xff\n", "plan.yaml:3: the plan is not UTF-8 text"),
])
def test_check_refuses_every_kind_of_bad_input(
        tmp_path: Path, steps: str | bytes, where: str) -> None:
    (tmp_path / "a.yaml").write_text("steps:\n  - include: b.yaml\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("steps:\n  - include: a.yaml\n", encoding="utf-8")
    plan = tmp_path / "plan.yaml"
    head = b"name: t\nsteps:\n"
    plan.write_bytes(head + (steps if isinstance(steps, bytes) else steps.encode("utf-8")))
    result = runner.invoke(app, ["plan", "check", str(plan)])
    assert result.exit_code == 2
    assert f"{tmp_path}/{where}" in " ".join(result.output.split())
