"""A station running plans on a native channel bank, recording a native OSI device's signals,
through ``cellbench run`` as an operator starts it; and the same station when the library
segfaults in the middle of the test."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from cellbench_core.cli import app

from .conftest import Faults, Libraries

PLAN = """\
name: native short
capacity: 2 Ah
steps:
  - Charge at 1 A for 0.5 s
  - Discharge at 0.5 A for 0.5 s
"""


def _run(tmp_path: Path, station: str, exit_code: int = 0) -> tuple[str, sqlite3.Connection]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    database = tmp_path / "station.db"
    file = tmp_path / "station.toml"
    file.write_text(f'[station]\ndatabase = "sqlite:///{database}"\nsample_period = "0.1 s"\n'
                    f"{station}", encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(plan), "--station", str(file)])
    assert result.exit_code == exit_code, result.output
    return result.output, sqlite3.connect(database)


def test_a_plan_runs_on_native_channels_recording_native_signals(
        tmp_path: Path, libraries: Libraries) -> None:
    output, db = _run(tmp_path, f"""
[[channels]]
driver = "native"
settings = {{library = "{libraries.example}", config = "channels=2"}}
[[devices]]
kind = "native"
name = "bms"
channels = "1-2"
settings = {{library = "{libraries.example}"}}
""")
    assert output.count("plan complete") >= 2
    with db:
        statuses = db.execute("SELECT status FROM tests ORDER BY id").fetchall()
        aux = dict(db.execute("SELECT name, count(*) FROM sample_aux GROUP BY name"))
        samples = db.execute("SELECT count(*) FROM samples").fetchone()[0]
        charging = db.execute("SELECT min(current_a) FROM samples WHERE step_index = 0 "
                              "AND step_time_s > 0.15").fetchone()[0]
    assert statuses == [("finished",), ("finished",)]
    assert set(aux) == {"bms.cell_v", "bms.temperature", "bms.charge_enable", "bms.fan_pct"}
    assert set(aux.values()) == {samples}  # every signal with every sample
    assert charging == 1.0  # the example's cells took the CC step


def test_a_segfault_mid_test_fails_the_tests_with_outputs_off(
        tmp_path: Path, libraries: Libraries, faults: Faults) -> None:
    faults.set("segv", "cb_measure")
    _, db = _run(tmp_path, f"""
[[channels]]
driver = "native"
settings = {{library = "{libraries.faulty}", config = "{faults.config}"}}
""", exit_code=3)  # cellbench run exits 3 when a test failed (docs/cli.md)
    with db:
        ends = db.execute("SELECT kind, message FROM events WHERE kind = 'test_finished'"
                          ).fetchall()
    assert len(ends) == 2
    for _, message in ends:
        assert "the library crashed in cb_measure: the host process was killed by SIGSEGV; " \
               "the host process was restarted" in message
    calls = faults.calls()
    crashed = next(pid for pid, function, _ in calls if function == "cb_measure")
    after = [(f, a) for pid, f, a in calls if pid != crashed]
    # The new host switched both outputs off before anything else was asked of it, and the
    # device was closed at the end.
    assert after[4:6] == [("cb_output_off", 0), ("cb_output_off", 1)]
    assert after[-1] == ("cb_close", 0)
