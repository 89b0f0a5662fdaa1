"""Settings of the MQTT notifier, as a station file's ``[notifiers.settings]`` gives them
(docs/notifications.md)."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from cellbench_sdk.notify import EVENT_KINDS, Duration, EventKind, OutboxSettings, SecretSettings


class MqttSettings(OutboxSettings):
    """The broker, how to reach it, what is published, and the outbox settings (every event
    by default, no rate limit: subscribers are programs)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    events: list[EventKind] = Field(default=list(EVENT_KINDS), min_length=1,
                                    description="which events to publish")
    rate_limit: int = Field(default=0, ge=0, description="events per rate_window (0: no limit)")
    host: str = Field(default="127.0.0.1", min_length=1, description="the broker's host name")
    port: int = Field(default=1883, ge=1, le=65535, description="1883, or 8883 with TLS")
    tls: bool = Field(default=False, description="TLS to the broker, its certificate verified")
    ca_file: str | None = Field(default=None, description="CA certificates (PEM) to verify the "
                                                          "broker by, instead of the system's")
    allow_insecure: bool = Field(default=False, description="allow a password without TLS")
    username: str | None = None
    password: SecretSettings | None = Field(default=None, description="file = or env =")
    client_id: str = Field(default="", max_length=64,
                           description="by default cellbench-<station>-<notifier name>")
    topic_prefix: str = Field(default="cellbench", pattern=r"^[^#+\s]+$",
                              description="topics are <prefix>/<station>/...")
    live_every: int = Field(default=1, ge=0, description="publish every n-th sample of each "
                                                       "channel (0: no live samples)")
    state_interval: Duration = Field(default=10.0, description="a channel's retained state "
                                                              "follows its samples this often")
    keepalive: int = Field(default=30, ge=5, le=3600, description="seconds; the broker "
                                                                 "publishes the last will "
                                                                 "after 1.5 times this "
                                                                 "without a word")

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.password is not None and not self.tls and not self.allow_insecure:
            raise ValueError("a password without tls = true goes to the broker in clear: "
                             "refused unless allow_insecure = true")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file applies to tls = true only")
        return self
