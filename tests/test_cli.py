"""The command line, end to end through Typer's test runner."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app, main
from cellbench_core.plugins import PluginManager, loaded_plugins

runner = CliRunner()
PLANS = Path(__file__).parents[1] / "plans"

SHORT_PLAN = """\
name: short cycle
capacity: 2.5 Ah
limits: {voltage_max: 4.25 V, voltage_min: 2.45 V}
steps:
  - Charge at 1C to 4.1 V for 20 minutes
  - Discharge at 1C for 10 minutes or until 2.5 V
"""


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "short.yaml"
    path.write_text(SHORT_PLAN, encoding="utf-8")
    return path


def test_plugins_lists_the_simulator() -> None:
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "sim" in result.output and "loaded" in result.output
    assert "channel driver" in result.output


def test_plan_check_prints_the_normal_form(plan: Path) -> None:
    result = runner.invoke(app, ["plan", "check", str(plan)])
    assert result.exit_code == 0, result.output
    assert "mode: cccv" in result.output and "voltage: 4.1 V" in result.output


def test_plan_check_names_file_line_and_field_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - Rest for 10 minutes\n  - Discharge at 1C\n")
    result = runner.invoke(app, ["plan", "check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:4: steps[1]" in result.output
    assert "forever" in result.output


def test_run_on_selected_channels_stores_every_test(plan: Path, tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    result = runner.invoke(app, ["run", str(plan), "--channels", "2-3", "--speed", "max",
                                 "--db", f"sqlite:///{db}"])
    assert result.exit_code == 0, result.output
    assert "Summary" in result.output and "plan complete" in result.output
    with sqlite3.connect(db) as con:
        tests = con.execute("SELECT t.id, c.name, t.status FROM tests t JOIN channels c "
                            "ON c.id = t.channel_id ORDER BY t.id").fetchall()
        assert [(name, status) for _, name, status in tests] == [
            ("2", "finished"), ("3", "finished")]
        count = con.execute("SELECT COUNT(*) FROM samples WHERE test_id = ?",
                            (tests[0][0],)).fetchone()[0]
    assert count == 30 * 60  # 30 minutes at 1 s


@pytest.mark.parametrize(("args", "message"), [
    (["--channels", "9"], "--channels: channel 9 does not exist"),
    (["--speed", "fast"], "--speed: expected 'real', 'max' or a positive number"),
    (["--battery", "nope"], "--battery: no battery called 'nope'"),
])
def test_run_refuses_bad_arguments(plan: Path, tmp_path: Path, args: list[str],
                                   message: str) -> None:
    result = runner.invoke(app, ["run", str(plan), "--db", f"sqlite:///{tmp_path / 'x.db'}",
                                 "--speed", "max", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_run_with_a_station_file(plan: Path, tmp_path: Path) -> None:
    station = tmp_path / "station.toml"
    station.write_text(f"""
[station]
name = "bench-7"
database = "sqlite:///{tmp_path / 'station.db'}"
sample_period = "10 s"
[[channels]]
driver = "sim"
settings = {{count = 2, chemistry = "nmc"}}
""")
    result = runner.invoke(app, ["run", str(plan), "--station", str(station), "--speed", "max"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "station.db") as con:
        rows = con.execute("SELECT station, sample_period_s FROM tests").fetchall()
    assert rows == [("bench-7", 10.0), ("bench-7", 10.0)]


def test_a_command_loads_the_plugins_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[PluginManager] = []
    load = PluginManager.load

    def counted(self: PluginManager, *args: Any, **kwargs: Any) -> None:
        loads.append(self)
        load(self, *args, **kwargs)

    monkeypatch.setattr(PluginManager, "load", counted)
    monkeypatch.setattr(sys, "argv",
                        ["cellbench", "plan", "check", str(PLANS / "drive-cycle.yaml")])
    loaded_plugins.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        loaded_plugins.cache_clear()  # the next test loads the real ones again
    assert exited.value.code == 0
    assert len(loads) == 1


def test_a_station_file_leaves_plugins_out_of_the_load(tmp_path: Path) -> None:
    station = tmp_path / "station.toml"
    station.write_text("""
