"""Errors a newcomer meets in the first hour: each is one line naming the problem and the fix,
with the exit code documented, and never a traceback. Most run in this process (the
``cellbench`` fixture here is ``cellbench_in_process``, which fails on an exception the command
let out); the installed ``cellbench`` process runs where only a process shows it: its one-line
error and exit code from the entry point, an interrupt, and a served station."""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from cellbench_core.storage import upgrade
from cellbench_sdk.testing import free_port

Cellbench = Callable[..., subprocess.CompletedProcess[str]]

PLANS = Path(__file__).parents[1] / "plans"
CAPACITY_CHECK = PLANS / "capacity-check.yaml"


def _text(output: str) -> str:
    """``output`` as one line of words, without the borders of help panels."""
    return " ".join(output.replace("│", " ").split())


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def cellbench(cellbench_in_process: Cellbench) -> Cellbench:
    """The command run in this process: these errors come from the command's code, the same in
    a process; a process costs ~2 s of imports per case."""
    return cellbench_in_process


# --- database URLs ----------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "fix"), [
    (["plot", "1", "--db", "postgres://postgres@127.0.0.1/x"],
     "postgresql+psycopg://postgres@127.0.0.1/x"),
    (["run", str(CAPACITY_CHECK), "--db", "cellbench-demo.db"], "sqlite:///cellbench-demo.db"),
    (["battery", "list", "--db", "mysql://root@127.0.0.1/x"], "mysql+pymysql://root@127.0.0.1/x"),
    (["queue", "list", "--db", "mysql://root@127.0.0.1/x"], "mysql+pymysql://root@127.0.0.1/x"),
    (["queue", "add", str(CAPACITY_CHECK), "--channel", "1", "--db", "mysql://root@127.0.0.1/x"],
     "mysql+pymysql://root@127.0.0.1/x"),
    (["db", "upgrade", "--db", "mysql://root@127.0.0.1/x"], "mysql+pymysql://root@127.0.0.1/x"),
], ids=["plot-postgres", "run-bare-path", "battery-list-mysql", "queue-list-mysql",
        "queue-add-mysql", "db-upgrade-mysql"])
def test_a_database_url_without_its_driver_names_the_url_to_write(
        cellbench: Cellbench, tmp_path: Path, args: list[str], fix: str) -> None:
    result = cellbench(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert fix in _one_error_line(result)
    assert not list(tmp_path.iterdir())


def test_serve_checks_the_station_files_database_url(
        tmp_path: Path, start_cellbench: Callable[..., subprocess.Popen[str]]) -> None:
    """In the installed process: its entry point exits 2 with the one line and no traceback."""
    station = tmp_path / "lab.toml"
    station.write_text('[station]\nname = "lab"\ndatabase = "mysql://root@127.0.0.1/lab"\n')
    process = start_cellbench("serve", "--station", station)
    stdout, stderr = process.communicate(timeout=60)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert "Traceback" not in stdout + stderr
    assert result.returncode == 2
    line = _one_error_line(result)
    assert f"{station}:3: station.database" in line
    assert "mysql+pymysql://root@127.0.0.1/lab" in line


@pytest.mark.server
def test_a_database_missing_on_the_server_says_how_to_create_it(
        cellbench: Cellbench, tmp_path: Path, fresh_database: Callable[[str], str]) -> None:
    server = sa.make_url(fresh_database("postgresql"))  # the server is up
    missing = server.set(database=f"nosuchdb_{uuid.uuid4().hex[:8]}").render_as_string(
        hide_password=False)
    result = cellbench("demo", "--channels", "1", "--db", missing, cwd=tmp_path)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "does not exist" in line and "createdb" in line and "db upgrade" in line


@pytest.mark.parametrize("args", [
    ["plot", "1"],
    ["export", "1", "--format", "basytec", "-o", "out.txt", "--db", "sqlite:///typo-name.db"],
    ["battery", "list", "--db", "sqlite:///another.db"],
    ["test", "list", "--db", "sqlite:///another.db"],
], ids=["plot", "export", "battery-list", "test-list"])
def test_reading_commands_create_no_database(cellbench: Cellbench, tmp_path: Path,
                                             args: list[str]) -> None:
    result = cellbench(*args, cwd=tmp_path)
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "there is no database file" in line and "db upgrade" in line
    assert not list(tmp_path.iterdir())


def test_a_missing_folder_is_a_missing_database_not_a_missing_test(cellbench: Cellbench,
                                                                   tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nonexistent' / 'dir' / 'x.db'}"
    result = cellbench("plot", "1", "--db", url, cwd=tmp_path)
    assert result.returncode == 2
    assert "there is no database file" in _one_error_line(result)
    assert not (tmp_path / "nonexistent").exists()


# --- station files ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "line", "expected"), [
    ('[staton]\nname = "lab"\n', 1,
     "staton: unknown key (did you mean 'station'?) (expected one of: station, plugins,"),
    ('[station]\nname = "lab"\n\nchannels = "sim"\n', 4,
     "station.channels: unknown key (expected one of: name, database,"),
    ('channels = "sim"\n', 1, "channels: Input should be a valid list: expected [[channels]] "
                              "tables"),
    ('[station]\nname = "lab"\n\n[[channels]]\ndriver = "simm"\n', 5,
     "channels[0].driver: no channel driver called 'simm' is installed (available: *"
     "sim, sim-bulk) (did you mean 'sim'?)"),
    ('[[channels]]\ndriver = "sim"\n[channels.settings]\ncount = 2\ncuont = 3\n', 5,
     "channels[0].settings.cuont: unknown key (did you mean 'count'?)"),
], ids=["unknown-section", "key-in-wrong-table", "not-tables", "unknown-driver",
        "unknown-setting"])
