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

Events are rare (never one per sample). An event method is called from the runner's tick on the
station's event loop (a sync target's alarm: from its thread), so it must hand slow work (a mail,
a request) to a thread of its own rather than wait for it.
"""

from __future__ import annotations

from collections.abc import Awaitable

from cellbench_core.events import Alarm, PlanMessage, StepChanged, TestFinished, TestStarted
from cellbench_core.hookspecs import hookimpl

#: The event hooks a notifier receives, and the :class:`Notifier` method each one calls.
EVENT_HOOKS = {
    "cellbench_test_started": "test_started",
    "cellbench_step_changed": "step_changed",
    "cellbench_test_finished": "test_finished",
    "cellbench_message": "message",
    "cellbench_alarm": "alarm",
}


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