[station]
name = "no-tables"
[plugins]
disable = ["lookup"]
[[channels]]
driver = "sim"
""")
    result = runner.invoke(app, ["plan", "check", str(PLANS / "drive-cycle.yaml"),
                                 "--station", str(station)])
    assert result.exit_code == 2, result.output
    assert "no OSI device called 'lookup' is installed" in result.output
    assert runner.invoke(app, ["plan", "check", str(PLANS / "drive-cycle.yaml")]).exit_code == 0
    ghost = tmp_path / "ghost.toml"
    ghost.write_text(station.read_text().replace('disable = ["lookup"]', 'enable = ["ghost"]'))
    result = runner.invoke(app, ["plan", "check", str(PLANS / "drive-cycle.yaml"),
                                 "--station", str(ghost)])
    assert result.exit_code == 2, result.output
    assert "plugin 'ghost' is enabled in the station config but not installed" in result.output


def test_demo_then_plot(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    result = runner.invoke(app, ["demo", "--channels", "2", "--db", db])
    assert result.exit_code == 0, result.output
    assert "Summary" in result.output
    assert result.output.count("plan complete") >= 2
    image = tmp_path / "test1.png"
    result = runner.invoke(app, ["plot", "1", "--db", db, "-o", str(image)])
    assert result.exit_code == 0, result.output
    assert image.read_bytes().startswith(b"\x89PNG")
    result = runner.invoke(app, ["plot", "99", "--db", db])
    assert result.exit_code == 2
    assert "no test 99" in result.output


def test_many_channels_are_summarised_per_cycle(tmp_path: Path) -> None:
    plan = tmp_path / "cycles.yaml"
    plan.write_text("""\
name: two cycles
capacity: 2.5 Ah
steps:
  - repeat: 2
    steps:
      - Charge at 2C for 10 minutes
      - Discharge at 2C for 5 minutes
""")
    station = tmp_path / "station.toml"
    station.write_text(f"""
[station]
database = "sqlite:///{tmp_path / 'many.db'}"
sample_period = "30 s"
[[channels]]
driver = "sim"
settings = {{count = 40}}
""")
    result = runner.invoke(app, ["run", str(plan), "--station", str(station), "--speed", "max"])
    assert result.exit_code == 0, result.output
    assert "Summary of 40 channels" in result.output
    assert "40 × finished: plan complete" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["1", "2"]  # one row per cycle
    assert all(row.split("│")[2].strip() == "40" for row in rows)


@pytest.mark.parametrize(("steps", "expected"), [
    ("  - repeat: 8\n    steps:\n      - Charge at 2C for 2 minutes\n"
     "      - Discharge at 2C for 2 minutes\n",
     ["0.167 … 0.167 (+0.0 % over 8)", "100.0", "discharge capacity of each cycle"]),
    ("  - repeat: 3\n    steps:\n      - Charge at 2C for 2 minutes\n"
     "      - Discharge at 2C for 1 minute\n",
     ["0.083 0.083 0.083", "50.0"]),
    ("  - Discharge at 1C for 6 minutes\n  - Rest for 1 minute\n"
     "  - Discharge at 2C for 3 minutes\n",
     ["0.250 0.250", "(the plan counts no cycles)"]),
])
def test_the_run_summary_shows_what_the_plan_measured(
        tmp_path: Path, steps: str, expected: list[str]) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"name: p\ncapacity: 2.5 Ah\nsteps:\n{steps}", encoding="utf-8")
    result = runner.invoke(app, ["run", str(plan), "--channels", "1", "--speed", "max", "--db",
                                 f"sqlite:///{tmp_path / 'x.db'}"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    summary = result.output[result.output.index("Summary"):]
    for text in expected:
        assert text in summary, summary
    assert "total discharged [Wh]" in summary
