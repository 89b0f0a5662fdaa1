"""``cellbench serve`` runs the ``[[sync]]`` targets of its station file: their keys are checked
before anything starts, and after SIGTERM the central copy equals the station's."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.events import Alarm
from cellbench_core.plugins import PluginManager
from cellbench_core.service.sync_workers import SyncWorkers
from cellbench_core.station import station_from_dict
from cellbench_sdk import hookimpl

cli = CliRunner()

PATIENCE_S = 60.0
STATION = """\
[station]
name = "lab-1"
database = "sqlite:///{db}"
sample_period = "1 s"
clock = "virtual"
speed = 1000

[[channels]]
driver = "sim"
[channels.settings]
count = 2
"""


def station_file(tmp_path: Path, sync: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(STATION.format(db=tmp_path / "station.db") + sync, encoding="utf-8")
    return path


@pytest.mark.parametrize(("sync", "message"), [
    ('[[sync]]\ntarget = "nowhere"\n', "sync[0].target: "),
    ('[[sync]]\ntarget = "central-sql"\n', "sync[0].settings.url: required, but missing"),
    ('[[sync]]\ntarget = "central-sql"\nsettings = {url = "sqlite:///x.db", colour = 1}\n',
     "sync[0].settings.colour: unknown key"),
    ('[[sync]]\ntarget = "central-sql"\ninterval = 3\n', "sync[0].interval: expected a duration"),
    ('[[sync]]\ntarget = "central-sql"\nalarm_after = "-1 s"\n',
     "sync[0].alarm_after: a duration must be positive"),
    ('[[sync]]\ntarget = "central-sql"\nperiod = "1 s"\n', "sync[0].period: unknown key"),
])
def test_sync_keys_are_validated_before_anything_starts(tmp_path: Path, sync: str,
                                                        message: str) -> None:
    result = cli.invoke(app, ["serve", "--station", str(station_file(tmp_path, sync))])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "station.db").exists()


def test_serve_syncs_to_central_and_is_complete_after_sigterm(
        tmp_path: Path, central_url: str, digest: Any, wait_for_rows: Any,
        shared_plan: Any) -> None:
    station = station_file(tmp_path, f'[[sync]]\ntarget = "central-sql"\ninterval = "0.1 s"\n'
                                     f'settings = {{url = "{central_url}"}}\n')
    db = tmp_path / "station.db"
    for plan, channel in (("short", 1), ("long", 2)):
        path = tmp_path / f"plan{channel}.yaml"
        path.write_text(shared_plan(plan), encoding="utf-8")
        result = cli.invoke(app, ["queue", "add", str(path), "--channel", str(channel),
                                  "--station", str(station)])
        assert result.exit_code == 0, result.output
    process = subprocess.Popen(
        [sys.executable, "-c", "from cellbench_core.cli import main; main()", "serve",
         "--station", str(station)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_rows("SELECT status FROM test_queue ORDER BY id", db,
                      [("finished",), ("running",)])
        wait_for_rows("SELECT COUNT(*) > 0 FROM samples WHERE test_id = 2", db, [(1,)])
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=PATIENCE_S)
        assert process.returncode == 0, errors
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "sync target central-sql (sync[0]) started" in errors
    assert "holds everything committed" in errors
    local = digest(f"sqlite:///{db}")
    assert digest(central_url, "lab-1") == local
    assert local[("samples", 2)][0] > 0 and local[("steps", 1)][0] > 0


def test_a_target_that_cannot_catch_up_raises_an_alarm_through_the_hooks(
        tmp_path: Path, bench: Any) -> None:
    config = station_from_dict({"station": {"name": "lab-1"}, "sync": [{
        "target": "central-sql", "interval": "10 ms", "alarm_after": "50 ms",
        "settings": {"url": f"sqlite:///{tmp_path / 'missing' / 'central.db'}"}}]})
    manager = PluginManager()
    manager.load()
    alarms: list[Alarm] = []
    raised = threading.Event()

    class Notifier:
        @hookimpl
        def cellbench_alarm(self, event: Alarm) -> None:
            alarms.append(event)
            raised.set()

    manager.register("notifier", Notifier())
    workers = SyncWorkers(config, manager, manager.hook)
    assert len(workers) == 1
    workers.start(bench.db)
    try:
        assert raised.wait(PATIENCE_S)
    finally:
        workers.stop(bench.db)  # the final attempt fails too: logged, not raised
    assert "sync target central-sql (sync[0]) has not caught up for" in alarms[0].message
    assert [e.kind for e in bench.db.events()] == ["alarm"]


def samples(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute("SELECT COUNT(*) FROM samples").fetchone()[0])


@pytest.mark.server
@pytest.mark.parametrize("database_url", ["postgresql", "mysql"], indirect=True)
def test_sigkilled_serve_loses_and_duplicates_nothing_centrally(
        tmp_path: Path, central_url: str, digest: Any, start_serving: Any, wait_until: Any,
        shared_plan: Any) -> None:
    station = station_file(tmp_path, f'[[sync]]\ntarget = "central-sql"\ninterval = "50 ms"\n'
                                     f'settings = {{url = "{central_url}", max_rows = 500}}\n')
    db = tmp_path / "station.db"
    plan = tmp_path / "long.yaml"
    plan.write_text(shared_plan("long"), encoding="utf-8")
    rng = random.Random(5)
    for _ in range(3):
        for channel in ("1", "2"):  # waits if a resumed test still runs there
            assert cli.invoke(app, ["queue", "add", str(plan), "--channel", channel,
                                    "--station", str(station)]).exit_code == 0
        before = samples(db)
        process = start_serving(station)
        wait_until(lambda: samples(db), "new samples", check=lambda n, b=before: n > b,
                   alive=process, interval=0.01)
        time.sleep(rng.uniform(0, 0.5))
        process.kill()  # SIGKILL, wherever the runner and the sync threads are
        process.wait()
    process = start_serving(station)
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=PATIENCE_S)
    assert process.returncode == 0, errors
    local = digest(f"sqlite:///{db}")
    assert digest(central_url, "lab-1") == local
    assert local[("samples", 1)][0] > 0 and local[("events", 0)][0] > 0
