"""The mail notifier against aiosmtpd servers on loopback with certificates made by trustme:
STARTTLS and implicit TLS, verification, AUTH, recipients' rules, the outbox across a server
that is down, the rate limit's digest, and the alarm of an outbox that keeps failing."""

from __future__ import annotations

import email
import email.policy
import logging
import ssl
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError

from cellbench_mail.notifier import MailNotifier
from cellbench_mail.settings import MailSettings
from cellbench_sdk import Alarm, PlanMessage, TestFinished, TestStatus
from cellbench_sdk.testing import NotifierContract, NotifierStation, free_port

PASSWORD = "correct horse battery staple"
ALARM = Alarm("bench/1", 1, "voltage above 4.25 V")


class Inbox:
    """What an aiosmtpd server received, as parsed mails with their envelope recipients."""

    def __init__(self) -> None:
        self.mails: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mails.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [mail for rcpts, mail in self.mails if address in rcpts]


def _authenticate(server: Any, session: Session, envelope: Envelope, mechanism: str,
                  data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"station" and \
        data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def station(tmp_path: Path, ca: trustme.CA) -> Iterator[NotifierStation]:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "smtp-password").write_text(PASSWORD + "\n", encoding="utf-8")
    made = NotifierStation(tmp_path)
    yield made
    made.close()


ServerFactory = Callable[..., tuple[Controller, Inbox]]


@pytest.fixture
def smtp_server(ca: trustme.CA) -> Iterator[ServerFactory]:
    """``smtp_server(port=None, implicit=False, auth=True, issuer=ca)``: an aiosmtpd server on
    127.0.0.1 with a certificate for 127.0.0.1 and localhost by ``issuer``, requiring STARTTLS
    (or speaking TLS at once) and AUTH."""
    running: list[Controller] = []

    def start(port: int | None = None, *, implicit: bool = False, auth: bool = True,
              issuer: trustme.CA | None = None, inbox: Inbox | None = None
              ) -> tuple[Controller, Inbox]:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (issuer or ca).issue_cert("127.0.0.1", "localhost").configure_cert(server_tls)
        inbox = inbox or Inbox()
        options: dict[str, Any] = {"auth_required": auth, "authenticator": _authenticate}
        if implicit:  # aiosmtpd sees TLS from STARTTLS only: this connection is TLS anyway
            options.update(ssl_context=server_tls, auth_require_tls=False)
        else:
            options.update(tls_context=server_tls, require_starttls=True)
        controller = Controller(inbox, hostname="127.0.0.1", port=port or free_port(),
                                **options)
        controller.start()
        running.append(controller)
        return controller, inbox

    yield start
    for controller in running:
        controller.stop(no_assert=True)


def settings(port: int, **changes: Any) -> MailSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "ca_file": "ca.pem", "username": "station",
        "password": {"file": "smtp-password"}, "sender": "station@lab.example",
        "recipients": [{"address": "lab@lab.example"}], "retry_first": "20 ms",
        "retry_max": "100 ms", "events": ["test_started", "test_finished", "message", "alarm"]}
    values.update(changes)
    return MailSettings.model_validate(values)


def test_an_alarm_mail_over_starttls_is_verified_authenticated_and_says_what_happened(
        station: NotifierStation, smtp_server: ServerFactory, wait_until: Any) -> None:
    controller, inbox = smtp_server()
    mail = station.start(MailNotifier(settings(controller.port)))
    mail.alarm(Alarm("bench/1", station.test_id, "voltage above 4.25 V"))
    wait_until(lambda: inbox.mails, "the alarm mail")
    (rcpts, message), = inbox.mails
    assert rcpts == ["lab@lab.example"]
    assert message["Subject"] == "[cellbench bench] ALARM on channel bench/1: voltage above 4.25 V"
    assert message["From"] == "station@lab.example"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    body = text.get_content()
    assert "Alarm on channel bench/1: voltage above 4.25 V" in body
    assert "switched the channel's output off" in body
    assert "Battery: cell-A" in body and f"Test: cycle 1 (id {station.test_id})" in body
    assert "Voltage: 3.96 V" in body  # the test's last sample: 3.6 + 3600 / 1e4
    assert "What to do:" in html.get_content()
    plots = [part for part in message.iter_attachments()
             if part.get_content_type() == "image/png"]
    assert len(plots) == 1 and plots[0].get_content().startswith(b"\x89PNG")
    wait_until(lambda: station.outbox(), "the outbox row marked",
               check=lambda rows: rows == [("lab@lab.example", "delivered", 0)])


