"""The MQTT notifier: channel states, live samples and the station's events on an MQTT broker.

Topics under ``<topic_prefix>/<station>/`` (docs/notifications.md):

- ``status``: ``online``, retained; the last will sets ``offline`` when the station vanishes,
  and a clean stop sets it too;
- ``channel/<channel>/state``: retained JSON: idle/running/paused, test, step, cycle, the
  latest voltage, current and temperature; updated at every event of the channel and, while it
  runs, every ``state_interval``;
- ``channel/<channel>/live``: JSON of every ``live_every``-th sample, QoS 0 (live data: a
  missed one is replaced by the next);
- ``events/<kind>``: each selected event's notification as JSON at QoS 1, through the outbox:
  kept while the broker is away, published in order, ``event_id`` in the payload.

paho-mqtt's network thread keeps the connection (reconnecting on its own). Samples come from the
serving station's control API on its event loop: they are only queued there, and published
from the notifier's own thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cellbench_mqtt.settings import MqttSettings
from cellbench_sdk import StepChanged, TestFinished, TestStarted
from cellbench_sdk.control import LiveSample, StationControl, Subscription
from cellbench_sdk.notify import (
    DeliveryError,
    Notification,
    NotifierContext,
    OutboxNotifier,
    tls_context,
)

log = logging.getLogger(__name__)

#: What a channel's state says it does.
IDLE, RUNNING, PAUSED = "idle", "running", "paused"


def topic_part(name: str) -> str:
    """``name`` as one topic level: MQTT's separators and wildcards become ``_``."""
    return "".join("_" if c in "/+#" else c for c in name) or "_"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN


