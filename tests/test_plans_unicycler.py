"""``cellbench plan import --from unicycler``: protocols built with aurora-unicycler itself become
plans that run on the simulated channel and do what the protocol says; what has no equivalent
is refused, naming its JSON path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aurora_unicycler import (
    ConstantCurrent,
    ConstantVoltage,
    CyclingProtocol,
    ImpedanceSpectroscopy,
    Loop,
    OpenCircuitVoltage,
    RecordParams,
    SafetyParams,
    SampleParams,
    Tag,
    VoltageScan,
)
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.events import TestStatus
from cellbench_core.plan.model import PlanError
from cellbench_core.plan.unicycler import from_unicycler

runner = CliRunner()


def protocol(*method: object, **safety: float) -> CyclingProtocol:
    return CyclingProtocol(sample=SampleParams(name="cell-7", capacity_mAh=2500),
                           record=RecordParams(time_s=10), safety=SafetyParams(**safety),
                           method=list(method))


def test_a_cycling_protocol_round_trips_and_runs(tmp_path: Path,
                                                 run_on_sim: Callable[..., Any]) -> None:
    source = protocol(
        OpenCircuitVoltage(until_time_s=600),
        Tag(tag="cycle"),
        ConstantCurrent(rate_C="C/5", until_voltage_V=4.1, until_time_s=4 * 3600),
        ConstantVoltage(voltage_V=4.1, until_rate_C=0.05, until_time_s=1800),
        ConstantCurrent(current_mA=-1000, until_time_s=900),
        Loop(loop_to="cycle", cycle_count=2),
        max_voltage_V=4.3, min_voltage_V=2.5, max_current_mA=2000, min_current_mA=-3000,
        delay_s=1)
    path = tmp_path / "protocol.json"
    source.to_json(path)
    result = runner.invoke(app, ["plan", "import", "--from", "unicycler", str(path)])
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load(result.output)
    assert plan == {
        "name": "cell-7", "capacity": "2500 mAh",
        "limits": {"voltage_max": "4.3 V for 1 s", "voltage_min": "2.5 V for 1 s",
                   "current_max": "3000 mA for 1 s"},
        "steps": ["Rest for 600 s",
                  {"repeat": 2, "steps": ["Charge at 0.2C for 14400 s or until 4.1 V",
                                          "Hold at 4.1 V for 1800 s or until 0.05C",
                                          "Discharge at 1000 mA for 900 s"]}]}
    run = run_on_sim(result.output, initial_soc=0.5)
    assert run.outcome.status is TestStatus.FINISHED
    steps = run.steps
    assert [(step.cycle, step.mode) for step in steps][:4] == [
        (0, "rest"), (1, "cc"), (1, "cv"), (1, "cc")]
    assert len(steps) == 7
    rest, charge, _, discharge = steps[:4]
    assert rest.end_test_time_s - rest.start_test_time_s == pytest.approx(600, abs=5)
    assert charge.ah > 0 and discharge.ah < 0  # unicycler's positive current charges, as ours
    assert discharge.ah == pytest.approx(-0.25, abs=0.01)  # 1 A for 15 min


def test_nested_and_numbered_loops_and_a_voltage_scan() -> None:
    source = protocol(
        OpenCircuitVoltage(until_time_s=60),
        ConstantCurrent(rate_C=-0.5, until_voltage_V=3.0),
        Tag(tag="pulse"),
        ConstantCurrent(current_mA=-500, until_time_s=10),
        OpenCircuitVoltage(until_time_s=30),
        Loop(loop_to="pulse", cycle_count=5),
        Loop(loop_to=2, cycle_count=3),
        VoltageScan(start_voltage_V=3.0, end_voltage_V=3.5, scan_rate_mV_per_s=0.5),
        Loop(loop_to=1, cycle_count=2))
    plan = yaml.safe_load(from_unicycler(source.to_json(), "pulses"))
    assert plan["steps"] == [{"repeat": 2, "steps": [
        "Rest for 60 s",
        {"repeat": 3, "steps": [
            "Discharge at 0.5C until 3 V",
            {"repeat": 5, "steps": ["Discharge at 500 mA for 10 s", "Rest for 30 s"]}]},
        {"mode": "ramp", "from": "3 V", "to": "3.5 V", "over": "1000 s"}]}]


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["method"].append(ImpedanceSpectroscopy(
        amplitude_V=0.01, start_frequency_Hz=1e5, end_frequency_Hz=0.1).model_dump()),
     "proto.json: method[1].step: no equivalent: cellbench plans have no impedance_spectroscopy"),
    (lambda d: d["method"][0].update(rate_C="fast"),
     "proto.json: method[0].rate_C: expected a number, got 'fast'"),
    (lambda d: d["method"][0].update(until_time_s=float("inf")),
     "proto.json: Infinity is not a number"),
    (lambda d: d["method"][0].update(rate_C=0.5, colour="red"),
     "proto.json: method[0].colour: not a parameter of a constant_current step"),
    (lambda d: d["safety"].update(max_capacity_mAh=3000),
     "proto.json: safety.max_capacity_mAh: no equivalent"),
    (lambda d: d["method"].append({"step": "loop", "loop_to": "missing", "cycle_count": 2}),
     "proto.json: method[1].loop_to: no tag 'missing'"),
    (lambda d: d["method"].append({"step": "loop", "loop_to": 1, "cycle_count": 0}),
     "proto.json: method[1].cycle_count: expected a count > 0, got 0"),
    (lambda d: d.update(method=[{"step": "constant_current", "rate_C": 50,
                                 "until_voltage_V": 4.2}],
                        safety={"max_current_mA": 1000}),
     "proto.json: method[0]: 50 C exceeds limits.current_max 1 A"),
])
def test_what_cannot_be_imported_is_named_by_its_json_path(
        tmp_path: Path, change: object, message: str) -> None:
    data = protocol(ConstantCurrent(rate_C=-1, until_voltage_V=3)).to_dict()
    assert callable(change)
    change(data)
    path = tmp_path / "proto.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = runner.invoke(app, ["plan", "import", "--from", "unicycler", str(path)])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace(str(tmp_path) + "/", "").split())
    with pytest.raises(PlanError):
        from_unicycler(json.dumps(data), source="proto.json")
