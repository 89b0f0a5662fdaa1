"""One station per database: a process running tests on a station database holds its lease
(a lock that dies with the process), and a second ``cellbench serve`` or ``cellbench run`` on
it refuses to start, naming the holder."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cellbench_core.storage import open_database
from cellbench_core.storage.lease import LeaseHeld, StationLease

#: Hostile input and faults (issue 20): `pytest -m faults` runs the fault-injection suite alone.
pytestmark = pytest.mark.faults


def test_a_second_lease_is_refused_until_the_first_is_released(database_url: str) -> None:
    first, second = open_database(database_url), open_database(database_url)
    try:
        with StationLease(first, "lab-1"):
            with pytest.raises(LeaseHeld) as refused:
                StationLease(second, "lab-2").acquire(wait_s=0.0)
            holder = refused.value.holder
            assert holder is not None
            assert (holder.station, holder.host, holder.pid) == (
                "lab-1", socket.gethostname(), os.getpid())
            assert "station 'lab-1' (host " in str(refused.value)
            assert "one station per database" in str(refused.value)
        with StationLease(second, "lab-2") as lease:
            holder = lease.holder()
            assert holder is not None and holder.station == "lab-2"
    finally:
        first.close()
        second.close()


def test_the_lease_dies_with_its_process(database_url: str) -> None:
    """A station killed with SIGKILL leaves nothing to clean up: the next one starts."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from cellbench_core.storage import open_database
        from cellbench_core.storage.lease import StationLease
        lease = StationLease(open_database({database_url!r}), "crashed")
        lease.acquire()
        print("held", flush=True)
        time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    db = open_database(database_url)
    try:
        with pytest.raises(LeaseHeld, match="station 'crashed'"):
            StationLease(db, "next").acquire(wait_s=0.0)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        with StationLease(db, "next"):
            pass
    finally:
        db.close()


def test_a_second_serve_or_run_on_a_served_database_refuses_to_start(
        tmp_path: Path, start_serving: Any, cellbench_in_process: Any) -> None:
    """The first station is a process; the second ``serve`` and the ``run`` are tried in this
    one, another process on the same database."""
    url = f"sqlite:///{tmp_path / 'station.db'}"
    station = tmp_path / "station.toml"
    station.write_text(f'[station]\nname = "lab-1"\ndatabase = "{url}"\n'
                       '[[channels]]\ndriver = "sim"\nsettings = {count = 2}\n',
                       encoding="utf-8")
    first = start_serving(station)
    second = cellbench_in_process("serve", "--station", station)
    assert second.returncode == 2, second.stderr
    assert "station 'lab-1' (host" in second.stderr
    assert f"pid {first.pid}" in second.stderr
    plan = tmp_path / "plan.yaml"
    plan.write_text("name: p\nsteps:\n  - Rest for 1 min\n", encoding="utf-8")
    run = cellbench_in_process("run", plan, "--channels", "1", "--speed", "max", "--db", url)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "already runs tests on this database" in run.stdout + run.stderr
    first.send_signal(signal.SIGTERM)
    assert first.wait(60) == 0
