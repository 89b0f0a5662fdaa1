"""``cellbench web --db``: read-only over a central database fed by two stations (``cellbench
sync --target central-sql``), served by a real process on loopback with a token file and page
logins; its refusals."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from cellbench_core.cli import app as cellbench
from cellbench_sdk.peer import free_port
from cellbench_web.cli import register

PATIENCE_S = 60.0
runner = CliRunner()
CLI = [sys.executable, "-c", "from cellbench_core.cli import main; main()"]


@pytest.fixture
def web_db() -> Iterator[Callable[..., str]]:
    """``web_db(url, *options)``: ``cellbench web --db url`` serving on a free loopback port;
    its base URL. Stopped at the end of the test."""
    started: list[subprocess.Popen[str]] = []

    def serve(url: str, *options: str) -> str:
        process = subprocess.Popen(
            [*CLI, "web", "--db", url, "--listen", f"127.0.0.1:{free_port()}", *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "cellbench web ready: " in line, (line, process.stderr and process.stderr.read())
        threading.Thread(target=process.stdout.read, daemon=True).start()
        return line.split("ready: ", 1)[1].strip().rstrip("/")

    yield serve
    for process in started:
        process.terminate()
        assert process.wait(PATIENCE_S) == 0


@pytest.fixture(scope="module")
def web_cli() -> typer.Typer:
    """A command line holding ``web`` as the plugin registers it."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """cellbench"""

    register(app)
    return app


def _sync(station_db: str, central: str, station: str) -> None:
    done = runner.invoke(cellbench, ["sync", "--db", station_db, "--target", "central-sql",
                                     "-s", f"url={central}", "-s", f"station={station}",
                                     "--once"])
    assert done.exit_code == 0, done.output


def test_central_database_of_two_stations(tmp_path: Path, new_bench: Callable[..., Any],
                                          web_db: Callable[..., str]) -> None:
    central = f"sqlite:///{tmp_path / 'central.sqlite3'}"
    for station, tests in (("lab-1", 2), ("lab-2", 1)):
        bench = new_bench()
        ids = bench.start(tests)
        bench.write(ids, 120)
        bench.finish(ids)
        _sync(bench.db.url, central, station)
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# who may look\nlab-operator-token-0123 operator\n", encoding="utf-8")
    url = web_db(central, "--token-file", str(tokens))
    with httpx.Client(base_url=url, timeout=PATIENCE_S) as http:
        assert http.get("/api/tests").status_code == 401
        assert http.get("/", follow_redirects=False).headers["location"] == "/login?next=%2F"
        wrong = http.post("/login", data={"token": "nope", "next": "/tests"})
        assert wrong.status_code == 401 and "unknown token" in wrong.text
        login = http.post("/login", data={"token": "lab-operator-token-0123",
                                          "next": "/tests"}, follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/tests"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        info = http.get("/api/station").json()
        # a read-only server caps every role at viewer
        assert (info["name"], info["live"], info["role"]) == ("central", False, "viewer")
        assert [(s["name"], s["tests"]) for s in http.get("/api/stations").json()] == [
            ("lab-1", 2), ("lab-2", 1)]
        assert [(t["station"], t["id"]) for t in http.get("/api/tests").json()] == [
            ("lab-1", 2), ("lab-1", 1), ("lab-2", 1)]
        assert [t["id"] for t in http.get("/api/tests",
                                          params={"station": "lab-2"}).json()] == [1]
        assert [c["name"] for c in http.get("/api/stations/lab-1/channels").json()] == [
            "sim/0", "sim/1"]
        test = http.get("/api/stations/lab-2/tests/1").json()
        assert (test["station"], test["battery"], test["status"]) == ("lab-2", "cell-A",
                                                                      "finished")
        assert [c["cycle"] for c in http.get("/api/stations/lab-2/tests/1/cycles").json()] \
            == [1]
        assert len(http.get("/api/stations/lab-2/tests/1/steps").json()) == 2
        page = http.get("/api/stations/lab-2/tests/1/samples",
                        params={"columns": "seq,voltage_v", "limit": 1000}).json()
        assert [row[0] for row in page["rows"]] == list(range(1, 121))
        assert page["rows"][0][1] is None  # every seventh voltage was not measured
        assert http.get("/api/stations/lab-3/tests/1").status_code == 404
        # Read-only: the control routes do not exist here.
        assert http.post("/api/channels/1/stop").status_code in (404, 405)
        assert http.get("/api/channels").status_code == 404
        home = http.get("/").text
        assert 'data-station="lab-1"' in home and 'data-station="lab-2"' in home
        listed = http.get("/tests", params={"station": "lab-1"}).text
        assert listed.count('class="compare"') == 2
        detail = http.get("/stations/lab-1/tests/2").text
        assert "Test 2: cycle Ölbad 1" in detail
        http.post("/logout")
        assert http.get("/api/tests").status_code == 401


def test_station_database_needs_tokens_beyond_loopback(tmp_path: Path, bench: Any,
                                                       web_cli: typer.Typer) -> None:
    refused = runner.invoke(web_cli, ["web", "--db", bench.db.url, "--listen", "0.0.0.0:0"])
    assert refused.exit_code == 2
    assert "reachable from other machines: give --token-file" in refused.output
    missing = runner.invoke(web_cli, ["web", "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert missing.exit_code == 2 and "no cellbench database" in missing.output
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("a-token-of-some-length admin\n", encoding="utf-8")
    bad_file = runner.invoke(web_cli, ["web", "--db", bench.db.url, "--token-file",
                                       str(tokens)])
    assert bad_file.exit_code == 2 and "tokens.txt:1: expected" in bad_file.output