def test_implicit_tls_on_its_own_port(station: NotifierStation, smtp_server: ServerFactory,
                                      wait_until: Any) -> None:
    controller, inbox = smtp_server(implicit=True)
    mail = station.start(MailNotifier(settings(controller.port, security="tls")))
    mail.message(PlanMessage(station.test_id, "bench/1", 7, "Check the temperature probe"))
    wait_until(lambda: inbox.mails, "the message mail")
    message = inbox.mails[0][1]
    assert message["Subject"] == "[cellbench bench] Channel bench/1: Check the temperature probe"
    assert not list(message.iter_attachments())  # plots go with alarms only


def test_a_certificate_from_another_ca_is_refused_and_the_mail_waits(
        station: NotifierStation, smtp_server: ServerFactory, wait_until: Any) -> None:
    controller, inbox = smtp_server(issuer=trustme.CA())  # self-made, not the trusted one
    mail = station.start(MailNotifier(settings(controller.port)))
    mail.alarm(ALARM)
    failed = wait_until(lambda: station.events("notifier_failed"), "the failure recorded")
    assert "certificate is not trusted" in failed[0]
    wait_until(lambda: station.outbox(), "a retry",
               check=lambda rows: rows and rows[0][1] == "pending" and rows[0][2] >= 2)
    assert inbox.mails == []


