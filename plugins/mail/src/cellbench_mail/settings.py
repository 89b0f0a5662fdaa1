"""Settings of the mail notifier, as a station file's ``[notifiers.settings]`` gives them
(docs/notifications.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cellbench_sdk.notify import Duration, EventKind, OutboxSettings, SecretSettings

#: A mail address as the SMTP envelope takes it: one @, no spaces or angle brackets.
ADDRESS = r"^[^@\s<>]+@[^@\s<>]+$"


class Recipient(BaseModel):
    """One recipient and which notifications reach them (each list empty: all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(pattern=ADDRESS, description="e.g. lab@example.org")
    events: list[EventKind] = Field(default=[], description="of the notifier's events, those "
                                                           "this recipient gets (empty: all)")
    channels: list[str] = Field(default=[], description="channels (e.g. \"3\"), empty: all")
    batteries: list[str] = Field(default=[], description="batteries by name, empty: all")


class MailSettings(OutboxSettings):
    """The mail server, how to reach it safely, who gets what, and the outbox settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    host: str = Field(min_length=1, description="the SMTP server's host name")
    port: int = Field(default=587, ge=1, le=65535,
                      description="587 for STARTTLS, 465 for implicit TLS")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (port 587), tls (implicit, port 465), or "
                                        "none (refused unless allow_insecure)")
    ca_file: str | None = Field(default=None, description="CA certificates (PEM) to verify the "
                                                          "server by, instead of the system's")
    verify: bool = Field(default=True, description="verify the server's certificate and name "
                                                   "(false is refused unless allow_insecure)")
    allow_insecure: bool = Field(default=False, description="allow security = none or "
                                                            "verify = false (warned at start)")
    username: str | None = Field(default=None, description="for SMTP AUTH")
    password: SecretSettings | None = Field(default=None, description="for SMTP AUTH: file = "
                                                                      "or env =")
    sender: str = Field(pattern=ADDRESS, description="the From address")
    recipients: list[Recipient] = Field(min_length=1)
    plot_span: Duration = Field(default=3600.0, ge=0, description="how much of the test an "
                                                                  "alarm mail plots, e.g. "
                                                                  "'1 h' ('0 s': no plot)")

    @model_validator(mode="after")
    def _consistent(self) -> MailSettings:
        if (self.security == "none" or not self.verify) and not self.allow_insecure:
            what = "security = \"none\"" if self.security == "none" else "verify = false"
            raise ValueError(f"{what} sends mail that others can read or alter: refused unless "
                             "allow_insecure = true")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together (SMTP AUTH needs both)")
        if self.security == "none" and self.username is not None:
            raise ValueError("a password is never sent unencrypted: use security = "
                             "\"starttls\" or \"tls\" with username and password")
        return self
