"""rci end to end: ``cellbench serve`` with an ``[[interfaces]]`` section, driven by the client
library and by ``cellbench rci`` as separate processes, then stopped with SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from cellbench_rci.client import RciClient, RciError

PLAN = """\
name: capacity-check
capacity: 2.5 Ah
steps:
  - Charge at 0.5C for 5 hours
  - Discharge at 0.5C for 5 hours
"""
PATIENCE_S = 60.0


def test_serve_with_rci_end_to_end(tmp_path: Path, serve_until_ready: Any) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "capacity-check.yaml").write_text(PLAN, encoding="utf-8")
    station = tmp_path / "station.toml"
    station.write_text(f"""\
[station]
name = "e2e"
database = "sqlite:///{tmp_path / 'station.db'}"
clock = "virtual"
speed = 20
plans_dir = "plans"

[[channels]]
driver = "sim"
[channels.settings]
count = 2

[[interfaces]]
kind = "rci"
[interfaces.settings]
tcp = "127.0.0.1:0"
""", encoding="utf-8")
    process, ready = serve_until_ready(station)
    found = re.search(r"interfaces: rci tcp 127\.0\.0\.1:([0-9]+)$", ready.strip())
    assert found, ready
    port = int(found[1])
    with RciClient.connect("127.0.0.1", port, timeout=PATIENCE_S) as rci:
        assert rci.command("IDN?").payload.startswith("cellbench,e2e,")
        test_id = int(rci.command("START 2 capacity-check").payload)
        rci.command("PAUSE 2")
        rci.command("RESUME 2")
        rci.command("NEXT 2")
        rci.command("SUBSCRIBE 2")
        push = next(rci.pushes(timeout=PATIENCE_S))
        assert push.startswith(f"*SAMPLE 2 {test_id} ")
        assert int(push.split()[8]) == 1  # the discharge step (index 1) after NEXT
    shown = subprocess.run(
        [sys.executable, "-c", "from cellbench_core.cli import main; main()", "rci",
         "--port", str(port), "STATE?", "1-2"], env={**os.environ, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=PATIENCE_S, check=False)
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"2\s+running\s+{test_id}\s+2\s", shown.stdout), shown.stdout
    refused = subprocess.run(
        [sys.executable, "-c", "from cellbench_core.cli import main; main()", "rci",
         "--port", str(port), "STOP", "1"],
        capture_output=True, text=True, timeout=PATIENCE_S, check=False)
    assert refused.returncode == 1 and "ERR 32" in refused.stderr
    process.send_signal(signal.SIGTERM)
    assert process.wait(PATIENCE_S) == 0
    try:  # the interface is gone with the station
        RciClient.connect("127.0.0.1", port, timeout=2).close()
        raise AssertionError("the interface still listens")
    except (ConnectionError, OSError, RciError):
        pass
    with sqlite3.connect(tmp_path / "station.db") as con:
        status = con.execute("SELECT status, end_reason FROM tests").fetchall()
        assert status == [("stopped", "station stopped")]
        actions = [m.split(": ", 1)[1] for (m,) in con.execute(
            "SELECT message FROM events WHERE kind = 'control' ORDER BY id")]
    assert actions == [f"START 2 capacity-check: test {test_id}", "PAUSE 2", "RESUME 2",
                       "NEXT 2"]