def test_auth_refused_keeps_the_mail_and_a_wrong_setting_names_itself(
        station: NotifierStation, smtp_server: ServerFactory, wait_until: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    controller, inbox = smtp_server()
    monkeypatch.setenv("WRONG_SMTP_PASSWORD", "guess")
    mail = station.start(MailNotifier(settings(controller.port,
                                               password={"env": "WRONG_SMTP_PASSWORD"})))
    mail.alarm(ALARM)
    failed = wait_until(lambda: station.events("notifier_failed"), "the failure recorded")
    assert "login as station refused: 535" in failed[0]
    assert inbox.mails == [] and station.outbox()[0][1] == "pending"
    with pytest.raises(ValueError, match="password: the environment variable NOT_SET_HERE is "
                                         "not set"):
        station.start(MailNotifier(settings(controller.port, password={"env": "NOT_SET_HERE"})),
                      name="other")
    with pytest.raises(ValueError, match="cannot read .*nowhere.pem"):
        station.start(MailNotifier(settings(controller.port, ca_file="nowhere.pem")),
                      name="third")


def test_a_server_down_then_up_gets_every_mail_once_in_order(
        station: NotifierStation, smtp_server: ServerFactory, wait_until: Any) -> None:
    port = free_port()  # nothing listens yet
    mail = station.start(MailNotifier(settings(port)))
    for n in range(3):
        mail.message(PlanMessage(station.test_id, "bench/1", n, f"message {n}"))
    wait_until(lambda: station.outbox(), "retries against the closed port",
               check=lambda rows: len(rows) == 3 and rows[0][2] >= 2)
    assert [row[1] for row in station.outbox()] == ["pending"] * 3
    _, inbox = smtp_server(port)
    wait_until(lambda: [row[1] for row in station.outbox()], "every mail delivered",
               check=lambda statuses: statuses == ["delivered"] * 3)
    subjects = [m["Subject"] for _, m in inbox.mails]
    assert subjects == [f"[cellbench bench] Channel bench/1: message {n}" for n in range(3)]
    assert len({m["Message-ID"] for _, m in inbox.mails}) == 3


def test_a_restarted_station_delivers_what_its_outbox_kept_with_the_same_message_id(
        station: NotifierStation, smtp_server: ServerFactory, wait_until: Any) -> None:
    port = free_port()
    first = station.start(MailNotifier(settings(port, retry_first="1 h")))
    first.message(PlanMessage(station.test_id, "bench/1", 3, "kept"))
    wait_until(lambda: station.outbox(), "a failed attempt",
               check=lambda rows: rows and rows[0][2] == 1)
    with station.db.engine.connect() as connection:
        kept_id = connection.exec_driver_sql("SELECT event_id FROM notify_outbox").scalar_one()
    first.close()
    _, inbox = smtp_server(port)
    second = station.start(MailNotifier(settings(port)), name="notifier")
    # The retry is an hour away, as the outbox says: a new start keeps to it, until told
    # that the server is back.
    assert station.outbox()[0][1] == "pending"
    second.retry_now()
    wait_until(lambda: station.outbox()[0][1], "the kept mail delivered",
               check=lambda status: status == "delivered")
    assert [m["Subject"] for _, m in inbox.mails] == ["[cellbench bench] Channel bench/1: kept"]
    assert inbox.mails[0][1]["Message-ID"] == f"<{kept_id}@bench.cellbench>"


def test_recipients_get_what_their_rules_select(
        station: NotifierStation, smtp_server: ServerFactory, wait_until: Any) -> None:
    controller, inbox = smtp_server()
    mail = station.start(MailNotifier(settings(controller.port, recipients=[
        {"address": "all@lab.example"},
        {"address": "alarms2@lab.example", "events": ["alarm"], "channels": ["bench/2"]},
        {"address": "cellA@lab.example", "batteries": ["cell-A"], "events": ["test_finished"]},
    ])))
    mail.alarm(Alarm("bench/1", station.test_id, "over temperature"))
    mail.alarm(Alarm("bench/2", None, "device error"))
    mail.test_finished(TestFinished(station.test_id, "bench/1", TestStatus.STOPPED,
                                    "stopped by operator", 10.0))
    wait_until(lambda: len(inbox.mails), "five mails", check=lambda n: n == 5)
    assert [m["Subject"].split("] ")[1] for m in inbox.to("all@lab.example")] == [
        "ALARM on channel bench/1: over temperature", "ALARM on channel bench/2: device error",
        "Test on channel bench/1 stopped"]
    assert [m["Subject"].split("] ")[1] for m in inbox.to("alarms2@lab.example")] == [
        "ALARM on channel bench/2: device error"]
    assert [m["Subject"].split("] ")[1] for m in inbox.to("cellA@lab.example")] == [
        "Test on channel bench/1 stopped"]


def test_past_the_rate_limit_the_rest_comes_as_one_digest(
        station: NotifierStation, smtp_server: ServerFactory, wait_until: Any) -> None:
    controller, inbox = smtp_server()
    mail = MailNotifier(settings(controller.port, rate_limit=2, rate_window="2 s"))
    for n in range(6):  # a storm before the notifier started: all six wait at once
        mail.alarm(Alarm(None, None, f"storm {n}"))
    station.start(mail)
    wait_until(lambda: [row[1] for row in station.outbox()], "all six delivered",
               check=lambda statuses: statuses == ["delivered"] * 6)
    subjects = [m["Subject"].split("] ")[1] for _, m in inbox.mails]
    assert subjects == ["ALARM on station bench: storm 0", "ALARM on station bench: storm 1",
                        "4 notifications (digest): ALARM on station bench: storm 2"]
    digest = inbox.mails[2][1].get_body(("plain",))
    assert digest is not None and "storm 5" in digest.get_content()


def test_an_outbox_that_keeps_failing_raises_one_alarm(station: NotifierStation,
                                                       wait_until: Any) -> None:
    mail = station.start(MailNotifier(settings(free_port(), alarm_after="1 ms")))
    mail.alarm(ALARM)
    alarms = wait_until(lambda: station.alarms, "the outbox's alarm")
    assert alarms[0].startswith("notifier notifier: 1 message(s) not delivered for 0 min: ")
    wait_until(lambda: station.outbox(), "more failures",
               check=lambda rows: rows and rows[0][2] >= 3)
    assert len(station.alarms) == 1


def test_insecure_settings_are_refused_unless_allowed_and_then_warned(
        station: NotifierStation, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValidationError, match="security = \"none\" sends mail that others can "
                                              "read or alter: refused unless allow_insecure"):
        settings(25, security="none", username=None, password=None)
    with pytest.raises(ValidationError, match="verify = false .* refused unless allow_insecure"):
        settings(587, verify=False)
    with pytest.raises(ValidationError, match="a password is never sent unencrypted"):
        settings(25, security="none", allow_insecure=True)
    with caplog.at_level(logging.WARNING):
        station.start(MailNotifier(settings(25, security="none", allow_insecure=True,
                                            username=None, password=None)))
        station.start(MailNotifier(settings(587, verify=False, allow_insecure=True,
                                            password={"value": "in clear"})), name="second")
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert "mail goes to 127.0.0.1:25 unencrypted" in warnings
    assert "the certificate of 127.0.0.1 is not verified" in warnings
    assert "password is written in clear in the station file" in warnings


def test_the_test_message_goes_to_every_recipient_at_once(
        station: NotifierStation, smtp_server: ServerFactory) -> None:
    controller, inbox = smtp_server()
    mail = station.start(MailNotifier(settings(controller.port, recipients=[
        {"address": "a@lab.example", "events": ["alarm"]}, {"address": "b@lab.example"}])))
    assert mail.send_test() == ["a@lab.example", "b@lab.example"]
    assert [rcpts for rcpts, _ in inbox.mails] == [["a@lab.example"], ["b@lab.example"]]
    assert station.outbox() == []  # past the outbox


class TestMailContract(NotifierContract):
    """The notifier contract, on a mail notifier that is never started (events wait in it)."""

    plugin = "cellbench_mail.plugin"
    name = "mail"
    cases: ClassVar[dict[str, dict[str, Any]]] = {"starttls": {
        "host": "127.0.0.1", "sender": "s@lab.example",
        "recipients": [{"address": "lab@lab.example"}], "events": ["alarm", "message"]}}
