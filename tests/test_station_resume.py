"""Crash recovery with ``on_restart = "resume"``: SIGKILL ``cellbench serve`` at random points
of a running multi-channel test, many times, on SQLite, PostgreSQL and MariaDB; after every kill
the committed data is consistent, and after every restart each test goes on where it stood, until
it finishes as if nothing had happened: no sample lost or duplicated, every step as long as its
plan says."""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.storage import open_database

cli = CliRunner()

CYCLES = """\
name: cycles
capacity: 2.5 Ah
steps:
  - repeat: 3
    steps:
      - Charge at 1C for 2 minutes
      - Rest for 1 minute
      - Discharge at 1C for 2 minutes or until 2.5 V
"""
CHANNELS = 4
# Kills per backend: a few in the suite; CELLBENCH_SOAK_ROUNDS=20 makes it a soak run.
ROUNDS = int(os.environ.get("CELLBENCH_SOAK_ROUNDS", "2"))
STEPS = 9  # three cycles of three steps
PATIENCE_S = 90.0


def check_committed(engine: sa.Engine) -> None:
    """What any reader sees at any time: per test, seq from 1 without gaps or duplicates, and
    the committed plan position at or just after the last sample's step."""
    with engine.connect() as connection:
        for test_id, count, low, high in connection.execute(sa.text(
                "SELECT test_id, COUNT(*), MIN(seq), MAX(seq) FROM samples GROUP BY test_id")):
            assert (low, high) == (1, count), f"test {test_id}: seq has gaps or duplicates"
        for test_id, start_seq, last_seq, last_step, step_no in connection.execute(sa.text(
                "SELECT p.test_id, p.start_seq, s.seq, s.step_index, p.step_no "
                "FROM test_positions p JOIN samples s ON s.test_id = p.test_id "
                "AND s.seq = (SELECT MAX(seq) FROM samples m WHERE m.test_id = p.test_id)")):
            # The position is committed with the samples around it: its step began after the
            # last committed sample of the step before, and no sample is past it unnoticed.
            assert start_seq <= last_seq + 1, (test_id, start_seq, last_seq)
            if last_seq >= start_seq:  # the last sample belongs to the position's step
                assert last_step == (step_no - 1) % 3, (test_id, last_step, step_no)


