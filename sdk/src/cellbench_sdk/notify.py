"""What a notifier plugin (mail, MQTT, webhook, chat) implements.

A descriptor of kind ``Kind.NOTIFIER`` builds the notifier from its validated settings (one per
``[[notifiers]]`` section of the station file). The station registers the object with its
plugin manager, so the station's events reach it through the event hooks; ``close()`` is called
(and awaited if it returns an awaitable) when the station shuts down.

Subclass :class:`Notifier` and override the events it passes on::

    class Webhook(Notifier):
        def __init__(self, settings: WebhookSettings) -> None:
            self.url = settings.url

        def test_finished(self, event: TestFinished) -> None:
            post(self.url, f"test {event.test_id} on {event.channel}: {event.status}")

    @hookimpl
    def cellbench_notifiers() -> list[Descriptor]:
        return [Descriptor(Kind.NOTIFIER, "webhook", "my_pkg.notify:Webhook",
                           "posts test ends to a URL", WebhookSettings)]

Events are rare (never one per sample). An event method is called off the station's event loop,
on one event thread, one call at a time and in the order the events happened: it may wait for a
mail or a request, which delays only the events queued behind it, never a test. An exception it
raises is logged and recorded as a ``hook_failed`` event of the test; the other notifiers still
get the event (see cellbench_core.dispatch).

Notifiers that send to a peer (a mail server, a broker, a URL) subclass :class:`OutboxNotifier`
instead, with settings that extend :class:`OutboxSettings`: it turns each selected event into a
:class:`Notification` (what happened in words, with the test, battery, step and the values at
the moment), keeps it in the station database's outbox until :meth:`OutboxNotifier.deliver`
succeeds, in order and with retries that back off, gathers an alarm storm into digests past a
rate limit, and raises an alarm when its outbox keeps failing (docs/notifications.md).
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from cellbench_core.events import Alarm, PlanMessage, StepChanged, TestFinished, TestStarted
from cellbench_core.hookspecs import hookimpl
from cellbench_core.notifying import NotifierContext
from cellbench_core.station import Duration
from cellbench_core.storage import Outbox, recent_samples

log = logging.getLogger(__name__)

__all__ = [
    "EVENT_HOOKS",
    "EVENT_KINDS",
    "DeliveryError",
    "Duration",
    "EventKind",
    "Notification",
    "Notifier",
    "NotifierContext",
    "OutboxNotifier",
    "OutboxSettings",
    "SecretSettings",
    "selected",
    "tls_context",
]

#: The event hooks a notifier receives, and the :class:`Notifier` method each one calls.
EVENT_HOOKS = {
    "cellbench_test_started": "test_started",
    "cellbench_step_changed": "step_changed",
    "cellbench_test_finished": "test_finished",
    "cellbench_message": "message",
    "cellbench_alarm": "alarm",
}

#: What a notifier's ``events`` setting may select: the event methods' names.
EventKind = Literal["test_started", "step_changed", "test_finished", "message", "alarm"]
EVENT_KINDS: tuple[EventKind, ...] = ("test_started", "step_changed", "test_finished",
                                      "message", "alarm")


class Notifier:
    """Base class of notifiers: every event method does nothing until overridden."""

    def test_started(self, event: TestStarted) -> None:
        """A test started on a channel."""

    def step_changed(self, event: StepChanged) -> None:
        """A channel moved to another step of its plan."""

    def test_finished(self, event: TestFinished) -> None:
        """A test ended (finished, stopped, failed or interrupted)."""

    def message(self, event: PlanMessage) -> None:
        """A test reached a ``message:`` step of its plan: pass ``event.text`` on."""

    def alarm(self, event: Alarm) -> None:
        """A safety limit tripped, a device failed, or a sync target fell behind."""

    def close(self) -> Awaitable[None] | None:
        """Release connections and threads; the station is shutting down."""
        return None

    # The hook implementations the station's plugin manager calls, each handing the event to
    # the method above: a subclass overrides plain methods and cannot lose a hook marker.

    @hookimpl
    def cellbench_test_started(self, event: TestStarted) -> None:
        self.test_started(event)

    @hookimpl
    def cellbench_step_changed(self, event: StepChanged) -> None:
        self.step_changed(event)

    @hookimpl
    def cellbench_test_finished(self, event: TestFinished) -> None:
        self.test_finished(event)

    @hookimpl
    def cellbench_message(self, event: PlanMessage) -> None:
        self.message(event)

    @hookimpl
    def cellbench_alarm(self, event: Alarm) -> None:
        self.alarm(event)


# --- what is sent ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One event as notifiers pass it on: the facts, and the words for people.

    ``kind`` is an :data:`EventKind`, or ``"test"`` for ``cellbench notify test``. ``event_id``
    is unique and stays the same on every attempt to deliver it (a receiver drops what it has
    seen). ``title`` is one line; ``summary`` says what happened, ``station_action`` what the
    station did about it and ``advice`` what to do ('' when there is nothing to say).
    ``values`` holds the channel's latest measured values, units in the names
    (``voltage_v``, ``current_a``, ``temperature_c``, ``test_time_s``), finite ones only.
    """

    event_id: str
    kind: str
    station: str
    unix_time_s: float
    title: str
    summary: str
    station_action: str = ""
    advice: str = ""
    severity: str = "info"
    channel: str | None = None
    test_id: int | None = None
    test_name: str | None = None
    battery: str | None = None
    plan: str | None = None
    step: str | None = None
    plan_line: int | None = None
    cycle: int | None = None
    status: str | None = None
    values: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The notification as JSON-ready data (what MQTT and webhooks send)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        """The notification :meth:`to_dict` gave."""
        return cls(**data)

    def text(self) -> str:
        """The notification as plain text for people, several lines."""
        lines = [self.summary]
        if self.station_action:
            lines.append(f"What the station did: {self.station_action}")
        if self.advice:
            lines.append(f"What to do: {self.advice}")
        facts = self.facts()
        if facts:
            lines.append("")
            lines.extend(f"{name}: {value}" for name, value in facts)
        return "\n".join(lines)

    def facts(self) -> list[tuple[str, str]]:
        """The facts as (label, value) rows for a table: station, channel, test, values."""
        rows = [("Station", self.station)]
        for label, value in (("Channel", self.channel), ("Test", self._test()),
                             ("Battery", self.battery), ("Plan", self.plan),
                             ("Step", self._step()), ("Status", self.status)):
            if value:
                rows.append((label, value))
        for name, label, unit in (("voltage_v", "Voltage", "V"), ("current_a", "Current", "A"),
                                  ("temperature_c", "Temperature", "°C"),
                                  ("test_time_s", "Test time", "s")):
            if name in self.values:
                rows.append((label, f"{self.values[name]:.4g} {unit}"))
        rows.append(("Time", time.strftime("%Y-%m-%d %H:%M:%S %Z",
                                           time.localtime(self.unix_time_s))))
        return rows

    def _test(self) -> str | None:
        if self.test_id is None:
            return None
        return f"{self.test_name} (id {self.test_id})" if self.test_name else f"id {self.test_id}"

    def _step(self) -> str | None:
        if not self.step:
            return None
        where = [f"plan line {self.plan_line}"] if self.plan_line is not None else []
        if self.cycle is not None:
            where.append(f"cycle {self.cycle}")
        return f"{self.step} ({', '.join(where)})" if where else self.step


