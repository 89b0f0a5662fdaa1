"""Resuming a test a crash interrupted: the position recorded as each step begins, where the
test goes on from (that position and the step's committed samples), and its row set up again."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cellbench_core.runner.records import Resume, Run
from cellbench_core.runner.state import RunState, rows_of
from cellbench_core.storage import Database


def positions(st: RunState, runs: Sequence[Run]) -> list[dict[str, Any]]:
    """What :func:`restore` needs besides the samples, as the step of each of ``runs``
    begins (the counters of all rows read at once: a station starts thousands together)."""
    rows = rows_of(runs)
    columns = zip((st.cycle_t0[rows] - st.test_t0[rows]).tolist(), st.cycle_ah[rows].tolist(),
                  st.cycle_wh[rows].tolist(), st.total_ah[rows].tolist(),
                  st.total_wh[rows].tolist(), st.charged[rows].tolist(),
                  st.discharged[rows].tolist(), strict=True)
    return [{"cursor": run.cursor.state(), "step_start_test_time_s": run.step_start_time,
             "cycle_start_test_time_s": cycle_start, "cycle_ah": cycle_ah,
             "cycle_wh": cycle_wh, "test_ah": test_ah, "test_wh": test_wh,
             "charged": charged, "discharged": discharged}
            for run, (cycle_start, cycle_ah, cycle_wh, test_ah, test_wh, charged, discharged)
            in zip(runs, columns, strict=True)]


def resume_point(db: Database, test_id: int, unix_now_s: float) -> Resume | None:
    """Where the running test ``test_id`` goes on after a crash, from its last committed
    position and the samples committed since; None if it committed no position."""
    saved = db.position(test_id)
    test = db.test(test_id)
    if saved is None or test is None:
        return None
    rows = db.samples(test_id, ["seq", "test_time_s", "unix_time_s", "step_time_s",
                                "current_a", "power_w", "temperature_c"],
                      from_seq=saved.start_seq - 1)
    seq, times = rows["seq"], rows["test_time_s"]
    if len(seq):
        last_seq, last_time = int(seq[-1]), float(times[-1])
        last_unix = float(rows["unix_time_s"][-1])
    else:  # the test committed its first position and no sample yet
        last_seq, last_time, last_unix = 0, 0.0, test.start_unix_s
    mine = seq >= saved.start_seq
    charged, discharged = np.zeros(2), np.zeros(2)
    step_time = 0.0
    temperatures = (math.nan, math.nan)
    if mine.any():
        # Step time counts what the runner integrated over (it stands still while paused
        # and while the station is down), so its steps are the runner's dt.
        step_times = rows["step_time_s"][mine]
        dt = np.diff(np.r_[0.0, step_times])
        amounts = np.nan_to_num(np.stack((rows["current_a"][mine] * dt,
                                          rows["power_w"][mine] * dt), axis=1) / 3600.0)
        charged = np.where(amounts > 0, amounts, 0.0).sum(axis=0)
        discharged = -np.where(amounts < 0, amounts, 0.0).sum(axis=0)
        step_time = float(rows["step_time_s"][-1])
        temperature = rows["temperature_c"][mine]
        if not np.isnan(temperature).all():
            temperatures = (float(np.nanmin(temperature)), float(np.nanmax(temperature)))
    down = max(0.0, unix_now_s - last_unix)
    return Resume(test_id, saved.step_no, saved.start_seq, dict(saved.state),
                  last_seq, last_time + down, step_time, charged, discharged, down,
                  temperatures)


def restore(st: RunState, run: Run, resume: Resume, t: float) -> None:
    """Set ``run``'s row up at clock time ``t`` as the interrupted test left it."""
    row, state = run.row, resume.state
    st.seq[row] = resume.last_seq
    st.test_t0[row] = t - resume.test_time_s
    st.cycle_t0[row] = st.test_t0[row] + state["cycle_start_test_time_s"]
    st.step_t0[row] = t - resume.step_time_s
    st.cycle[row] = run.cursor.cycle
    st.charged[row] = state["charged"]
    st.discharged[row] = state["discharged"]
    st.charged[row, 0], st.discharged[row, 0] = resume.charged, resume.discharged
    net = resume.charged - resume.discharged
    st.step_ah[row], st.step_wh[row] = net
    st.cycle_ah[row] = state["cycle_ah"] + net[0]
    st.cycle_wh[row] = state["cycle_wh"] + net[1]
    st.total_ah[row] = state["test_ah"] + net[0]
    st.total_wh[row] = state["test_wh"] + net[1]
    st.step_temp_min[row], st.step_temp_max[row] = resume.step_temperatures
    st.charged[row, 1:] += resume.charged
    st.discharged[row, 1:] += resume.discharged
    run.step_no, run.step_start_seq = resume.step_no, resume.start_seq
    run.step_start_time = state["step_start_test_time_s"]
