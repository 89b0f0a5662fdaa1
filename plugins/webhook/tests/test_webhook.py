"""The webhook notifier against HTTP servers on loopback (http.server in a thread; HTTPS with a
trustme certificate): signatures, retries with back-off, refusals, chat templates, and a serving
station whose message step, safety-limit trip, test stop and station stop each give exactly the
notifications configured."""

from __future__ import annotations

import hmac
import json
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trustme
from pydantic import ValidationError

from cellbench_core.plugins import PluginManager
from cellbench_core.service import StationService
from cellbench_core.station import Station, station_from_dict
from cellbench_core.storage import open_database
from cellbench_core.storage.queue import QueueStatus, TestQueue
from cellbench_sdk import Alarm, PlanMessage, VirtualClock
from cellbench_sdk.testing import HttpReceiver, NotifierContract, NotifierStation
from cellbench_webhook.notifier import WebhookNotifier, signature
from cellbench_webhook.settings import WebhookSettings

SECRET = "a long random signing key"


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifierStation]:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    made = NotifierStation(tmp_path)
    yield made
    made.close()


def settings(url: str, **changes: Any) -> WebhookSettings:
    return WebhookSettings.model_validate({"url": url, "secret": {"env": "HOOK_SECRET"},
                                           "retry_first": "20 ms", "retry_max": "100 ms",
                                           **changes})


def test_each_notification_is_posted_signed_with_its_event_id(
        station: NotifierStation, hook: HttpReceiver, wait_until: Callable[..., Any]) -> None:
    notifier = station.start(WebhookNotifier(settings(f"http://127.0.0.1:{hook.port}/in")))
    notifier.alarm(Alarm("bench/1", station.test_id, "voltage above 4.25 V"))
    wait_until(lambda: hook.requests, "the alarm's POST")
    (headers, body), = hook.requests
    expected = signature(SECRET.encode(), headers["X-Cellbench-Timestamp"], body)
    assert hmac.compare_digest(headers["X-Cellbench-Signature"], expected)
    assert signature(b"another key", headers["X-Cellbench-Timestamp"], body) != expected
    payload = json.loads(body)
    assert headers["X-Cellbench-Event-Id"] == payload["event_id"]
    assert (payload["kind"], payload["channel"], payload["test_id"], payload["battery"]) == \
        ("alarm", "bench/1", station.test_id, "cell-A")
    assert payload["values"]["voltage_v"] == pytest.approx(3.96)
    assert payload["severity"] == "error" and "output off" in payload["station_action"]


def test_failures_are_retried_with_back_off_in_order_and_a_refusal_is_final(
        station: NotifierStation, hook: HttpReceiver, wait_until: Callable[..., Any]) -> None:
    hook.statuses = [503, 503, 429, 404]  # three "later", then "this request is wrong"
    notifier = station.start(WebhookNotifier(settings(f"http://127.0.0.1:{hook.port}/in")))
    for n in range(3):
        notifier.message(PlanMessage(station.test_id, "bench/1", n, f"message {n}"))
    wait_until(lambda: [row[1] for row in station.outbox()], "every message settled",
               check=lambda statuses: len(statuses) == 3 and "pending" not in statuses)
    # The first waited behind three answers that said "later" (the others behind it), then
    # the 404 was final for it alone.
    assert [(row[1], row[2]) for row in station.outbox()] == [
        ("rejected", 3), ("delivered", 0), ("delivered", 0)]
    assert [b["summary"].rsplit(": ", 1)[1] for b in hook.bodies()] == ["message 1", "message 2"]
    assert "answered 404" in station.events("notifier_rejected")[0]
    assert "answered 503" in station.events("notifier_failed")[0]


def test_https_is_verified_against_the_given_ca(
        station: NotifierStation, tmp_path: Path, wait_until: Callable[..., Any]) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    secure = HttpReceiver(server_tls)
    try:
        good = station.start(WebhookNotifier(settings(f"https://127.0.0.1:{secure.port}/",
                                                      ca_file="ca.pem")))
        good.message(PlanMessage(station.test_id, "bench/1", 1, "over TLS"))
        wait_until(lambda: secure.requests, "the POST over TLS")
        untrusting = station.start(WebhookNotifier(settings(f"https://127.0.0.1:{secure.port}/")),
                                   name="untrusting")  # the system's CAs do not know trustme's
        untrusting.message(PlanMessage(station.test_id, "bench/1", 2, "refused"))
        failed = wait_until(lambda: station.events("notifier_failed"), "the refusal")
        assert "certificate is not trusted" in failed[0]
        assert len(secure.requests) == 1
    finally:
        secure.close()


@pytest.mark.parametrize(("template", "key"), [("slack", "text"), ("mattermost", "text"),
                                               ("teams", "text"), ("discord", "content")])
def test_chat_templates_post_text(station: NotifierStation, hook: HttpReceiver, template: str,
                                  key: str, wait_until: Callable[..., Any]) -> None:
    notifier = station.start(WebhookNotifier(settings(f"http://localhost:{hook.port}/",
                                                      template=template)))
    notifier.message(PlanMessage(station.test_id, "bench/1", 7, "check the probe"))
    body, = wait_until(hook.bodies, "the chat message")
    assert list(body) == [key]
    assert "Channel bench/1: check the probe" in body[key] and "Battery: cell-A" in body[key]


