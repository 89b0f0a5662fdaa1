"""Three stations, each a ``cellbench serve`` process with its own SQLite database and its own
``[[sync]]``, into one central PostgreSQL database: after one station is SIGKILLed and started
again, and the central server crashes and starts again, the central database holds exactly what
each station holds."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cellbench_core.cli import app

PATIENCE_S = 60.0
STATIONS = ("lab-1", "lab-2", "lab-3")
STATION = """\
[station]
name = "{name}"
database = "sqlite:///{db}"
sample_period = "1 s"
clock = "virtual"
speed = 100
# The killed station goes on with its tests when it starts again, so it has new samples to
# send (with "end" it would have none, and nothing to show that its sync works again).
on_restart = "resume"

[[channels]]
driver = "sim"
[channels.settings]
count = 2

[[sync]]
target = "central-sql"
interval = "0.1 s"
settings = {{url = "{url}", connect_timeout_s = 2}}
"""


@pytest.fixture
def serve_together() -> Iterator[Any]:
    """``serve_together(*station_files)``: a ``cellbench serve`` process per station file,
    started together, once each is ready; killed at the end of the test if still running."""
    started: list[subprocess.Popen[str]] = []

    def serve(*stations: Path) -> list[subprocess.Popen[str]]:
        processes = [subprocess.Popen(
            [sys.executable, "-c", "from cellbench_core.cli import main; main()", "serve",
             "--station", str(station)], stderr=subprocess.PIPE, text=True)
            for station in stations]
        started.extend(processes)
        for process in processes:
            assert process.stderr is not None
            for line in process.stderr:  # warnings about interrupted tests may come first
                if " ready: " in line:
                    break
            else:
                raise AssertionError(f"cellbench serve exited with {process.wait()} before it "
                                     "was ready")
            # Keep reading its log, or the station blocks once the pipe is full.
            threading.Thread(target=process.stderr.read, daemon=True).start()
        return processes

    yield serve
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def central_samples(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(sa.text(  # type: ignore[arg-type]
                "SELECT origin, COUNT(*) FROM samples GROUP BY origin")).fetchall())
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return {}  # the central server is starting again, or has no tables yet
    finally:
        engine.dispose()


@pytest.mark.server
@pytest.mark.faults
def test_three_stations_equal_the_central_database_after_a_kill_and_a_server_crash(
        tmp_path: Path, private_postgres: Any, serve_together: Any, wait_until: Any,
        digest: Any, shared_plan: Any) -> None:
    url = private_postgres.url
    plan = tmp_path / "long.yaml"
    plan.write_text(shared_plan("long"), encoding="utf-8")
    files: dict[str, Path] = {}
    for name in STATIONS:
        files[name] = tmp_path / f"{name}.toml"
        files[name].write_text(STATION.format(name=name, db=tmp_path / f"{name}.sqlite3",
                                              url=url), encoding="utf-8")
        for channel in ("1", "2"):
            result = CliRunner().invoke(app, ["queue", "add", str(plan), "--channel", channel,
                                              "--station", str(files[name])])
            assert result.exit_code == 0, result.output
    serving = dict(zip(STATIONS, serve_together(*files.values()), strict=True))

    def arrived(minimum: dict[str, int]) -> Any:
        return wait_until(lambda: central_samples(url),
                          f"samples of every station centrally, more than {minimum}",
                          check=lambda seen: all(seen.get(n, 0) > minimum.get(n, 0)
                                                 for n in STATIONS))

    arrived({})
    serving["lab-2"].kill()  # SIGKILL: its last batches may be half-sent
    serving["lab-2"].wait()
    private_postgres.crash()  # the others' syncs fail, back off and retry
    private_postgres.start()
    [serving["lab-2"]] = serve_together(files["lab-2"])
    arrived(central_samples(url))
    for process in serving.values():
        process.send_signal(signal.SIGTERM)  # the final sync makes each central copy whole
    for name, process in serving.items():
        try:
            assert process.wait(timeout=PATIENCE_S) == 0, f"{name} exited with an error"
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} did not stop within {PATIENCE_S:g} s of SIGTERM")
    for name in STATIONS:
        local = digest(f"sqlite:///{tmp_path / f'{name}.sqlite3'}")
        assert digest(url, name) == local, name
        assert sum(count for (table, _), (count, _) in local.items() if table == "samples") > 0
