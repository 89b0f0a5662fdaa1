"""Errors a newcomer meets in the first hour, run as the installed ``cellbench`` process: each
is one line naming the problem and the fix, with the exit code documented, and never a
traceback (the ``cellbench`` fixture fails on one)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

Cellbench = Callable[..., subprocess.CompletedProcess[str]]

PLANS = Path(__file__).parents[1] / "plans"
CAPACITY_CHECK = PLANS / "capacity-check.yaml"


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


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


def test_serve_checks_the_station_files_database_url(cellbench: Cellbench,
                                                     tmp_path: Path) -> None:
    station = tmp_path / "lab.toml"
    station.write_text('[station]\nname = "lab"\ndatabase = "mysql://root@127.0.0.1/lab"\n')
    result = cellbench("serve", "--station", station)
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
     "staton: unknown key; did you mean 'station'? (expected one of: station, plugins,"),
    ('[station]\nname = "lab"\n\nchannels = "sim"\n', 4,
     "station.channels: unknown key (expected one of: name, database,"),
    ('channels = "sim"\n', 1, "channels: Input should be a valid list: expected [[channels]] "
                              "tables"),
    ('[station]\nname = "lab"\n\n[[channels]]\ndriver = "simm"\n', 5,
     "channels[0].driver: no channel driver called 'simm' is installed (available: sim"),
    ('[[channels]]\ndriver = "sim"\n[channels.settings]\ncount = 2\ncuont = 3\n', 5,
     "channels[0].settings.cuont: unknown key; did you mean 'count'?"),
], ids=["unknown-section", "key-in-wrong-table", "not-tables", "unknown-driver",
        "unknown-setting"])
def test_station_file_errors_name_file_line_key_and_the_closest_match(
        cellbench: Cellbench, tmp_path: Path, text: str, line: int, expected: str) -> None:
    station = tmp_path / "s1.toml"
    station.write_text(text)
    result = cellbench("run", CAPACITY_CHECK, "--station", station, "--speed", "max",
                       cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: {station}:{line}: {expected}" in _one_error_line(result)
