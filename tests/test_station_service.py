"""``cellbench serve`` as a real process: ready line, queue pickup, and a clean stop on SIGTERM
or SIGINT (every running test stopped, data committed, exit 0)."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app

cli = CliRunner()

RESTING = """\
name: resting
steps:
  - Rest for 1000 hours
"""
PATIENCE_S = 60.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_runs_the_queue_and_stops_cleanly(tmp_path: Path, sig: signal.Signals,
                                                wait_for_rows: Any, serve_until_ready: Any,
                                                shared_plan: Any) -> None:
    db = tmp_path / "station.db"
    station = tmp_path / "station.toml"
    result = cli.invoke(app, ["station", "init", "--channels", "2", "--db", f"sqlite:///{db}",
                              "-o", str(station)])
    assert result.exit_code == 0, result.output
    text = station.read_text(encoding="utf-8")
    assert "speed = 10 " in text
    station.write_text(text.replace("speed = 10 ", "speed = 1000 "), encoding="utf-8")
    short, long = tmp_path / "short.yaml", tmp_path / "long.yaml"
    short.write_text(shared_plan("short"), encoding="utf-8")
    long.write_text(shared_plan("long"), encoding="utf-8")
    assert cli.invoke(app, ["queue", "add", str(short), "--channel", "1",
                            "--station", str(station)]).exit_code == 0
    process, ready = serve_until_ready(station)
    assert "station 'station' ready: 2 channels (sim x2)" in ready, ready
    assert "test queue by polling every 0.5 s" in ready
    wait_for_rows("SELECT status FROM test_queue", db, [("finished",)])
    assert cli.invoke(app, ["queue", "add", str(long), "--channel", "2",
                            "--station", str(station)]).exit_code == 0
    wait_for_rows("SELECT COUNT(*) > 0 FROM samples WHERE test_id = 2", db, [(1,)])
    process.send_signal(sig)
    assert process.wait(PATIENCE_S) == 0
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT id, status, error FROM test_queue ORDER BY id").fetchall() == [
            (1, "finished", None), (2, "stopped", "station stopped")]
        assert con.execute("SELECT id, status, end_reason FROM tests ORDER BY id").fetchall() == [
            (1, "finished", "plan complete"), (2, "stopped", "station stopped")]
        last_seq, steps_end = con.execute(
            "SELECT (SELECT MAX(seq) FROM samples WHERE test_id = 2), "
            "(SELECT MAX(end_seq) FROM steps WHERE test_id = 2)").fetchone()
    assert last_seq == steps_end  # the stopped step's summary covers every committed sample


def test_sigkill_then_restart_ends_interrupted_tests_and_keeps_every_sample(
        tmp_path: Path, wait_for_rows: Any, start_serving: Any) -> None:
    db = tmp_path / "station.db"
    station = tmp_path / "station.toml"
    assert cli.invoke(app, ["station", "init", "--channels", "3", "--db", f"sqlite:///{db}",
                            "-o", str(station)]).exit_code == 0
    text = station.read_text(encoding="utf-8").replace("speed = 10 ", "speed = 100 ")
    station.write_text(text, encoding="utf-8")
    long = tmp_path / "long.yaml"
    long.write_text(RESTING, encoding="utf-8")
    rng = random.Random(4)
    process = start_serving(station)
    for kill in range(3):
        for channel in (1, 2, 3):
            assert cli.invoke(app, ["queue", "add", str(long), "--channel", str(channel),
                                    "--station", str(station)]).exit_code == 0
        first = 3 * kill + 1
        wait_for_rows(f"SELECT COUNT(DISTINCT test_id) FROM samples WHERE test_id >= {first}",
                      db, [(3,)])
        time.sleep(rng.uniform(0.0, 0.5))
        process.kill()
        process.wait()
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT COUNT(*) FROM tests WHERE status = 'running'"
                               ).fetchone() == (3,)
        process = start_serving(station)
        wait_for_rows("SELECT COUNT(*) FROM tests WHERE status = 'running'", db, [(0,)])
    process.send_signal(signal.SIGTERM)
    assert process.wait(PATIENCE_S) == 0
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT DISTINCT status, error FROM test_queue").fetchall() == [
            ("interrupted", "interrupted: the station stopped while the test ran")]
        assert con.execute("SELECT COUNT(*), MIN(status), MAX(status) FROM tests").fetchone() \
            == (9, "interrupted", "interrupted")
        for test_id, count, low, high in con.execute(
                "SELECT test_id, COUNT(*), MIN(seq), MAX(seq) FROM samples GROUP BY test_id"):
            assert (low, high) == (1, count), f"test {test_id}: seq has gaps or duplicates"
        assert con.execute("SELECT COUNT(*) FROM steps s WHERE s.end_seq > (SELECT MAX(seq) "
                           "FROM samples WHERE test_id = s.test_id)").fetchone() == (0,)