def test_station_file_errors_name_file_line_key_and_the_closest_match(
        cellbench: Cellbench, tmp_path: Path, text: str, line: int, expected: str) -> None:
    station = tmp_path / "s1.toml"
    station.write_text(text)
    result = cellbench("run", CAPACITY_CHECK, "--station", station, "--speed", "max",
                       cwd=tmp_path)
    assert result.returncode == 2
    before, _, after = expected.partition("*")  # * stands for whatever else is installed
    assert re.search(re.escape(f"error: {station}:{line}: {before}") + ".*" + re.escape(after),
                     _one_error_line(result))


# --- plot -------------------------------------------------------------------------------------

def test_plot_into_a_missing_folder_names_it(cellbench: Cellbench, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    assert cellbench("db", "upgrade", "--db", url).returncode == 0
    result = cellbench("plot", "1", "--db", url, "-o", tmp_path / "missing" / "dir" / "x.png")
    assert result.returncode == 2
    assert f"there is no folder {tmp_path / 'missing' / 'dir'}" in _one_error_line(result)


def test_help_shows_the_default_file_and_no_placeholder_after_flags(cellbench: Cellbench
                                                                   ) -> None:
    plot = cellbench("plot", "--help")
    assert "default test-TEST.png, e.g. test-3.png" in _text(plot.stdout)
    export = cellbench("export", "--help")
    assert "Station file (TOML) whose database to use" in _text(export.stdout)
    flags = cellbench("battery", "delete", "--help").stdout
    assert "--keep-tests" in flags and "--yes" in flags and "<bool>" not in flags
    assert "<str>" in flags  # options that take a value keep theirs


# --- run --------------------------------------------------------------------------------------

TRIPPING_PLAN = """\
name: below the limit
capacity: 2.5 Ah
limits: {voltage_max: 4.25 V, voltage_min: 2.45 V}
steps:
  - Discharge at 1C until 2.5 mV
"""


def test_run_exits_3_when_a_test_ended_on_a_safety_limit(cellbench: Cellbench,
                                                         tmp_path: Path) -> None:
    plan = tmp_path / "trip.yaml"
    plan.write_text(TRIPPING_PLAN)
    result = cellbench("run", plan, "--channels", "1", "--speed", "max", "--db",
                       f"sqlite:///{tmp_path / 'lab.db'}")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "safety limit voltage_min 2.45 V" in _text(result.stdout)


def test_run_exits_130_when_interrupted(tmp_path: Path, wait_for_rows: Callable[..., object],
                                        start_cellbench: Callable[..., subprocess.Popen[str]]
                                        ) -> None:
    plan = tmp_path / "rest.yaml"
    plan.write_text("name: a long rest\nsteps:\n  - Rest for 10 hours\n")
    db = tmp_path / "lab.db"
    upgrade(f"sqlite:///{db}")  # the tables the wait reads exist from the start
    process = start_cellbench("run", plan, "--channels", "1", "--db", f"sqlite:///{db}")
    wait_for_rows("SELECT status FROM tests", db, [("running",)], alive=process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert "stopped by operator" in stdout


# --- plans ------------------------------------------------------------------------------------

def test_plan_check_warns_of_an_end_condition_beyond_a_safety_limit(cellbench: Cellbench,
                                                                    tmp_path: Path) -> None:
    plan = tmp_path / "trip.yaml"
    plan.write_text(TRIPPING_PLAN.replace("1C until", "C/5 until"))
    result = cellbench("plan", "check", plan)
    assert result.returncode == 0
    assert result.stderr.strip() == (
        f"warning: {plan}:5: the end condition voltage <= 0.0025 V lies below the safety limit "
        "voltage_min 2.45 V: the limit ends the test before this condition can end the step")


def test_an_imported_pybamm_experiment_gets_capacity_and_limits(cellbench: Cellbench,
                                                                tmp_path: Path) -> None:
    steps = ["Discharge at C/5 for 10 minutes", "Rest for 1 minute"]
    bare, full = tmp_path / "bare.yaml", tmp_path / "full.yaml"
    assert cellbench("plan", "import", "--from", "pybamm", *steps, "-o", bare).returncode == 0
    check = cellbench("plan", "check", bare)
    assert check.returncode == 0
    assert f"warning: {bare}:3: C-rates need the battery's capacity" in check.stderr
    assert "add 'capacity: 2.5 Ah' to the plan, or run it with --battery NAME" in check.stderr
    run = cellbench("run", bare, "--channels", "1", "--speed", "max", "--db",
                    f"sqlite:///{tmp_path / 'lab.db'}")
    assert run.returncode == 1 and "C-rate needs the battery's capacity" in run.stderr
    made = cellbench("plan", "import", "--from", "pybamm", *steps, "--capacity", "2.5 Ah",
                     "--limits", "voltage_min=2.45 V,voltage_max=4.25 V", "--limits",
                     "current_max=1C", "-o", full)
    assert made.returncode == 0, made.stderr
    check = cellbench("plan", "check", full)
    assert check.returncode == 0 and not check.stderr
    assert "capacity: 2.5 Ah" in check.stdout and "current_max: 1 C" in check.stdout
    run = cellbench("run", full, "--channels", "1", "--speed", "max", "--db",
                    f"sqlite:///{tmp_path / 'lab.db'}")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(("options", "message"), [
    (["--capacity", "2.5 V"], "--capacity: capacity: expected a charge like '1.2 Ah'"),
    (["--limits", "voltage_mn=2 V"], "--limits: limits.voltage_mn: unknown key 'voltage_mn' "
                                     "(did you mean 'voltage_min'?)"),
    (["--limits", "voltage_min 2 V"], "--limits: expected NAME=VALUE like voltage_min=2.5 V"),
])
def test_bad_capacity_or_limits_of_an_import_name_the_option(
        cellbench: Cellbench, options: list[str], message: str) -> None:
    result = cellbench("plan", "import", "--from", "pybamm", "Rest for 1 hour", *options)
    assert result.returncode == 2
    assert message in _one_error_line(result)


# --- queue ------------------------------------------------------------------------------------

def test_queue_add_refuses_a_channel_the_station_does_not_have(cellbench: Cellbench,
                                                               tmp_path: Path) -> None:
    station = tmp_path / "lab.toml"
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    assert cellbench("station", "init", "-o", station, "--channels", "4", "--db",
                     url).returncode == 0
    result = cellbench("queue", "add", CAPACITY_CHECK, "--channel", "9", "--station", station)
    assert result.returncode == 2
    assert f"--channel 9: {station} has channels 1-4" in _one_error_line(result)
    assert not (tmp_path / "lab.db").exists()  # nothing queued, nothing created
    result = cellbench("queue", "add", CAPACITY_CHECK, "--channel", "4", "--station", station)
    assert result.returncode == 0, result.stderr


# --- station init -----------------------------------------------------------------------------

def test_station_init_with_rci_writes_an_interface_the_station_serves(
        cellbench: Cellbench, tmp_path: Path,
        serve_until_ready: Callable[[Path], tuple[subprocess.Popen[str], str]]) -> None:
    station, port, web = tmp_path / "lab.toml", free_port(), free_port()
    made = cellbench("station", "init", "-o", station, "--channels", "2", "--rci", str(port),
                     "--web", str(web), "--db", f"sqlite:///{tmp_path / 'lab.db'}")
    assert made.returncode == 0, made.stderr
    assert f'tcp = "127.0.0.1:{port}"' in station.read_text()
    assert f'listen = "127.0.0.1:{web}"' in station.read_text()
    process, ready = serve_until_ready(station)
    assert f"rci tcp 127.0.0.1:{port}" in ready
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=30) as page:
        assert page.status == 200 and b"<html" in page.read().lower()
    state = cellbench("rci", "--port", str(port), "STATE?", "ALL")
    assert state.returncode == 0, state.stderr
    assert [line.split()[:2] for line in state.stdout.splitlines()
            if line.split()[:1] in (["1"], ["2"])] == [["1", "idle"], ["2", "idle"]]
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def test_station_init_beyond_loopback_writes_a_token_only_its_owner_reads(
        cellbench: Cellbench, tmp_path: Path) -> None:
    station = tmp_path / "lab.toml"
    made = cellbench("station", "init", "-o", station, "--rci", "0.0.0.0:5025", "--web",
                     "0.0.0.0:8080")
    assert made.returncode == 0, made.stderr
    for kind in ("rci", "web"):
        tokens = tmp_path / f"lab-{kind}-tokens.txt"
        assert f'token_file = "lab-{kind}-tokens.txt"' in station.read_text()
        assert tokens.stat().st_mode & 0o777 == 0o600
        token, role, label = tokens.read_text().split()
        assert len(token) >= 32 and role == "operator" and label == "operator-1"
    local = tmp_path / "local.toml"  # every loopback address is this machine's: no tokens
    made = cellbench("station", "init", "-o", local, "--rci", "[::1]:5025", "--web",
                     "127.0.0.2:8080")
    assert made.returncode == 0, made.stderr
    assert 'tcp = "[::1]:5025"' in local.read_text()
    assert 'listen = "127.0.0.2:8080"' in local.read_text()
    assert "token_file" not in local.read_text()
    refused = cellbench("station", "init", "-o", tmp_path / "other.toml", "--rci", "host:x")
    assert refused.returncode == 2
    assert "--rci: expected [HOST:]PORT like 5025" in _one_error_line(refused)
