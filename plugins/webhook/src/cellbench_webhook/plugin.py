"""Registers the webhook notifier with cellbench (the factory is imported only when a station
uses it)."""

from cellbench_sdk import Descriptor, Kind, hookimpl
from cellbench_webhook.settings import WebhookSettings


@hookimpl
def cellbench_notifiers() -> list[Descriptor]:
    """The webhook notifier."""
    return [Descriptor(Kind.NOTIFIER, "webhook", "cellbench_webhook.notifier:WebhookNotifier",
                       "notifications POSTed as signed JSON (or a chat service's format) to a "
                       "URL; an outbox keeps what it did not take", WebhookSettings)]
