"""``cellbench notify test`` through Typer's test runner: a webhook that answers, an MQTT broker,
and a mail server that is not there."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.storage import Outbox, open_database
from cellbench_sdk.testing import HttpReceiver, free_port

runner = CliRunner()

STATION = """\
[station]
name = "lab"
database = "sqlite:///{db}"

[[channels]]
driver = "sim"
"""

NOTIFIERS = """
[[notifiers]]
kind = "webhook"
name = "ops"
[notifiers.settings]
url = "http://127.0.0.1:{hook}/in"

[[notifiers]]
kind = "mqtt"
[notifiers.settings]
host = "{mqtt_host}"
port = {mqtt_port}
topic_prefix = "cbtest-cli"

[[notifiers]]
kind = "mail"
[notifiers.settings]
host = "127.0.0.1"
port = {mail}
sender = "station@lab.example"
recipients = [{{ address = "lab@lab.example" }}]
timeout = "2 s"
"""


def test_every_notifier_is_tried_and_a_failure_is_named(
        tmp_path: Path, mqtt_broker: tuple[str, int]) -> None:
    db = tmp_path / "station.db"
    with HttpReceiver() as hook:
        station = tmp_path / "station.toml"
        station.write_text(STATION.format(db=db) + NOTIFIERS.format(
            hook=hook.port, mqtt_host=mqtt_broker[0], mqtt_port=mqtt_broker[1],
            mail=free_port()), encoding="utf-8")
        database = open_database(f"sqlite:///{db}")
        waiting = {"event_id": "e" * 32, "kind": "alarm", "station": "lab",
                   "unix_time_s": 1.7e9, "title": "ALARM on station lab: kept",
                   "summary": "kept while the hook was away"}
        outbox = Outbox(database, "ops")
        assert outbox.put("", "e" * 32, waiting, 1.7e9)
        # It failed once; its retry is an hour away, but the test shows the hook answers.
        outbox.failed([entry.id for entry in outbox.pending()], "down", time.time() + 3600)
        database.close()
        result = runner.invoke(app, ["notify", "test", "--station", str(station)],
                               env={"COLUMNS": "200"})
        assert result.exit_code == 1, result.output
        lines = result.output.splitlines()
        ops = next(line for line in lines if line.startswith("│ ops "))
        assert f"sent: http://127.0.0.1:{hook.port}/in" in ops and ops.rstrip(" │").endswith("1")
        assert "sent: cbtest-cli/lab/events/test" in next(
            line for line in lines if line.startswith("│ mqtt "))
        mail = next(line for line in lines if line.startswith("│ mail "))
        assert "failed: 127.0.0.1:" in mail and "Connection refused" in mail
        bodies = hook.bodies()
        assert [b["kind"] for b in bodies] == ["test", "alarm"]  # then what had waited
        assert json.loads(hook.requests[1][1])["summary"] == "kept while the hook was away"


def test_a_station_without_notifiers_says_so(tmp_path: Path) -> None:
    station = tmp_path / "station.toml"
    station.write_text(STATION.format(db=tmp_path / "station.db"), encoding="utf-8")
    result = runner.invoke(app, ["notify", "test", "--station", str(station)],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "has no [[notifiers]]" in result.output


def test_a_notifier_that_cannot_start_names_its_section(tmp_path: Path) -> None:
    station = tmp_path / "station.toml"
    station.write_text(STATION.format(db=tmp_path / "station.db") + """
[[notifiers]]
kind = "webhook"
[notifiers.settings]
url = "https://hooks.example/in"
secret = { file = "missing-key" }
""", encoding="utf-8")
    result = runner.invoke(app, ["notify", "test", "--station", str(station)],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "notifiers[0] (webhook) did not start: notifier webhook: secret: cannot read" in \
        " ".join(result.output.split())