class MqttNotifier(OutboxNotifier):
    """Publishes the station's channels and events to an MQTT broker."""

    #: Events go out many at a time (each its own QoS 1 message): a thousand tests starting
    #: at once must not wait for a thousand round trips one after another.
    batch_max = 100

    def __init__(self, settings: MqttSettings) -> None:
        super().__init__(settings)
        self.mqtt = settings
        self._client: mqtt.Client | None = None
        self._base = ""
        self._states: dict[str, dict[str, Any]] = {}  # channel -> its retained state
        self._states_lock = threading.Lock()
        self._ended: set[int] = set()  # tests whose end was published: no sample revives them
        # (sample, when, publish it live, the channel's state to publish or None); None: stop.
        # Handed over one by one: the publisher publishes while the tick goes on (gathering a
        # tick's samples and handing them over together made bench_mqtt.py's p95 2-4x longer).
        self._samples: queue.SimpleQueue[tuple[LiveSample, float, bool, str | None] | None] = \
            queue.SimpleQueue()
        self._publisher: threading.Thread | None = None
        self._subscriptions: list[Subscription] = []
        self._counts: dict[int, int] = {}
        self._state_due: dict[int, float] = {}
        self._control: StationControl | None = None
        self._connected = threading.Event()

    # ---- connection --------------------------------------------------------------------------

    def open(self, context: NotifierContext) -> None:
        """Connect to the broker (in the background: paho retries until it answers), with the
        last will; subscribe to the live samples of a serving station."""
        settings = self.mqtt
        where = f"notifier {context.name}"
        self._base = f"{settings.topic_prefix}/{topic_part(context.station)}"
        client_id = settings.client_id or f"cellbench-{context.station}-{context.name}"[:64]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=True)
        if settings.tls:
            client.tls_set_context(tls_context(settings.ca_file, context.base_dir,
                                               f"{where}: ca_file"))
        if settings.password is not None:
            if not settings.tls:
                log.warning("%s: the MQTT password goes to %s:%d in clear (tls = false, "
                            "allow_insecure = true)", where, settings.host, settings.port)
            client.username_pw_set(settings.username,
                                   settings.password.read(f"{where}: password", context.base_dir))
        client.will_set(self._status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive)
        client.loop_start()
        self._publisher = threading.Thread(target=self._publish_samples,
                                           name=f"mqtt-live-{context.name}", daemon=True)
        self._publisher.start()
        control = context.control
        if control is not None:
            self._control = control
            for number in control.channel_numbers():
                self._subscriptions.append(control.subscribe(number, self._sample))

    @property
    def _status_topic(self) -> str:
        return f"{self._base}/status"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.warning("notifier %s: the broker %s:%d refused the connection: %s", self._name,
                        self.mqtt.host, self.mqtt.port, reason)
            return
        log.info("notifier %s: connected to %s:%d", self._name, self.mqtt.host, self.mqtt.port)
        self._connected.set()
        client.publish(self._status_topic, "online", qos=1, retain=True)
        with self._states_lock:
            states = list(self._states.items())
        for channel, state in states:  # a restarted broker may have lost them
            client.publish(self._state_topic(channel), json.dumps(state), qos=1, retain=True)
        self.retry_now()  # the events that waited for the broker

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self._connected.clear()
        if reason.is_failure:
            log.warning("notifier %s: lost the broker %s:%d (%s); reconnecting", self._name,
                        self.mqtt.host, self.mqtt.port, reason)

    def close(self) -> None:
        """Stop the live samples, deliver what is due, mark the station offline, disconnect.
        Idempotent."""
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
        super().close()

    def shut(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            self._samples.put(None)
            publisher.join(self.mqtt.timeout)
        client, self._client = self._client, None
        if client is None:
            return
        if client.is_connected():
            info = client.publish(self._status_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # gone: the last will says it
                info.wait_for_publish(self.mqtt.timeout)
        client.disconnect()
        client.loop_stop()

    def send_test(self) -> list[str]:
        """Wait for the connection (at most ``timeout``), then publish a test event to
        ``events/test``."""
        if not self._connected.wait(self.mqtt.timeout):
            raise DeliveryError(f"no connection to the broker {self.mqtt.host}:{self.mqtt.port} "
                                f"within {self.mqtt.timeout:g} s")
        return super().send_test()

    def test_destinations(self) -> list[str]:
        return [f"{self._base}/events/test"]  # where deliver() publishes it

    # ---- events ------------------------------------------------------------------------------

    def _state_topic(self, channel: str) -> str:
        return f"{self._base}/channel/{topic_part(channel)}/state"

    def _set_state(self, channel: str, sample_of: int | None = None, **changes: Any) -> None:
        """Change what the channel's retained state says, and publish it (under the lock: two
        threads' states reach the broker in the order they were made). A sample's change
        (``sample_of`` its test) is dropped once that test's end was published."""
        with self._states_lock:
            if sample_of is not None and sample_of in self._ended:
                return
            state = self._states.setdefault(channel, {
                "station": self.context.station if self.context else None, "channel": channel,
                "state": IDLE, "test_id": None, "test_name": None, "step": None,
                "plan_line": None, "cycle": None, "voltage_v": None, "current_a": None,
                "temperature_c": None, "test_time_s": None, "status": None})
            state.update(changes, unix_time_s=time.time())
            client = self._client
            if client is not None and client.is_connected():
                client.publish(self._state_topic(channel), json.dumps(state), qos=1,
                               retain=True)

    def test_started(self, event: TestStarted) -> None:
        self._set_state(event.channel, state=RUNNING, test_id=event.test_id,
                        test_name=event.name, step=None, plan_line=None, cycle=None,
                        status="running")
        super().test_started(event)

    def step_changed(self, event: StepChanged) -> None:
        self._set_state(event.channel, test_id=event.test_id, step=event.text,
                        plan_line=event.plan_line, cycle=event.cycle)
        super().step_changed(event)

    def test_finished(self, event: TestFinished) -> None:
        with self._states_lock:
            self._ended.add(event.test_id)
        self._set_state(event.channel, state=IDLE, test_id=event.test_id,
                        status=event.status.value)
        super().test_finished(event)

    def deliver(self, destination: str, notifications: list[Notification]) -> None:
        """Publish each notification to ``events/<kind>`` at QoS 1 and wait for the broker's
        acknowledgements."""
        client = self._client
        settings = self.mqtt
        if client is None or not client.is_connected():
            raise DeliveryError(f"not connected to the broker {settings.host}:{settings.port}")
        published = [client.publish(f"{self._base}/events/{notification.kind}",
                                    json.dumps(notification.to_dict()), qos=1)
                     for notification in notifications]
        deadline = time.monotonic() + settings.timeout
        for info in published:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as err:
                raise DeliveryError(f"{settings.host}:{settings.port}: {err}") from err
            if not info.is_published():
                raise DeliveryError(f"{settings.host}:{settings.port}: no acknowledgement "
                                    f"within {settings.timeout:g} s")

    # ---- live samples ------------------------------------------------------------------------

    def _sample(self, sample: LiveSample) -> None:
        """A new sample of a channel, on the station's event loop: queue what is due (its
        publication every ``live_every`` samples; the channel's state every
        ``state_interval``)."""
        number = sample.channel
        count = self._counts.get(number, 0) + 1
        self._counts[number] = count
        now = time.time()
        state: str | None = None
        if now >= self._state_due.get(number, 0.0) and self._control is not None:
            self._state_due[number] = now + self.mqtt.state_interval
            state = self._control.channel(number).state.value
        every = self.mqtt.live_every
        live = bool(every) and count % every == 0
        if live or state is not None:
            self._samples.put((sample, now, live, state))

    def _publish_samples(self) -> None:
        topics: dict[int, str] = {}  # channel number -> its live topic
        while True:
            item = self._samples.get()
            if item is None:
                return
            client = self._client
            if client is None or not client.is_connected():
                continue  # live data: the next sample replaces it
            sample, unix_time_s, live, state = item
            channel = str(sample.channel)
            values = {"voltage_v": _finite(sample.voltage_v),
                      "current_a": _finite(sample.current_a),
                      "temperature_c": _finite(sample.temperature_c),
                      "test_time_s": _finite(sample.test_time_s)}
            if live:
                topic = topics.get(sample.channel)
                if topic is None:
                    topic = topics[sample.channel] = \
                        f"{self._base}/channel/{topic_part(channel)}/live"
                client.publish(topic, json.dumps({
                    "channel": channel, "test_id": sample.test_id, "seq": sample.seq,
                    **values, "step_index": sample.step_index, "cycle": sample.cycle,
                    "step_ah": _finite(sample.step_ah), "unix_time_s": unix_time_s}))
            if state is not None:
                self._set_state(channel, sample.test_id, state=state, test_id=sample.test_id,
                                cycle=sample.cycle, **values)
