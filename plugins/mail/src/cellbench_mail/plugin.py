"""Registers the mail notifier with cellbench (the factory is imported only when a station
uses it)."""

from cellbench_mail.settings import MailSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_notifiers() -> list[Descriptor]:
    """The mail notifier."""
    return [Descriptor(Kind.NOTIFIER, "mail", "cellbench_mail.notifier:MailNotifier",
                       "mail over SMTP with STARTTLS or TLS, verified, with AUTH; an outbox "
                       "keeps what the server did not take", MailSettings)]
