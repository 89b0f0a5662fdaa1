"""The webhook notifier: each notification POSTed as JSON to a URL, signed with HMAC-SHA256.

The body is the notification's fields (``template = "json"``), or the message format of a chat
service's incoming webhook (Slack, Mattermost, Microsoft Teams, Discord). Every request carries:

- ``X-Cellbench-Event-Id``: the notification's id, the same on every retry (a receiver drops an
  id it has seen);
- ``X-Cellbench-Timestamp``: when the request was signed (Unix seconds);
- ``X-Cellbench-Signature``: ``sha256=`` and the hex HMAC-SHA256, keyed with the secret, of
  the timestamp, a full stop and the body bytes (when a secret is set).

A 2xx answer delivers it; 408, 425, 429, a 5xx or no answer is retried with back-off; any other
4xx rejects it for good (the request itself is wrong; the next one goes on).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from cellbench_sdk.notify import (
    DeliveryError,
    Notification,
    NotifierContext,
    OutboxNotifier,
    tls_context,
)
from cellbench_webhook.settings import WebhookSettings

log = logging.getLogger(__name__)

#: The 4xx answers that say "try again later" rather than "this request is wrong".
RETRY_STATUSES = frozenset({408, 425, 429})


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Cellbench-Signature`` of a request: what a receiver computes to check it."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()


def render(template: str, notifications: list[Notification]) -> dict[str, Any]:
    """The request body for ``template``: one notification, or a digest of several."""
    if template == "json":
        if len(notifications) == 1:
            return notifications[0].to_dict()
        return {"kind": "digest", "station": notifications[0].station,
                "notifications": [n.to_dict() for n in notifications]}
    bold = "**" if template in ("teams", "discord") else "*"
    text = "\n\n".join(f"{bold}{n.title}{bold}\n{n.text()}" for n in notifications)
    if len(notifications) > 1:
        text = (f"{len(notifications)} notifications from station {notifications[0].station} "
                f"(digest)\n\n{text}")
    if template == "discord":
        return {"content": text[:2000]}  # Discord's limit
    return {"text": text}


class WebhookNotifier(OutboxNotifier):
    """POSTs the station's notifications to a URL."""

    def __init__(self, settings: WebhookSettings) -> None:
        super().__init__(settings)
        self.webhook = settings
        self._secret: bytes | None = None
        self._tls: ssl.SSLContext | None = None

    def open(self, context: NotifierContext) -> None:
        """Read the secret and the CA file; warn about an insecure URL."""
        settings = self.webhook
        where = f"notifier {context.name}"
        if settings.url.startswith("https:"):
            self._tls = tls_context(settings.ca_file, context.base_dir, f"{where}: ca_file")
        elif settings.allow_insecure:
            log.warning("%s: notifications go to %s in clear (allow_insecure = true)", where,
                        settings.url)
        if settings.secret is not None:
            self._secret = settings.secret.read(f"{where}: secret", context.base_dir).encode()

    def test_destinations(self) -> list[str]:
        return [self.webhook.url]  # deliver() posts there whatever the destination

    def deliver(self, destination: str, notifications: list[Notification]) -> None:
        """POST the notification (or a digest) and take a 2xx answer as delivered."""
        settings = self.webhook
        body = json.dumps(render(settings.template, notifications)).encode()
        event_id = notifications[0].event_id if len(notifications) == 1 else \
            f"digest-{notifications[0].event_id}-{notifications[-1].event_id}"
        timestamp = f"{time.time():.0f}"
        headers = {"Content-Type": "application/json", "User-Agent": "cellbench-webhook",
                   "X-Cellbench-Event-Id": event_id, "X-Cellbench-Timestamp": timestamp}
        if self._secret is not None:
            headers["X-Cellbench-Signature"] = signature(self._secret, timestamp, body)
        request = urllib.request.Request(settings.url, data=body, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=settings.timeout,
                                        context=self._tls) as response:
                response.read()
        except urllib.error.HTTPError as err:
            permanent = 400 <= err.code < 500 and err.code not in RETRY_STATUSES
            raise DeliveryError(f"{settings.url} answered {err.code} {err.reason}",
                                permanent=permanent) from err
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise DeliveryError(f"{settings.url}: the server's certificate is not trusted: "
                                    f"{reason.verify_message}") from err
            raise DeliveryError(f"{settings.url}: {reason}") from err
        except OSError as err:  # a timeout or a reset while reading the answer
            raise DeliveryError(f"{settings.url}: {type(err).__name__}: {err}") from err
