"""``cellbench test list/show/delete`` and ``cellbench battery edit/delete`` through Typer's test
runner, on tests a ``cellbench run`` stored."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.storage import TestStart, open_database

runner = CliRunner()

CYCLES = """\
name: two cycles
capacity: 2.5 Ah
steps:
  - repeat: 2
    steps:
      - Charge at 1C for 5 minutes
      - Discharge at 1C for 5 minutes
"""


@pytest.fixture(scope="module")
def stored_tests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file holding test 1 (two cycles on channel 1, battery cell-A) and test 2 (the
    same on channel 2, no battery); cell-B has no test. Run once for the module: each test gets
    a copy (``url``)."""
    folder = tmp_path_factory.mktemp("stored-tests")
    url = f"sqlite:///{folder / 'lab.db'}"
    for battery in ("cell-A", "cell-B"):
        result = runner.invoke(app, ["battery", "add", battery, "--chemistry", "NMC",
                                     "--capacity", "2.5 Ah", "--db", url])
        assert result.exit_code == 0, result.output
    plan = folder / "cycles.yaml"
    plan.write_text(CYCLES, encoding="utf-8")
    for channel, battery in (("1", ["--battery", "cell-A"]), ("2", [])):
        result = runner.invoke(app, ["run", str(plan), "--channels", channel, "--speed", "max",
                                     "--db", url, *battery])
        assert result.exit_code == 0, result.output
    return folder / "lab.db"


@pytest.fixture
def url(stored_tests: Path, tmp_path: Path) -> str:
    """The URL of this test's own copy of ``stored_tests``, at ``tmp_path / "lab.db"``."""
    copy = tmp_path / "lab.db"
    shutil.copyfile(stored_tests, copy)
    return f"sqlite:///{copy}"


def invoke(*args: str, answer: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=answer, env={"COLUMNS": "80"})
    return result.exit_code, result.output


def test_list_shows_the_newest_first_and_filters(url: str) -> None:
    code, output = invoke("test", "list", "--db", url)
    assert code == 0, output
    lines = [line for line in output.splitlines() if "two cycles" in line]
    assert [line.split()[1] for line in lines] == ["2", "1"]
    assert all(len(line) <= 80 for line in output.splitlines())
    code, output = invoke("test", "list", "--battery", "cell-A", "--status", "finished",
                          "--since", "1 d", "--db", url)
    assert code == 0 and "cell-A" in output and output.count("two cycles") == 1
    code, output = invoke("test", "list", "--station-name", "elsewhere", "--db", url)
    assert code == 0 and "No tests match." in output
    code, output = invoke("test", "list", "--since", "last week", "--db", url)
    assert code == 2 and "--since: expected a date like 2026-12-01" in output


def test_show_prints_the_test_and_its_cycles(url: str) -> None:
    db = open_database(url)
    cycles = db.cycles(1)
    db.close()
    code, output = invoke("test", "show", "1", "--db", url)
    assert code == 0, output
    assert "cell-A" in output and "plan complete" in output
    for cycle in cycles:
        row = next(line for line in output.splitlines()
                   if line.split("│")[1:2] and line.split("│")[1].strip() == str(cycle.cycle))
        assert f"{cycle.discharge_ah:.3f}" in row
        assert f"{100 * cycle.coulombic_efficiency:.1f}" in row
    assert invoke("test", "show", "9", "--db", url) == (2, "error: no test 9 in this "
                                                            "database\n")


def test_delete_asks_refuses_a_running_test_and_removes_every_row(
        url: str, tmp_path: Path) -> None:
    db = open_database(url)
    [running] = db.start_tests([TestStart(
        name="still going", channel="3", driver="sim", battery=None, plan_name="p",
        plan_source="p.yaml", plan_text="steps: []", sample_period_s=1.0, station="lab",
        start_unix_s=1.7e9)])
    db.close()
    code, output = invoke("test", "delete", str(running), "--yes", "--db", url)
    assert code == 2 and "is running on 3; stop it first" in output
    code, output = invoke("test", "delete", "1", "--db", url, answer="n\n")
    assert code == 1 and "nothing deleted" in output
    code, output = invoke("test", "delete", "1", "--db", url, answer="y\n")
    assert code == 0 and "deleted test 1" in output
    with sqlite3.connect(tmp_path / "lab.db") as con:
        for table in ("tests", "samples", "steps", "events", "test_positions"):
            column = "id" if table == "tests" else "test_id"
            assert con.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = 1"
                               ).fetchone() == (0,), table
        assert con.execute("SELECT COUNT(*) FROM samples WHERE test_id = 2").fetchone()[0] > 0


def test_battery_edit_changes_only_what_is_given_by_the_rules_of_add(url: str) -> None:
    code, output = invoke("battery", "edit", "cell-B", "--voltage-max", "4.2 V",
                          "--charge-current-max", "1C", "--db", url)
    assert code == 0 and "changed battery cell-B" in output, output
    assert "4.2 V" in output and "2.5 A" in output
    code, output = invoke("battery", "edit", "cell-B", "--voltage-min", "4.3 V", "--db", url)
    assert code == 2 and "voltage_min_v (4.3 V) must be below voltage_max_v (4.2 V)" in output
    code, output = invoke("battery", "edit", "cell-B", "--voltage-max", "4.2 A", "--db", url)
    assert code == 2 and "--voltage-max: " in output
    code, output = invoke("battery", "edit", "cell-B", "--voltage-max", "none", "--db", url)
    assert code == 0 and re.search(r"voltage max\W+-", output), output
    code, output = invoke("battery", "edit", "cell-C", "--chemistry", "LFP", "--db", url)
    assert code == 2 and "no battery called 'cell-C'" in output
    code, output = invoke("battery", "edit", "cell-B", "--db", url)
    assert code == 2 and "nothing to change" in output


def test_battery_delete_refuses_a_battery_with_tests_unless_they_are_kept(url: str) -> None:
    code, output = invoke("battery", "delete", "cell-A", "--yes", "--db", url)
    assert code == 2 and "battery 'cell-A' has 1 test(s)" in output
    code, output = invoke("battery", "delete", "cell-B", "--yes", "--db", url)
    assert code == 0 and "deleted battery cell-B" in output
    code, output = invoke("battery", "delete", "cell-A", "--keep-tests", "--yes", "--db", url)
    assert code == 0 and "its 1 test(s) kept without a battery" in output
    code, output = invoke("test", "show", "1", "--db", url)
    assert code == 0 and "plan complete" in output
    code, output = invoke("battery", "delete", "cell-C", "--yes", "--db", url)
    assert code == 2 and "no battery called 'cell-C'" in output
