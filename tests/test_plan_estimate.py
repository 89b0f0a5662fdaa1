"""``cellbench plan estimate`` and ``queue list --eta``: the estimate (the runner on the bulk
channel) agrees with the runner's replay of the same plan on the plain simulated channel, says
which steps end on their time limit or a safety limit, and refuses bad arguments naming them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.estimate import Cell, estimate
from cellbench_core.plan import load_plan, parse_plan
from cellbench_core.plan.tables import lookup_tables
from cellbench_core.plugins import loaded_plugins
from cellbench_core.storage import open_database
from cellbench_core.storage.queue import TestQueue

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _cycle_life(checkups: int, cycles: int) -> str:
    """plans/cycle-life.yaml with fewer check-ups and cycles between them."""
    text = (ROOT / "plans" / "cycle-life.yaml").read_text(encoding="utf-8")
    text = text.replace("  - repeat: 20\n", f"  - repeat: {checkups}\n")
    return text.replace("      - repeat: 50\n", f"      - repeat: {cycles}\n")


# (plan, sample period): periods long enough that the replay of every sample takes about a
# second, short enough for the plan's shortest steps (HPPC's 10 s pulses).
GOLDEN = [("tests/plans/short.yaml", 1.0), ("plans/capacity-check.yaml", 30.0),
          ("plans/hppc.yaml", 20.0), ("plans/measured-rates.yaml", 30.0),
          ("plans/gitt.yaml", 60.0), ("plans/drive-cycle.yaml", 60.0),
          ("cycle-life 1x3", 30.0)]


@pytest.mark.parametrize(("name", "period_s"), GOLDEN)
def test_the_estimate_agrees_with_the_replay_within_2_percent(name: str,
                                                              period_s: float) -> None:
    plugins = loaded_plugins()
    if name.startswith("cycle-life"):
        plan = parse_plan(_cycle_life(1, 3), "cycle-life.yaml")
    else:
        plan = load_plan(ROOT / name, tables=lookup_tables(plugins.registry))
    cell = Cell(2.5)

    estimated = estimate(plan, plugins, cell, period_s=period_s)
    replayed = estimate(plan, plugins, cell, period_s=period_s, replay=True)

    assert estimated.duration_s == pytest.approx(replayed.duration_s, rel=0.02)
    assert (estimated.status, estimated.steps) == (replayed.status, replayed.steps)
    assert len(estimated.cycles) == len(replayed.cycles)
    for mine, theirs in zip(estimated.cycles, replayed.cycles, strict=True):
        assert mine.discharge_ah == pytest.approx(theirs.discharge_ah, rel=0.02)
    assert estimated.samples < replayed.samples or replayed.samples < 50


def test_estimate_prints_duration_phases_capacities_and_warnings(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(_cycle_life(1, 30), encoding="utf-8")

    result = runner.invoke(app, ["plan", "estimate", str(plan), "--capacity", "2.5Ah",
                                 "--chemistry", "nmc", "--temperature", "25°C"])

    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert re.search(r"duration: [\d.]+ days \([\d.,]+ h\); 30 cycles; \d+ steps; ends "
                     r"finished: plan complete", output)
    assert "repeat 1 times: 8 steps" in output  # the one top-level phase
    assert "first and last 5, and one every 2 cycles between" in output  # summarised
    assert "│ 30 │" in output and "│ 1 │" in output


def test_estimate_warns_of_time_limits_and_safety_limits(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "name: too tight\ncapacity: 2.5 Ah\nlimits: {voltage_min: 3.0 V}\nsteps:\n"
        "  - Charge at 1C to 4.2 V for 20 minutes or until C/20\n"
        "  - Discharge at 1C until 2.5 V\n", encoding="utf-8")

    result = runner.invoke(app, ["plan", "estimate", str(plan), "--json"])

    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["status"] == "stopped" and "voltage" in found["reason"]
    assert found["cycles"] == 0 and found["capacities"] == []
    assert [p["line"] for p in found["phases"]] == [5, 6]
    assert sum(p["duration_s"] for p in found["phases"]) == pytest.approx(found["duration_s"])
    warnings = " ".join(found["warnings"])
    assert "line 5 (Charge at 1C to 4.2 V for 20 minutes or until C/20): ended on its time " \
           "limit (step_time >= 1200 s) instead of its own condition in 1 of 1 runs" in warnings
    assert "the test would end stopped" in warnings and "line 6" in warnings
    assert "warning:" in result.stderr


def test_estimate_draws_the_predicted_curves(tmp_path: Path) -> None:
    image = tmp_path / "estimate.png"
    result = runner.invoke(app, ["plan", "estimate", str(ROOT / "tests/plans/short.yaml"),
                                 "--plot", str(image)])
    assert result.exit_code == 0, result.output
    assert image.read_bytes()[:4] == b"\x89PNG"


def test_an_external_step_ends_the_estimate_with_a_warning(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: ext\ncapacity: 2.5 Ah\nsteps:\n  - Rest for 1 hour\n"
                    "  - external: {watchdog: 2 s, for: 8 h}\n  - Rest for 1 hour\n",
                    encoding="utf-8")
    found = estimate(load_plan(plan), loaded_plugins(), Cell(2.5))
    assert found.duration_s == pytest.approx(3600, abs=2)
    assert found.warnings == ["line 5: an external step (a superior system drives it): the "
                              "estimate ends before it"]


@pytest.mark.parametrize(("args", "message"), [
    (["--capacity", "2.5 V"], "--capacity: expected a charge"),
    (["--capacity", "-1 Ah"], "--capacity: a capacity must be positive"),
    (["--chemistry", "lead"], "--chemistry: 'lead' is not a chemistry"),
    (["--temperature", "hot"], "--temperature:"),
    (["--period", "0 s"], "--period:"),
    (["--battery", "b", "--capacity", "2Ah"], "--capacity and --battery exclude each other"),
    (["--battery", "nobody"], "--battery: no battery called 'nobody' (known: cell-a)"),
])
def test_bad_arguments_are_refused_naming_them(tmp_path: Path, args: list[str],
                                               message: str) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    db = open_database(url)
    db.add_battery("cell-a", chemistry="NMC", nominal_capacity_ah=2.0)
    db.close()
    result = runner.invoke(app, ["plan", "estimate", str(ROOT / "tests/plans/short.yaml"),
                                 "--db", url, *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_a_chamber_plan_is_refused_naming_its_line() -> None:
    result = runner.invoke(app, ["plan", "estimate", str(ROOT / "plans/temperature-sweep.yaml")])
    assert result.exit_code == 2
    assert "temperature-sweep.yaml:13: a chamber step" in " ".join(result.output.split())


def test_a_battery_gives_capacity_chemistry_and_resistance(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    db = open_database(url)
    db.add_battery("lfp-1", chemistry="LFP-graphite", nominal_capacity_ah=1.1,
                   voltage_max_v=3.65, voltage_min_v=2.0, metadata={"r0_ohm": 0.012})
    battery = db.battery("lfp-1")
    db.close()
    assert battery is not None
    assert Cell.of_battery(battery, 30.0) == Cell(1.1, "lfp", 30.0, 0.012)
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: lfp\nsteps:\n  - Charge at 1C to 3.6 V for 2 minutes\n"
                    "  - Discharge at 1C for 1 minute or until 2.5 V\n", encoding="utf-8")
    result = runner.invoke(app, ["plan", "estimate", str(plan), "--db", url,
                                 "--battery", "lfp-1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["duration_s"] == pytest.approx(180)


def test_queue_list_eta_chains_the_tests_of_a_channel(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    db = open_database(url)
    queue = TestQueue(db)
    short = (ROOT / "tests/plans/short.yaml").read_text(encoding="utf-8")
    long = (ROOT / "tests/plans/long.yaml").read_text(encoding="utf-8")
    queue.add(1, long, plan_source="long.yaml")
    queue.add(1, short, plan_source="short.yaml")
    queue.add(2, short, plan_source="short.yaml")
    db.close()

    result = runner.invoke(app, ["queue", "list", "--eta", "--db", url],
                           env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    rows = {int(cells[0]): cells for line in result.output.splitlines()
            if (cells := [c.strip() for c in line.strip("│ ").split("│")])[0].isdigit()}
    start_1, end_1 = rows[1][7], rows[1][8]  # est. start, est. end
    assert rows[2][7] == end_1  # the second test on channel 1 starts when the first ends
    assert rows[3][7] == start_1  # channel 2 is free: now
    assert end_1 > start_1


def test_an_estimate_that_can_only_tick_gives_up_with_a_warning(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: forever\ncapacity: 2.5 Ah\nsteps:\n  - repeat: 3\n    steps:\n"
                    "      - {mode: rest, until: cycle_ah >= 1 Ah}\n", encoding="utf-8")
    found = estimate(load_plan(plan), loaded_plugins(), Cell(2.5), max_samples=200)
    assert found.status == "stopped"
    assert found.warnings == [
        "the estimate stopped the test after 200 samples: the plan's steps end on what only "
        "the runner counts (a cycle's or the test's totals, a device signal), run one sample "
        "period at a time"]