def test_settings_refuse_plain_http_to_another_machine_and_bad_urls() -> None:
    with pytest.raises(ValidationError, match="http:// URL to another machine sends the "
                                              "notifications .* in clear"):
        WebhookSettings(url="http://hooks.example.org/x")
    with pytest.raises(ValidationError, match="url must be an http:// or https:// URL"):
        WebhookSettings(url="ftp://hooks.example.org/x")
    assert WebhookSettings(url="http://hooks.example.org/x", allow_insecure=True)


def test_a_missing_secret_names_itself(station: NotifierStation) -> None:
    with pytest.raises(ValueError, match="notifier notifier: secret: cannot read .*no-such-key"):
        station.start(WebhookNotifier(WebhookSettings.model_validate(
            {"url": "https://h.example/", "secret": {"file": "no-such-key"}})))


MESSAGE_PLAN = """\
name: with a message
steps:
  - Rest for 2 minutes
  - message: check the probe
  - Rest for 1 minute
"""
TRIP_PLAN = """\
name: trips
limits:
  voltage_max: 3.9 V
steps:
  - Charge at 2 A for 2 hours
"""
LONG_PLAN = """\
name: long
steps:
  - Rest for 1000 hours
"""


def test_a_station_sends_exactly_the_notifications_configured(
        tmp_path: Path, hook: HttpReceiver, serve_until: Callable[..., None],
        wait_until: Callable[..., Any]) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'station.db'}")
    manager = PluginManager()
    manager.load()
    station = Station(station_from_dict({
        "station": {"name": "lab", "database": db.url, "sample_period": "10 s",
                    "queue_poll_interval": "0.02 s"},
        "channels": [{"driver": "sim", "settings": {"count": 4, "seed": 1}}],
        "notifiers": [{"kind": "webhook", "name": "ops", "settings": {
            "url": f"http://127.0.0.1:{hook.port}/", "events": ["message", "alarm",
                                                             "test_finished"]}}]}),
        manager, base_dir=tmp_path)
    queue = TestQueue(db)
    entries = [queue.add(n, plan) for n, plan in
               enumerate((MESSAGE_PLAN, TRIP_PLAN, LONG_PLAN, LONG_PLAN), start=1)]
    service = StationService(station, db, VirtualClock(1000.0), manager.hook)

    def status(entry: int) -> QueueStatus:
        found = queue.entry(entry)
        assert found is not None
        return found.status

    def stop_the_third() -> None:
        wait_until(lambda: [status(e) for e in entries[:2]], "the first two tests' ends",
                   check=lambda s: s == [QueueStatus.FINISHED, QueueStatus.STOPPED])
        service.runner.stop(3, "stopped by operator")

    serve_until(service, done=lambda: status(entries[2]) is QueueStatus.STOPPED,
                during=stop_the_third)  # then the station stops, with channel 4's test running
    sent = sorted((b["channel"], b["kind"], b["status"] or "") for b in hook.bodies())
    assert sent == [("1", "message", ""), ("1", "test_finished", "finished"),
                    ("2", "alarm", ""), ("2", "test_finished", "stopped"),
                    ("3", "test_finished", "stopped"), ("4", "test_finished", "stopped")]
    by_kind = {(b["channel"], b["kind"]): b for b in hook.bodies()}
    assert "safety limit voltage_max 3.9 V" in by_kind["2", "alarm"]["summary"]
    assert by_kind["3", "test_finished"]["summary"].endswith("was stopped: stopped by "
                                                             "operator.")
    assert by_kind["4", "test_finished"]["summary"].endswith("was stopped: station stopped.")
    # Step changes were not sent, yet a message says in which step it came, and the values.
    assert by_kind["1", "message"]["step"] == "Rest for 2 minutes"
    assert by_kind["1", "message"]["values"]["voltage_v"] > 3
    db.close()


def test_a_peer_that_never_answers_stalls_neither_the_tests_nor_the_station(
        tmp_path: Path, serve_until: Callable[..., None]) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        db = open_database(f"sqlite:///{tmp_path / 'station.db'}")
        manager = PluginManager()
        manager.load()
        station = Station(station_from_dict({
            "station": {"name": "lab", "database": db.url, "sample_period": "10 s",
                        "queue_poll_interval": "0.02 s"},
            "channels": [{"driver": "sim", "settings": {"count": 2, "seed": 1}}],
            "notifiers": [{"kind": "webhook", "settings": {
                "url": f"http://127.0.0.1:{silent.getsockname()[1]}/",
                "events": ["test_started", "step_changed", "message", "test_finished"],
                "timeout": "300 ms", "retry_first": "1 h"}}]}), manager, base_dir=tmp_path)
        queue = TestQueue(db)
        entries = [queue.add(n, MESSAGE_PLAN) for n in (1, 2)]
        serve_until(StationService(station, db, VirtualClock(1000.0), manager.hook))
        assert [queue.entry(e).status for e in entries] == [  # type: ignore[union-attr]
            QueueStatus.FINISHED, QueueStatus.FINISHED]
        with db.engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT status, last_error FROM notify_outbox ORDER BY id").all()
        assert len(rows) == 2 * 5 and {status for status, _ in rows} == {"pending"}
        assert "timed out" in rows[0][1]  # the first tried once; the rest wait behind it
        db.close()


class TestWebhookContract(NotifierContract):
    """The notifier contract, on a webhook notifier that is never started."""

    plugin = "cellbench_webhook.plugin"
    name = "webhook"
    cases: ClassVar[dict[str, dict[str, Any]]] = {"json": {"url": "https://hooks.example/in"}}