@pytest.mark.faults
def test_sigkill_at_random_points_then_resume_loses_and_repeats_nothing(
        database_url: str, tmp_path: Path, start_serving: Any, wait_for_rows: Any) -> None:
    url = database_url
    station = tmp_path / "station.toml"
    station.write_text(f"""\
[station]
name = "resumer"
database = "{url}"
sample_period = "1 s"
clock = "virtual"
speed = 100
queue_poll_interval = "0.05 s"
on_restart = "resume"

[[channels]]
driver = "sim"
[channels.settings]
count = {CHANNELS}
seed = 9
""", encoding="utf-8")
    plan = tmp_path / "cycles.yaml"
    plan.write_text(CYCLES, encoding="utf-8")
    assert cli.invoke(app, ["db", "upgrade", "--db", url]).exit_code == 0
    for channel in range(1, CHANNELS + 1):
        result = cli.invoke(app, ["queue", "add", str(plan), "--channel", str(channel),
                                  "--db", url])
        assert result.exit_code == 0, result.output
    engine = sa.create_engine(url)
    rng = random.Random(11)
    process = start_serving(station)
    seen = 0
    for _ in range(ROUNDS):
        # Let every test get further, then kill at a random moment (mid-step, at a step's
        # end, mid-commit: wherever it falls).
        wait_for_rows("SELECT COUNT(*) FROM samples", engine,
                      lambda r, s=seen: r[0][0] > s + 40, timeout=PATIENCE_S)
        time.sleep(rng.uniform(0.0, 0.6))
        process.send_signal(signal.SIGKILL)
        process.wait()
        check_committed(engine)
        with engine.connect() as connection:
            seen = connection.execute(sa.text("SELECT COUNT(*) FROM samples")).scalar_one()
            running = connection.execute(sa.text(
                "SELECT COUNT(*) FROM tests WHERE status = 'running'")).scalar_one()
        if running == 0:
            break  # every test finished before the kill
        process = start_serving(station)
    else:
        wait_for_rows("SELECT COUNT(*) FROM test_queue WHERE status = 'running'", engine,
                      [(0,)], timeout=PATIENCE_S)
        process.send_signal(signal.SIGTERM)
        assert process.wait(PATIENCE_S) == 0
    check_committed(engine)
    with engine.connect() as connection:
        assert connection.execute(sa.text(
            "SELECT status, COUNT(*) FROM test_queue GROUP BY status")).fetchall() == [
                ("finished", CHANNELS)]
        assert connection.execute(sa.text(
            "SELECT status, COUNT(*) FROM tests GROUP BY status")).fetchall() == [
                ("finished", CHANNELS)]
        resumed = connection.execute(sa.text(
            "SELECT COUNT(*) FROM events WHERE kind = 'resumed'")).scalar_one()
        assert resumed >= CHANNELS  # every test was running at the first kill
        steps = connection.execute(sa.text(
            "SELECT test_id, step_no, step_index, start_seq, end_seq, ah FROM steps "
            "ORDER BY test_id, step_no")).fetchall()
        step_times: dict[tuple[int, int], list[float]] = {}
        for t, n, step_time in connection.execute(sa.text(
                "SELECT st.test_id, st.step_no, s.step_time_s FROM steps st JOIN samples s "
                "ON s.test_id = st.test_id AND s.seq BETWEEN st.start_seq AND st.end_seq "
                "ORDER BY s.step_time_s")):
            step_times.setdefault((t, n), []).append(step_time)
        last = dict(connection.execute(sa.text(
            "SELECT test_id, MAX(seq) FROM samples GROUP BY test_id")).fetchall())
        # On the virtual clock (time ahead of the wall) too, time stamps never go backwards
        # across a restart: the restarted clock goes on from the last stored sample.
        assert connection.execute(sa.text(
            "SELECT COUNT(*) FROM samples a JOIN samples b ON b.test_id = a.test_id "
            "AND b.seq = a.seq + 1 WHERE b.unix_time_s < a.unix_time_s")).scalar() == 0
    by_test: dict[int, list[Any]] = {}
    for row in steps:
        by_test.setdefault(row[0], []).append(row)
    assert len(by_test) == CHANNELS
    for test_id, rows in by_test.items():
        assert [r[1] for r in rows] == list(range(1, STEPS + 1)), f"test {test_id}: steps"
        assert [r[2] for r in rows] == [0, 1, 2] * 3
        assert rows[0][3] == 1 and rows[-1][4] == last[test_id]
        for before, after in itertools.pairwise(rows):
            assert after[3] == before[4] + 1, f"test {test_id}: steps overlap or leave a gap"
        for _, step_no, index, _, _, ah in rows:
            # A step ends at its first sample at or past its time, however often the station
            # died meanwhile (a loaded machine's virtual clock may skip ahead between samples,
            # so that sample can be more than one period late).
            *before_end, duration = step_times[(test_id, step_no)]
            if index == 0:  # 2 minutes at 1C: the charge is the current over the step time
                assert max(before_end) < 120 <= duration, (test_id, step_no, duration)
                assert ah == pytest.approx(2.5 * duration / 3600, rel=0.01), (test_id, step_no)
            elif index == 1:
                assert max(before_end) < 60 <= duration, (test_id, step_no, duration)
    # The per-cycle results add up the resumed steps as if nothing had happened.
    db = open_database(url)
    try:
        for test_id in by_test:
            cycles = db.cycles(test_id)
            assert [c.cycle for c in cycles] == [1, 2, 3], test_id
            for c in cycles:
                assert c.steps == 3
                assert c.charge_ah == pytest.approx(2.5 * 120 / 3600, rel=0.02), (test_id, c)
                assert c.discharge_ah == pytest.approx(2.5 * 120 / 3600, rel=0.02), (test_id, c)
                assert c.coulombic_efficiency == pytest.approx(1.0, abs=0.02)
                assert 3.0 < c.mean_discharge_v < c.mean_charge_v < 4.3
                assert c.temperature_min_c <= c.temperature_max_c
    finally:
        db.close()
