"""Hostile plans sent to a serving station (``cellbench serve`` on loopback) as queue rows and
rci START: every file outside the plans folder, a symlink out of it, a named pipe, an oversize
file and a file that is no plan are refused with a reason naming the file and the rule, nothing
of those files shows anywhere, and the station and its running test go on undisturbed."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellbench_core.plan.files import MAX_PLAN_BYTES
from cellbench_core.storage import open_database
from cellbench_core.storage.queue import TestQueue
from cellbench_rci.client import RciClient, RciError

pytestmark = pytest.mark.faults

SECRET = "SECRET-first-line-of-a-file-no-plan-may-show"
PATIENCE_S = 60.0
RULE = "outside the plans folder"
PIPE = "it is a named pipe; only regular files are read"

#: plan file (in the plans folder) -> (its text, the file its refusal names, the rule).
HOSTILE: dict[str, tuple[str, str, str]] = {
    "passwd": ("name: p\nsteps:\n  - include: /etc/passwd\n", "/etc/passwd", RULE),
    "dotdot": ("name: p\nsteps:\n  - include: ../outside/plan.yaml\n",
               "../outside/plan.yaml", RULE),
    "symlink": ("name: p\nsteps:\n  - include: link.yaml\n", "link.yaml", RULE),
    "shadow": ("name: p\nsteps:\n  - {mode: profile, table: ../outside/shadow, "
               "until: step_time >= 1 s}\n", "../outside/shadow", RULE),
    "etc-shadow": ("name: p\nsteps:\n  - {mode: profile, table: /etc/shadow, "
                   "until: step_time >= 1 s}\n", "/etc/shadow", RULE),
    "fifo": ("name: p\nsteps:\n  - include: pipe.yaml\n", "pipe.yaml", PIPE),
    "oversize": ("name: p\nsteps:\n  - include: big.yaml\n", "big.yaml",
                 f"the plan is larger than {MAX_PLAN_BYTES} bytes"),
    "no-plan": ("name: p\nsteps:\n  - include: notes.txt\n", "notes.txt",
                "not a plan: an included file is a mapping with 'steps'"),
}


def make_station(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "plan.yaml").write_text(f"# {SECRET}\nsteps:\n  - Rest for 1 s\n",
                                       encoding="utf-8")
    (outside / "shadow").write_text(f"{SECRET}:$6$salt$hash:19000::::::\n", encoding="utf-8")
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "link.yaml").symlink_to(outside / "plan.yaml")
    os.mkfifo(plans / "pipe.yaml")
    (plans / "big.yaml").write_text(f"# {SECRET}\nsteps:\n" + "  - Rest for 1 s\n" * (
        MAX_PLAN_BYTES // 16), encoding="utf-8")
    (plans / "notes.txt").write_text(f"{SECRET}\n", encoding="utf-8")
    (plans / "resting.yaml").write_text("name: resting\nsteps:\n  - Rest for 1000 hours\n",
                                        encoding="utf-8")
    for name, (text, _, _) in HOSTILE.items():
        (plans / f"{name}.yaml").write_text(text, encoding="utf-8")
    station = tmp_path / "station.toml"
    station.write_text(f"""\
[station]
name = "confined"
database = "sqlite:///{tmp_path / 'station.db'}"
clock = "virtual"
speed = 10
sample_period = "1 s"
queue_poll_interval = "0.1 s"

[[channels]]
driver = "sim"
[channels.settings]
count = 2

[[interfaces]]
kind = "rci"
[interfaces.settings]
tcp = "127.0.0.1:0"
""", encoding="utf-8")
    return station


def serve(station: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``cellbench serve`` with its log in ``log``, once ready, and its rci port."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from cellbench_core.cli import main; main()", "serve",
         "--station", str(station)], stderr=log.open("wb"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        found = re.search(r"rci tcp 127\.0\.0\.1:([0-9]+)", log.read_text(errors="replace"))
        if found:
            return process, int(found[1])
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the station was not ready:\n{log.read_text(errors='replace')}")


def samples_of(db: Path, test_id: int) -> int:
    with sqlite3.connect(db) as con:
        count: int = con.execute("SELECT COUNT(*) FROM samples WHERE test_id = ?",
                                 (test_id,)).fetchone()[0]
    return count


def test_hostile_plans_are_refused_by_queue_and_rci_and_the_station_goes_on(
        tmp_path: Path) -> None:
    station = make_station(tmp_path)
    db_file = tmp_path / "station.db"
    log = tmp_path / "serve.log"
    process, port = serve(station, log)
    try:
        with RciClient.connect("127.0.0.1", port, timeout=PATIENCE_S) as rci:
            running = int(rci.command("START 1 resting").payload)
            replies = {}
            for name in HOSTILE:
                try:
                    rci.command(f"START 2 {name}")
                except RciError as error:
                    replies[name] = str(error)
                else:
                    raise AssertionError(f"START 2 {name} was not refused")
            db = open_database(f"sqlite:///{db_file}")
            try:
                queue = TestQueue(db)
                entries = {name: queue.add(2, text, plan_source=f"{name}.yaml")
                           for name, (text, _, _) in HOSTILE.items()}
                before = samples_of(db_file, running)
                deadline = time.monotonic() + PATIENCE_S
                while any(e.status.value in ("queued", "running") for e in queue.entries()):
                    assert time.monotonic() < deadline, "the queue was not worked off"
                    time.sleep(0.05)
                rows = {e.id: e for e in queue.entries()}
            finally:
                db.close()
            # The running test went on meanwhile, and the station still answers.
            assert rci.command("STATE? 1").payload.startswith(f"1,running,{running},")
            deadline = time.monotonic() + PATIENCE_S
            while samples_of(db_file, running) <= before:
                assert time.monotonic() < deadline, "the running test took no sample"
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(PATIENCE_S)
    assert code == 0, log.read_text(errors="replace")
    for name, (_, file, rule) in HOSTILE.items():
        assert file in replies[name] and rule in replies[name], (name, replies[name])
        row = rows[entries[name]]
        assert row.status.value == "failed" and row.test_id is None, (name, row)
        assert file in (row.error or "") and rule in (row.error or ""), (name, row.error)
    with sqlite3.connect(db_file) as con:
        stored = " ".join(str(value) for table in ("events", "test_queue", "tests")
                          for row in con.execute(f"SELECT * FROM {table}")
                          for value in row)
        assert con.execute("SELECT id, status FROM tests").fetchall() == [
            (running, "stopped")]  # the one good test, stopped by SIGTERM; nothing else began
    shown = " ".join([*replies.values(), stored, log.read_text(errors="replace")])
    assert SECRET not in shown and "root:" not in shown