class DeliveryError(Exception):
    """A message did not reach its peer. ``permanent``: the peer refused it for good (a
    rejected recipient, an HTTP 4xx): it is not retried. Otherwise it is kept and retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


# --- settings shared by the notifiers that deliver to a peer ---------------------------------


class OutboxSettings(BaseModel):
    """Settings every :class:`OutboxNotifier` has: which events it passes on, and how its
    outbox retries, limits and raises alarms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[EventKind] = Field(
        default=["test_finished", "message", "alarm"], min_length=1,
        description="which events to pass on: test_started, step_changed, test_finished, "
                    "message, alarm")
    retry_first: Duration = Field(default=5.0, description="wait before the first retry, "
                                                          "doubled after each failure")
    retry_max: Duration = Field(default=600.0, description="the longest wait between retries")
    alarm_after: Duration = Field(default=900.0, description="alarm once messages have waited "
                                                            "undelivered this long")
    rate_limit: int = Field(default=30, ge=0, description="messages per rate_window and "
                                                        "destination; past it, the waiting "
                                                        "ones go as one digest (0: no limit)")
    rate_window: Duration = Field(default=3600.0, description="the window rate_limit counts in")
    timeout: Duration = Field(default=10.0, description="for one attempt to deliver")


class SecretSettings(BaseModel):
    """A secret (a password, a signing key) from a file or an environment variable; in the
    station file itself only if the user insists (a warning at every start)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str | None = Field(default=None, description="a file holding it (its first line), "
                                                       "relative to the station file")
    env: str | None = Field(default=None, description="an environment variable holding it")
    value: SecretStr | None = Field(default=None, description="the secret in clear in the "
                                                              "station file (warned about)")

    def read(self, what: str, base_dir: Path) -> str:
        """The secret; ValueError naming ``what`` and where it was looked for if it is not
        there. A secret in clear is logged as a warning."""
        given = [name for name in ("file", "env", "value") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"{what}: give exactly one of file, env or value, not "
                             f"{' and '.join(given) or 'none'}")
        if self.file is not None:
            path = base_dir / self.file
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as err:
                raise ValueError(f"{what}: cannot read {path}: {err.strerror}") from None
            if not lines or not lines[0]:
                raise ValueError(f"{what}: {path} is empty (the secret is its first line)")
            return lines[0]
        if self.env is not None:
            secret = os.environ.get(self.env)
            if not secret:
                raise ValueError(f"{what}: the environment variable {self.env} is not set")
            return secret
        assert self.value is not None
        log.warning("%s is written in clear in the station file: anyone who can read the file "
                    "can read it; use file = or env = instead", what)
        return self.value.get_secret_value()


def tls_context(ca_file: str | None, base_dir: Path, what: str) -> ssl.SSLContext:
    """A TLS client context that verifies the peer's certificate and host name against the
    system's certificate store, or against ``ca_file`` (relative to ``base_dir``) alone;
    ValueError naming ``what`` if that file is not a CA certificate file."""
    if ca_file is None:
        return ssl.create_default_context()
    path = base_dir / ca_file
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as err:
        raise ValueError(f"{what}: cannot read CA certificates from {path}: {err}") from None


# --- the notifier with an outbox -------------------------------------------------------------

#: Delivered and rejected messages are kept this long in the outbox for people to look at, and
#: deleted from it this often.
KEEP_FINISHED_S = 7 * 86400.0
PRUNE_EVERY_S = 3600.0
#: The most waiting messages one digest gathers.
DIGEST_MAX = 200
#: How long close() goes on delivering what is due before it leaves the rest for next time.
CLOSE_TIMEOUT_S = 5.0


class OutboxNotifier(Notifier):
    """A notifier that delivers to a peer through the station database's outbox.

    A subclass implements :meth:`deliver` (raise :class:`DeliveryError` or any exception when
    the peer did not take the messages) and may override :meth:`destinations` (several
    recipients with rules), :meth:`open` and :meth:`shut` (its connections). Every selected
    event becomes a :class:`Notification`, is put in the outbox once per destination and is
    delivered from one worker thread, oldest first: a message that fails is retried after
    ``retry_first``, doubling up to ``retry_max``, and the ones behind it wait (the order
    holds). Past ``rate_limit`` messages in ``rate_window`` to one destination, the waiting
    messages go as one digest when the window has room. When messages have waited longer than
    ``alarm_after``, the station raises an alarm (once, until a delivery succeeds again).

    An event method only notes the event (it runs on the station's one event thread, which
    must keep up with a thousand tests starting at once); the worker describes what it noted
    and puts it in the outbox in one transaction, then delivers. Events that come before
    :meth:`start` (no database yet) wait in memory until it.

    :attr:`batch_max` is how many waiting messages to one destination :meth:`deliver` may take
    at once when no rate limit holds them (1: each alone, so that a list of several is always
    a digest); a notifier whose peer takes each message on its own (MQTT) raises it.
    """

    batch_max = 1

    def __init__(self, settings: OutboxSettings) -> None:
        self.settings = settings
        self.context: NotifierContext | None = None
        self._outbox: Outbox | None = None
        # Events noted, to be described and put in the outbox by the worker (or at start).
        self._intake: deque[Callable[[], Notification]] = deque()
        self._tests: dict[int, tuple[str, str | None, str] | None] = {}  # id -> name, battery, plan
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._sent: dict[str, deque[float]] = {}  # destination -> delivery times in the window
        self._held: set[str] = set()  # destinations that reached the rate limit
        self._failing_since: float | None = None  # when the current run of failures began
        self._alarmed = False
        self._steps: dict[int, tuple[str, int, int]] = {}  # test id -> its step's text, line, cycle
        self._pruned_at = 0.0  # when finished messages were last deleted from the outbox

    # ---- for subclasses ----------------------------------------------------------------------

    def open(self, context: NotifierContext) -> None:
        """Read secrets and files and set up what :meth:`deliver` needs (called by
        :meth:`start`); raise ValueError or OSError naming the setting that is wrong."""

    def shut(self) -> None:
        """Release what :meth:`open` set up (called by :meth:`close`, after the last
        delivery)."""

    def destinations(self, notification: Notification) -> list[str]:
        """The destinations ``notification`` goes to ('' where there is one peer; none: it is
        not sent)."""
        return [""]

    def test_destinations(self) -> list[str]:
        """Where ``cellbench notify test`` sends its message: every destination."""
        return [""]

    def deliver(self, destination: str, notifications: list[Notification]) -> None:
        """Send ``notifications`` to ``destination``, oldest first: one message, or a digest of
        several when the rate limit was reached (or, with :attr:`batch_max` above 1, several
        messages each on its own). Return once the peer has taken them all; raise otherwise
        (all of them are then tried again). Runs on the notifier's worker thread, within
        ``settings.timeout``."""
        raise NotImplementedError

    # ---- the station's calls -----------------------------------------------------------------

    def start(self, context: NotifierContext) -> None:
        """Open the outbox in the station's database, put in it what came before, and start
        delivering."""
        self.open(context)
        outbox = Outbox(context.database, context.name)
        with self._lock:
            self.context, self._outbox = context, outbox
        self._take_in()
        waiting = outbox.count()
        if waiting:
            log.info("notifier %s: %d messages wait in the outbox", context.name, waiting)
        self._thread = threading.Thread(target=self._run, name=f"notifier-{context.name}",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Deliver what is due (for at most a few seconds; the rest waits in the outbox for the
        next start), then stop the worker and :meth:`shut`. Idempotent."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._wake.notify_all()
            if self._outbox is None and self._intake:
                log.warning("notifier: %d messages were never put in an outbox (the notifier "
                            "was not started)", len(self._intake))
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT_S + self.settings.timeout)
            if self._thread.is_alive():
                log.warning("notifier %s: a delivery did not return; left to finish on its own",
                            self._name)
        self.shut()

    def send_test(self) -> list[str]:
        """Send a test message to every destination now, past the outbox (``cellbench notify
        test``); return where it went. Raises what :meth:`deliver` raises."""
        context = self._started()
        notification = Notification(
            uuid.uuid4().hex, "test", context.station, time.time(),
            f"Test message from station {context.station}",
            f"This is a test message from the cellbench station {context.station}, sent by "
            f"`cellbench notify test`: notifier {context.name} reaches you.",
            advice="Nothing: when this arrived, the notifier works.")
        destinations = self.test_destinations()
        for destination in destinations:
            self.deliver(destination, [notification])
        return destinations

    def waiting(self) -> int:
        """How many messages wait in the outbox (0 before :meth:`start`)."""
        outbox = self._outbox
        return 0 if outbox is None else outbox.count()

    def retry_now(self) -> None:
        """Try what waits in the outbox now rather than at its next retry (the peer is known
        to be back: it reconnected, or ``cellbench notify test`` reached it); nothing before
        :meth:`start`."""
        outbox = self._outbox
        if outbox is None:
            return
        outbox.due_now(time.time())
        with self._lock:
            self._wake.notify_all()

    @property
    def _name(self) -> str:
        return self.context.name if self.context is not None else type(self).__name__

    def _started(self) -> NotifierContext:
        if self.context is None:
            raise RuntimeError("the notifier has not been started")
        return self.context

    # ---- events ------------------------------------------------------------------------------

    def test_started(self, event: TestStarted) -> None:
        self._steps.pop(event.test_id, None)
        self._event("test_started", event.test_id, event.channel, "info",
                    "Test started on channel {channel}",
                    "Test {test} started on channel {channel} of station {station}.")

    def step_changed(self, event: StepChanged) -> None:
        self._steps[event.test_id] = (event.text, event.plan_line, event.cycle)
        self._event("step_changed", event.test_id, event.channel, "info",
                    "Channel {channel}: " + _literal(event.text),
                    "Test {test} on channel {channel} moved on to the step at plan line "
                    f"{event.plan_line}: {_literal(event.text)}.")

    def test_finished(self, event: TestFinished) -> None:
        status = event.status.value
        reason = _literal(event.reason)
        words = {"finished": "finished: its plan ran to its end",
                 "stopped": f"was stopped: {reason}",
                 "failed": f"failed: {reason}",
                 "interrupted": f"was interrupted: {reason}"}[status]
        advice = {"finished": "",
                  "stopped": "If nobody stopped it on purpose, check the reason above and the "
                             "cell before starting another test.",
                  "failed": "Check the channel, its cables and the cell before starting another "
                            "test; the reason above says what went wrong.",
                  "interrupted": "Check why the station stopped (its log) and whether to run "
                                 "the test again."}[status]
        self._event("test_finished", event.test_id, event.channel,
                    "info" if status == "finished" else "warning",
                    "Test on channel {channel} " + status,
                    "Test {test} on channel {channel} of station {station} " + words + ".",
                    station_action="The channel's output is off.", advice=advice,
                    status=status)
        self._steps.pop(event.test_id, None)

    def message(self, event: PlanMessage) -> None:
        self._event("message", event.test_id, event.channel, "info",
                    "Channel {channel}: " + _literal(event.text),
                    "Test {test} on channel {channel} reached a message step of its plan "
                    f"(plan line {event.plan_line}): {_literal(event.text)}",
                    advice="The plan asks to pass this message on; the test goes on.")

    def alarm(self, event: Alarm) -> None:
        where = f"channel {_literal(event.channel)}" if event.channel else "station {station}"
        if event.test_id is not None:
            action = ("The station switched the channel's output off and ended the test, or "
                      "paused it where the alarm says so; a test that ended gets a second "
                      "message telling how.")
            advice = ("Check the cell, its cables and the channel before starting another test. "
                      "The values below are the last ones measured.")
        else:
            action, advice = "", "Check the station's log for what needs attention."
        self._event("alarm", event.test_id, event.channel, event.severity,
                    f"ALARM on {where}: {_literal(event.message)}",
                    f"Alarm on {where}: {_literal(event.message)}", station_action=action,
                    advice=advice)

    def _event(self, kind: EventKind, test_id: int | None, channel: str | None, severity: str,
               title: str, summary: str, *, station_action: str = "", advice: str = "",
               status: str | None = None) -> None:
        """Describe a selected event and put it in the outbox (or keep it until start)."""
        if kind not in self.settings.events:
            return
        step = self._steps.get(test_id) if test_id is not None else None
        self._intake.append(partial(self._describe, kind, test_id, channel, severity, title,
                                    summary, station_action, advice, status, step, time.time()))
        with self._lock:
            self._wake.notify_all()

    def _describe(self, kind: str, test_id: int | None, channel: str | None, severity: str,
                  title: str, summary: str, station_action: str, advice: str,
                  status: str | None, step: tuple[str, int, int] | None,
                  unix_time_s: float) -> Notification:
        context = self._started()
        station = context.station
        test_name = battery = plan = None
        values: dict[str, float] = {}
        if test_id is not None:
            if test_id not in self._tests:  # a test's name, battery and plan never change
                record = context.database.test(test_id)
                self._tests[test_id] = None if record is None else (
                    record.name, record.battery, record.plan_name)
            known = self._tests.pop(test_id) if kind == "test_finished" else \
                self._tests[test_id]  # a test's last notification forgets it
            if known is not None:
                test_name, battery, plan = known
            values = self._values(context, test_id, channel)
        test = "?" if test_id is None else (f"{test_name} (id {test_id})" if test_name
                                            else f"id {test_id}")
        names = {"test": test, "channel": channel, "station": station}
        return Notification(
            uuid.uuid4().hex, kind, station, unix_time_s, title.format(**names),
            summary.format(**names),
            station_action, advice, severity, channel, test_id, test_name, battery, plan,
            step[0] if step else None, step[1] if step else None, step[2] if step else None,
            status, values)

    @staticmethod
    def _values(context: NotifierContext, test_id: int, channel: str | None
                ) -> dict[str, float]:
        """The test's latest measured values: from the live ring when serving, else from the
        committed samples."""
        latest: dict[str, float] = {}
        if context.control is not None and channel is not None and channel.isdigit():
            try:
                samples = context.control.last_samples(int(channel), 1)
            except Exception:  # a channel the control API does not know: read the database
                samples = []
            if samples and samples[-1].test_id == test_id:
                sample = samples[-1]
                latest = {"voltage_v": sample.voltage_v, "current_a": sample.current_a,
                          "temperature_c": sample.temperature_c,
                          "test_time_s": sample.test_time_s}
        if not latest:
            rows = recent_samples(context.database, test_id, 0.0,
                                  ("test_time_s", "voltage_v", "current_a", "temperature_c"))
            if len(rows["test_time_s"]):
                latest = {name: float(column[-1]) for name, column in rows.items()}
        return {name: value for name, value in latest.items() if math.isfinite(value)}

    def _take_in(self) -> None:
        """Describe the events noted so far and put them in the outbox, in one transaction."""
        outbox = self._outbox
        assert outbox is not None
        messages: list[tuple[str, str, dict[str, Any], float]] = []
        while self._intake:
            notification = self._intake.popleft()()
            payload = notification.to_dict()
            messages.extend((destination, notification.event_id, payload,
                             notification.unix_time_s)
                            for destination in self.destinations(notification))
        outbox.put_many(messages)

    # ---- delivering --------------------------------------------------------------------------

    def _run(self) -> None:
        close_deadline: float | None = None
        while True:
            try:
                wait_s = self._pump()
            except Exception:  # the database failed: try again later, never end the thread
                log.exception("notifier %s: reading the outbox failed", self._name)
                wait_s = self.settings.retry_first
            with self._lock:
                noted = bool(self._intake)  # an event noted meanwhile is taken in at once
                if self._stopping:
                    if close_deadline is None:
                        close_deadline = time.monotonic() + CLOSE_TIMEOUT_S
                    # What is not due now waits in the outbox for the next start.
                    done = (wait_s > 0 and not noted) or time.monotonic() >= close_deadline
                elif wait_s > 0 and not noted:
                    self._wake.wait(min(wait_s, 3600.0))
                    continue
                else:
                    continue
            if done:
                try:
                    self._take_in()  # nothing noted is left out of the outbox
                except Exception:
                    log.exception("notifier %s: %d events could not be put in the outbox",
                                  self._name, len(self._intake))
                return

    def _pump(self) -> float:
        """Put what was noted in the outbox, then deliver the next message (or digest, or
        batch) if it is due; return how long to wait before the next call (0: call again at
        once)."""
        outbox = self._outbox
        assert outbox is not None and self.context is not None
        self._take_in()
        if time.time() - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = time.time()
            outbox.prune(self._pruned_at - KEEP_FINISHED_S)
        entries = outbox.pending(max(DIGEST_MAX, self.batch_max) + 1)
        if not entries:
            return math.inf
        head = entries[0]
        now = time.time()
        if head.next_attempt_unix_s > now:
            return head.next_attempt_unix_s - now
        batch = [head]
        limit, window = self.settings.rate_limit, self.settings.rate_window
        sent = self._sent.setdefault(head.destination, deque())
        while sent and sent[0] <= now - window:
            sent.popleft()
        if limit and len(sent) >= limit:  # held back until the window has room
            self._held.add(head.destination)
            return sent[0] + window - now
        if head.destination in self._held:  # what was held back goes as one digest
            batch = [e for e in entries if e.destination == head.destination][:DIGEST_MAX]
        elif self.batch_max > 1:  # the due ones from the head on, as long as they go there
            batch = []
            for entry in entries[:self.batch_max]:
                if entry.destination != head.destination or entry.next_attempt_unix_s > now:
                    break
                batch.append(entry)
            if limit:
                batch = batch[:max(1, limit - len(sent))]
        ids = [e.id for e in batch]
        notifications = [Notification.from_dict(e.payload) for e in batch]
        try:
            self.deliver(head.destination, notifications)
        except Exception as err:
            error = f"{type(err).__name__}: {err}" if not isinstance(err, DeliveryError) \
                else str(err)
            if isinstance(err, DeliveryError) and err.permanent:
                outbox.rejected(ids, time.time(), error)
                self._record("notifier_rejected", f"notifier {self._name}: "
                             f"{self._what(head.destination)} refused {len(ids)} message(s) "
                             f"for good: {error}")
                return 0.0
            delay = min(self.settings.retry_max,
                        self.settings.retry_first * 2.0 ** min(head.attempts, 30))
            outbox.failed(ids, error, time.time() + delay)
            self._failed(head.created_unix_s, head.destination, error, outbox)
            return delay
        outbox.delivered(ids, time.time())
        sent.extend([now] * (1 if head.destination in self._held else len(batch)))
        self._held.discard(head.destination)
        if self._failing_since is not None:
            log.info("notifier %s: delivering again", self._name)
            self._record("notifier_recovered", f"notifier {self._name}: delivering again")
        self._failing_since, self._alarmed = None, False
        return 0.0

    @staticmethod
    def _what(destination: str) -> str:
        return f"destination {destination}" if destination else "the peer"

    def _failed(self, created_unix_s: float, destination: str, error: str,
                outbox: Outbox) -> None:
        """Log and record the start of a run of failures, and alarm once it lasts too long."""
        context = self._started()
        if self._failing_since is None:
            self._failing_since = created_unix_s
            log.warning("notifier %s: cannot deliver to %s: %s; retrying (the messages wait in "
                        "the outbox)", self._name, self._what(destination), error)
            self._record("notifier_failed", f"notifier {self._name}: cannot deliver to "
                         f"{self._what(destination)}: {error}; the messages wait in the outbox")
        waited = time.time() - self._failing_since
        if not self._alarmed and waited >= self.settings.alarm_after:
            self._alarmed = True
            context.raise_alarm(f"notifier {self._name}: {outbox.count()} message(s) not "
                                f"delivered for {waited / 60:.0f} min: {error}")

    def _record(self, kind: str, message: str) -> None:
        context = self._started()
        try:
            context.database.add_event(kind=kind, message=message, unix_time_s=time.time(),
                                       data={"notifier": context.name})
        except Exception:  # the database is gone too: the log has it
            log.exception("notifier %s: could not record: %s", self._name, message)


def _literal(text: str) -> str:
    """``text`` to go into a summary template as it is (its braces are not placeholders)."""
    return text.replace("{", "{{").replace("}", "}}")


def selected(notification: Notification, channels: Iterable[str],
             batteries: Iterable[str]) -> bool:
    """Whether ``notification`` concerns one of ``channels`` and one of ``batteries`` (an empty
    list: any); station-wide notifications (no channel) concern every channel and battery."""
    channel_list, battery_list = list(channels), list(batteries)
    if notification.channel is None:
        return True
    if channel_list and notification.channel not in channel_list:
        return False
    return not battery_list or notification.battery in battery_list
