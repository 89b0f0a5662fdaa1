"""The MQTT notifier against Mosquitto: the machine's broker on 127.0.0.1:1883 for a serving
station's retained states, live samples and events; a Mosquitto of the test's own, stopped and
started again, for QoS 1 events across a broker restart; a killed station for the last will."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
import pytest
import trustme
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError

from cellbench_core.plugins import PluginManager
from cellbench_core.service import StationService
from cellbench_core.station import Station, station_from_dict
from cellbench_core.storage import open_database
from cellbench_core.storage.queue import TestQueue
from cellbench_mqtt.notifier import MqttNotifier, topic_part
from cellbench_mqtt.settings import MqttSettings
from cellbench_sdk import PlanMessage, VirtualClock
from cellbench_sdk.notify import DeliveryError
from cellbench_sdk.testing import NotifierContract, NotifierStation, free_port

PLAN = """\
name: short
steps:
  - Rest for 2 minutes
  - message: cell rested
  - Charge at 0.5 A for 1 minute
"""


class Subscriber:
    """A paho client subscribed to ``<prefix>/#``, keeping (topic, payload, retained) of every
    message in arrival order."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"sub-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe(f"{prefix}/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "the broker did not confirm the subscription"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))

    def on(self, suffix: str) -> list[str]:
        """The payloads received on topics ending in ``suffix``, in order."""
        with self._lock:
            return [payload for topic, payload, _ in self.messages if topic.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    return f"cbtest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def subscribe() -> Iterator[Callable[[str, int, str], Subscriber]]:
    made: list[Subscriber] = []

    def make(host: str, port: int, prefix: str) -> Subscriber:
        made.append(Subscriber(host, port, prefix))
        return made[-1]

    yield make
    for subscriber in made:
        subscriber.close()


def _installed(name: str) -> str:
    """The path of a Mosquitto program; skips the test when it is missing (fails it under CI)."""
    binary = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    if binary is None:
        reason = f"{name} is not installed (apt-get install mosquitto)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


class Mosquitto:
    """A Mosquitto broker of the test's own on 127.0.0.1:``port``, without persistence; with
    ``tls`` (a server certificate by ``ca``) and ``login`` (user, password) it speaks TLS only
    and lets in only that user."""

    def __init__(self, folder: Path, port: int, *, ca: trustme.CA | None = None,
                 login: tuple[str, str] | None = None) -> None:
        binary = _installed("mosquitto")
        lines = [f"listener {port} 127.0.0.1", "persistence false"]
        if os.geteuid() == 0:  # else Mosquitto becomes user mosquitto, who cannot read tmp_path
            lines.append("user root")
        if ca is not None:
            issued = ca.issue_cert("127.0.0.1", "localhost")
            ca.cert_pem.write_to_path(str(folder / "broker-ca.pem"))
            issued.cert_chain_pems[0].write_to_path(str(folder / "broker.pem"))
            issued.private_key_pem.write_to_path(str(folder / "broker.key"))
            lines += [f"cafile {folder / 'broker-ca.pem'}", f"certfile {folder / 'broker.pem'}",
                      f"keyfile {folder / 'broker.key'}"]
        if login is not None:
            passwords = folder / "passwords"
            subprocess.run([_installed("mosquitto_passwd"), "-c", "-b", str(passwords), *login],
                           check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.binary, self.port = binary, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait_until: Callable[..., Any]) -> None:
        import socket

        self.process = subprocess.Popen([self.binary, "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_until(listening, f"mosquitto on port {self.port}", alive=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path, free_port())
    yield broker
    broker.stop()


@pytest.fixture
def station(tmp_path: Path) -> Iterator[NotifierStation]:
    made = NotifierStation(tmp_path)
    yield made
    made.close()


def settings(port: int, prefix: str, **changes: Any) -> MqttSettings:
    return MqttSettings.model_validate({"port": port, "topic_prefix": prefix,
                                        "retry_first": "20 ms", "retry_max": "200 ms",
                                        **changes})


def test_a_serving_station_publishes_states_samples_and_events(
        tmp_path: Path, mqtt_broker: tuple[str, int], prefix: str,
        subscribe: Callable[[str, int, str], Subscriber],
        serve_until: Callable[..., None], wait_until: Callable[..., Any]) -> None:
    host, port = mqtt_broker
    subscriber = subscribe(host, port, prefix)
    db = open_database(f"sqlite:///{tmp_path / 'station.db'}")
    manager = PluginManager()
    manager.load()
    station = Station(station_from_dict({
        "station": {"name": "lab/1", "database": db.url, "sample_period": "1 s",
                    "queue_poll_interval": "0.02 s"},
        "channels": [{"driver": "sim", "settings": {"count": 2, "seed": 1}}],
        "notifiers": [{"kind": "mqtt", "settings": {
            "host": host, "port": port, "topic_prefix": prefix, "live_every": 10,
            "state_interval": "1 ms"}}]}), manager, base_dir=tmp_path)
    entry = TestQueue(db).add(2, PLAN, name="rested")
    service = StationService(station, db, VirtualClock(200.0), manager.hook)
    serve_until(service)
    test_id = TestQueue(db).entry(entry).test_id  # type: ignore[union-attr]
    assert test_id is not None
    base = f"{prefix}/lab_1"
    events = wait_until(lambda: subscriber.on("/events/test_finished"), "the test's end")
    finished = json.loads(events[0])
    assert (finished["kind"], finished["test_id"], finished["channel"], finished["status"]) == \
        ("test_finished", test_id, "2", "finished")
    kinds = [json.loads(p)["kind"] for t, p, _ in subscriber.messages if "/events/" in t]
    assert kinds == ["test_started", "step_changed", "message", "step_changed", "test_finished"]
    message = json.loads(subscriber.on("/events/message")[0])
    assert message["summary"].endswith("(plan line 4): cell rested")
    assert len(message["event_id"]) == 32 and message["station"] == "lab/1"
    live = [json.loads(p) for p in subscriber.on(f"{base}/channel/2/live")]
    samples = len(db.samples(test_id, ["seq"])["seq"])  # about 3 minutes of them
    assert [s["seq"] for s in live] == list(range(10, samples + 1, 10))
    assert all(3.0 < s["voltage_v"] < 4.3 and s["test_id"] == test_id for s in live)
    assert not subscriber.on(f"{base}/channel/1/live")  # nothing ran there
    states = [json.loads(p) for p in subscriber.on(f"{base}/channel/2/state")]
    assert states[0]["state"] == "running" and states[-1]["state"] == "idle"
    assert states[-1]["status"] == "finished" and states[-1]["test_name"] == "rested"
    assert any(s["step"] == "Charge at 0.5 A for 1 minute" and s["voltage_v"] for s in states)
    assert subscriber.on(f"{base}/status")[-1] == "offline"  # a clean stop says so
    subscriber.close()
    late = subscribe(host, port, prefix)  # what a dashboard that connects now sees
    retained = wait_until(lambda: late.messages, "the retained messages",
                          check=lambda m: len(m) >= 2)
    assert all(r for _, _, r in retained)
    assert json.loads(late.on("/channel/2/state")[-1])["state"] == "idle"
    db.close()


def test_events_wait_for_a_restarted_broker_and_arrive_in_order_with_their_ids(
        station: NotifierStation, own_broker: Mosquitto, prefix: str,
        subscribe: Callable[[str, int, str], Subscriber],
        wait_until: Callable[..., Any]) -> None:
    own_broker.start(wait_until)
    notifier = station.start(MqttNotifier(settings(own_broker.port, prefix)))
    first = subscribe("127.0.0.1", own_broker.port, prefix)
    notifier.message(PlanMessage(station.test_id, "bench/1", 1, "before"))
    wait_until(lambda: first.on("/events/message"), "the first event")
    own_broker.stop()
    for n in range(3):
        notifier.message(PlanMessage(station.test_id, "bench/1", 2 + n, f"while down {n}"))
    wait_until(lambda: station.outbox(), "failed attempts",
               check=lambda rows: len(rows) == 4 and rows[1][1] == "pending" and rows[1][2] >= 1)
    own_broker.start(wait_until)
    second = subscribe("127.0.0.1", own_broker.port, prefix)
    received = wait_until(lambda: second.on("/events/message"), "the kept events",
                          check=lambda r: len({json.loads(p)["event_id"] for p in r}) == 3)
    seen: list[str] = []
    for payload in received:  # a receiver drops an event id it has seen (QoS 1 may repeat)
        event = json.loads(payload)
        if event["event_id"] not in {json.loads(p)["event_id"] for p in seen}:
            seen.append(payload)
    assert [json.loads(p)["summary"].rsplit(": ", 1)[1] for p in seen] == [
        "while down 0", "while down 1", "while down 2"]
    wait_until(lambda: [row[1] for row in station.outbox()], "the outbox marked",
               check=lambda statuses: statuses == ["delivered"] * 4)
    wait_until(lambda: second.on(f"{prefix}/bench/status"), "online again",
               check=lambda s: s and s[-1] == "online")


LAST_WILL_STATION = """
import sys, time
from pathlib import Path
from cellbench_mqtt.notifier import MqttNotifier
from cellbench_mqtt.settings import MqttSettings
from cellbench_sdk.testing import NotifierStation

station = NotifierStation(Path(sys.argv[1]))
station.start(MqttNotifier(MqttSettings(host=sys.argv[2], port=int(sys.argv[3]),
                                        topic_prefix=sys.argv[4])))
print("started", flush=True)
time.sleep(600)
"""


def test_the_last_will_marks_a_station_that_died_offline(
        tmp_path: Path, mqtt_broker: tuple[str, int], prefix: str,
        subscribe: Callable[[str, int, str], Subscriber],
        wait_until: Callable[..., Any]) -> None:
    host, port = mqtt_broker
    subscriber = subscribe(host, port, prefix)
    process = subprocess.Popen([sys.executable, "-c", LAST_WILL_STATION, str(tmp_path), host,
                                str(port), prefix], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "started\n"
        wait_until(lambda: subscriber.on(f"{prefix}/bench/status"), "the station online",
                   check=lambda s: s == ["online"], alive=process)
        process.send_signal(signal.SIGKILL)  # no clean stop: only the broker can tell
        process.wait(10)
        wait_until(lambda: subscriber.on(f"{prefix}/bench/status"), "the last will",
                   check=lambda s: s == ["online", "offline"])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_tls_and_a_login_from_a_file(
        station: NotifierStation, tmp_path: Path, prefix: str,
        wait_until: Callable[..., Any]) -> None:
    ca = trustme.CA()
    broker = Mosquitto(tmp_path, free_port(), ca=ca, login=("station", "s3cret broker"))
    broker.start(wait_until)
    try:
        (tmp_path / "mqtt-password").write_text("s3cret broker\n", encoding="utf-8")
        common = {"tls": True, "ca_file": "broker-ca.pem", "username": "station"}
        good = station.start(MqttNotifier(settings(broker.port, prefix, **common,
                                                   password={"file": "mqtt-password"})))
        good.message(PlanMessage(station.test_id, "bench/1", 1, "over TLS"))
        wait_until(lambda: station.outbox(), "the event delivered over TLS",
                   check=lambda rows: rows and rows[0][1] == "delivered")
        (tmp_path / "wrong").write_text("guess\n", encoding="utf-8")
        refused = station.start(MqttNotifier(settings(
            broker.port, prefix, **common, password={"file": "wrong"}, timeout="1 s")),
            name="wrong")
        untrusting = station.start(MqttNotifier(settings(  # the system's CAs know no trustme CA
            broker.port, prefix, tls=True, username="station",
            password={"file": "mqtt-password"}, timeout="1 s")), name="untrusting")
        for notifier in (refused, untrusting):
            with pytest.raises(DeliveryError, match="no connection to the broker"):
                notifier.send_test()
    finally:
        broker.stop()


def test_a_broker_that_is_not_there_keeps_the_events_and_alarms(
        station: NotifierStation, prefix: str, wait_until: Callable[..., Any]) -> None:
    notifier = station.start(MqttNotifier(settings(free_port(), prefix, alarm_after="1 ms")))
    notifier.message(PlanMessage(station.test_id, "bench/1", 1, "nobody listens"))
    failed = wait_until(lambda: station.events("notifier_failed"), "the failure recorded")
    assert "not connected to the broker 127.0.0.1:" in failed[0]
    wait_until(lambda: station.alarms, "the outbox's alarm")
    assert station.outbox()[0][1] == "pending"


def test_settings_refuse_a_password_in_clear_and_name_topics_safely() -> None:
    with pytest.raises(ValidationError, match="a password without tls = true goes to the "
                                              "broker in clear"):
        MqttSettings.model_validate({"username": "u", "password": {"env": "X"}})
    with pytest.raises(ValidationError, match="ca_file applies to tls = true only"):
        MqttSettings.model_validate({"ca_file": "ca.pem"})
    with pytest.raises(ValidationError, match="topic_prefix"):
        MqttSettings.model_validate({"topic_prefix": "lab/#"})
    assert topic_part("bench/1+#") == "bench_1__"


class TestMqttContract(NotifierContract):
    """The notifier contract, on an MQTT notifier that is never started (events wait in it)."""

    plugin = "cellbench_mqtt.plugin"
    name = "mqtt"
    cases: ClassVar[dict[str, dict[str, Any]]] = {"defaults": {}}
