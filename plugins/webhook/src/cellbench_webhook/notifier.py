"""The notifier webhook: writes events to a log (replace it).

Today it writes each event as a line of a Python log, so that the conformance tests pass from the
start. Replace the sending with your service (mail, chat, MQTT, a webhook), keeping what the
comments call the contract.
"""

from __future__ import annotations

import logging

from cellbench_sdk import Alarm, PlanMessage, TestFinished, TestStarted
from cellbench_sdk.notify import Notifier

from cellbench_webhook.settings import WebhookSettings


class WebhookNotifier(Notifier):
    """Passes test starts and ends, plan messages and alarms on."""

    def __init__(self, settings: WebhookSettings) -> None:
        # The contract: the constructor only stores settings; connect when the first event
        # comes, or start a sender thread here that connects on its own.
        self.settings = settings
        self._log = logging.getLogger(settings.logger)
        self._level = logging.getLevelName(settings.level)

    # The events: override the ones you pass on (step_changed is left out here, as most people
    # want fewer messages). The contract: each runs on the station's event loop, so it returns
    # at once and never raises; slow work (a mail, an HTTP request) goes to a thread or a queue,
    # and a failed delivery is logged, not raised.

    def test_started(self, event: TestStarted) -> None:
        self._send(f"test {event.test_id} ({event.name}) started on {event.channel}")

    def test_finished(self, event: TestFinished) -> None:
        self._send(f"test {event.test_id} on {event.channel} {event.status}: {event.reason}")

    def message(self, event: PlanMessage) -> None:
        self._send(f"test {event.test_id} on {event.channel}: {event.text}")

    def alarm(self, event: Alarm) -> None:
        self._send(f"{event.severity} on {event.channel or 'the station'}: {event.message}")

    def close(self) -> None:
        # The contract: release connections and threads when the station stops; safe to call
        # twice. An async close (async def) is awaited.
        self._log.debug("closed")

    def _send(self, text: str) -> None:
        self._log.log(self._level, text)
