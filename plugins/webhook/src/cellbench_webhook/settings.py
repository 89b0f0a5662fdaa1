"""Settings of the webhook notifier, as a station file's ``[notifiers.settings]`` gives them
(docs/notifications.md)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, model_validator

from cellbench_sdk.notify import OutboxSettings, SecretSettings

#: Hosts an http:// URL may name without allow_insecure: the request never leaves the machine.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class WebhookSettings(OutboxSettings):
    """The URL, its signing key, the payload's shape, and the outbox settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    url: str = Field(description="where each notification is POSTed (https://...)")
    secret: SecretSettings | None = Field(default=None, description="the HMAC-SHA256 key the "
                                                                    "requests are signed with: "
                                                                    "file = or env =")
    template: Literal["json", "slack", "mattermost", "teams", "discord"] = Field(
        default="json", description="json: the notification's fields; or the message format "
                                    "of a chat service's incoming webhook")
    ca_file: str | None = Field(default=None, description="CA certificates (PEM) to verify the "
                                                          "server by, instead of the system's")
    allow_insecure: bool = Field(default=False, description="allow http:// to another machine")

    @model_validator(mode="after")
    def _consistent(self) -> WebhookSettings:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an http:// or https:// URL with a host, not "
                             f"{self.url!r}")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK and not self.allow_insecure:
            raise ValueError("an http:// URL to another machine sends the notifications (and "
                             "their signature) in clear: use https://, or allow_insecure = true")
        return self
