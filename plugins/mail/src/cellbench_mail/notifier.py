"""The mail notifier: each notification as a mail over SMTP with STARTTLS or implicit TLS.

The server's certificate is verified (smtplib verifies nothing unless handed an SSL context
that does: :func:`cellbench_sdk.notify.tls_context` makes one), AUTH's password comes from a
file or an environment variable, and each recipient gets the notifications their rules select.
A mail has a plain-text and an HTML body; an alarm of a test carries a plot of the test's last
hour. Its Message-ID is made of the notification's event id, so a retried mail is the same
mail to the receiving side.
"""

from __future__ import annotations

import html
import io
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

import numpy as np

from cellbench_mail.settings import MailSettings
from cellbench_sdk.notify import (
    DeliveryError,
    Notification,
    NotifierContext,
    OutboxNotifier,
    selected,
    tls_context,
)
from cellbench_sdk.storage import recent_samples

log = logging.getLogger(__name__)


class MailNotifier(OutboxNotifier):
    """Mails the station's notifications to the recipients whose rules select them."""

    def __init__(self, settings: MailSettings) -> None:
        super().__init__(settings)
        self.mail = settings
        self._tls: ssl.SSLContext | None = None
        self._password: str | None = None

    def open(self, context: NotifierContext) -> None:
        """Read the CA file and the password; warn about an insecure connection."""
        settings = self.mail
        where = f"notifier {context.name}"
        if settings.security == "none":
            log.warning("%s: mail goes to %s:%d unencrypted (security = \"none\", "
                        "allow_insecure = true): anyone on the way can read and alter it",
                        where, settings.host, settings.port)
        else:
            self._tls = tls_context(settings.ca_file, context.base_dir, f"{where}: ca_file")
            if not settings.verify:
                log.warning("%s: the certificate of %s is not verified (verify = false, "
                            "allow_insecure = true): anyone on the way can pose as the server",
                            where, settings.host)
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        if settings.password is not None:
            self._password = settings.password.read(f"{where}: password", context.base_dir)

    def destinations(self, notification: Notification) -> list[str]:
        """The recipients whose rules select ``notification``."""
        return [r.address for r in self.mail.recipients
                if (not r.events or notification.kind in r.events)
                and selected(notification, r.channels, r.batteries)]

    def test_destinations(self) -> list[str]:
        return [r.address for r in self.mail.recipients]

    def deliver(self, destination: str, notifications: list[Notification]) -> None:
        """Send one mail to ``destination``: the notification, or a digest of them."""
        message = self.compose(destination, notifications)
        try:
            self._send(message)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as err:
            raise DeliveryError(f"the server refused the mail: {err}", permanent=True) from err
        except smtplib.SMTPDataError as err:
            raise DeliveryError(f"the server refused the mail: {err.smtp_code} "
                                f"{err.smtp_error!r}", permanent=500 <= err.smtp_code < 600
                                ) from err
        except smtplib.SMTPAuthenticationError as err:
            raise DeliveryError(f"{self.mail.host}: login as {self.mail.username} refused: "
                                f"{err.smtp_code} {err.smtp_error!r}") from err
        except ssl.SSLCertVerificationError as err:
            raise DeliveryError(f"{self.mail.host}:{self.mail.port}: the server's certificate "
                                f"is not trusted: {err.verify_message}") from err
        except (OSError, smtplib.SMTPException) as err:
            raise DeliveryError(f"{self.mail.host}:{self.mail.port}: {type(err).__name__}: "
                                f"{err}") from err

    def _send(self, message: EmailMessage) -> None:
        settings = self.mail
        timeout = settings.timeout
        if settings.security == "tls":
            assert self._tls is not None
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, settings.port,
                                                  timeout=timeout, context=self._tls)
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if settings.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(f"{settings.host}:{settings.port} does not offer "
                                        "STARTTLS: not sending unencrypted")
                smtp.starttls(context=self._tls)
                smtp.ehlo()
            if settings.username is not None:
                assert self._password is not None
                smtp.login(settings.username, self._password)
            smtp.send_message(message)

    def compose(self, destination: str, notifications: list[Notification]) -> EmailMessage:
        """The mail to ``destination``: a plain-text and an HTML body, and a plot of the
        test's last hour for an alarm of a test."""
        first = notifications[0]
        message = EmailMessage()
        message["From"] = self.mail.sender
        message["To"] = destination
        message["Date"] = formatdate(first.unix_time_s, localtime=True)
        domain = "".join(c if c.isalnum() or c in "-." else "-" for c in first.station)
        if len(notifications) == 1:
            message["Subject"] = f"[cellbench {first.station}] {first.title}"
            message["Message-ID"] = f"<{first.event_id}@{domain}.cellbench>"
            message.set_content(first.text())
            message.add_alternative(_html([first]), subtype="html")
        else:
            last = notifications[-1]
            message["Subject"] = (f"[cellbench {first.station}] {len(notifications)} "
                                  f"notifications (digest): {first.title}")
            message["Message-ID"] = (f"<digest-{first.event_id}-{last.event_id}@{domain}"
                                     ".cellbench>")
            intro = (f"Station {first.station} had more to tell than the rate limit lets "
                     f"through; here are the {len(notifications)} notifications since, oldest "
                     "first.")
            message.set_content("\n\n".join([intro, *(f"--- {n.title}\n{n.text()}"
                                                      for n in notifications)]))
            message.add_alternative(_html(notifications, intro), subtype="html")
        if len(notifications) == 1 and first.kind == "alarm" and first.test_id is not None:
            plot = self._plot(first)
            if plot is not None:
                message.add_attachment(plot, maintype="image", subtype="png",
                                       filename=f"test-{first.test_id}-last-hour.png")
        return message

    def _plot(self, notification: Notification) -> bytes | None:
        """A PNG of the test's voltage, current and temperature over the plotted span (None:
        nothing to plot)."""
        context = self.context
        if context is None or not self.mail.plot_span or notification.test_id is None:
            return None
        rows = recent_samples(context.database, notification.test_id, self.mail.plot_span)
        if not len(rows["test_time_s"]):
            return None
        import matplotlib

        matplotlib.use("Agg")  # no display on a station PC's service
        from matplotlib.figure import Figure

        figure = Figure(figsize=(6.4, 3.6), dpi=100)
        axes = figure.subplots(2, 1, sharex=True)
        minutes = (rows["test_time_s"] - rows["test_time_s"][-1]) / 60.0
        axes[0].plot(minutes, rows["voltage_v"], color="tab:blue")
        axes[0].set_ylabel("voltage / V")
        axes[1].plot(minutes, rows["current_a"], color="tab:red")
        axes[1].set_ylabel("current / A")
        axes[1].set_xlabel("minutes before the alarm")
        if np.isfinite(rows["temperature_c"]).any():
            twin = axes[1].twinx()
            twin.plot(minutes, rows["temperature_c"], color="tab:orange")
            twin.set_ylabel("temperature / °C")
        figure.suptitle(f"{notification.test_name or 'test'} (id {notification.test_id}), "
                        f"channel {notification.channel}", fontsize=9)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()


def _html(notifications: list[Notification], intro: str = "") -> str:
    """The HTML body: per notification its summary, what the station did, what to do, and the
    facts as a table."""
    parts = [f"<p>{html.escape(intro)}</p>"] if intro else []
    for n in notifications:
        colour = {"error": "#b00020", "warning": "#a15c00"}.get(n.severity, "#1b5e20")
        parts.append(f'<h3 style="color:{colour}">{html.escape(n.title)}</h3>')
        parts.append(f"<p>{html.escape(n.summary)}</p>")
        if n.station_action:
            parts.append(f"<p><b>What the station did:</b> {html.escape(n.station_action)}</p>")
        if n.advice:
            parts.append(f"<p><b>What to do:</b> {html.escape(n.advice)}</p>")
        rows = "".join(f"<tr><th align=left>{html.escape(label)}</th>"
                       f"<td>{html.escape(value)}</td></tr>" for label, value in n.facts())
        parts.append(f"<table>{rows}</table>")
    return "<html><body>" + "".join(parts) + "</body></html>"
