"""Settings of the web interface, as a station file's ``[interfaces.settings]`` gives them
(docs/web.md has each with an example)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cellbench_sdk.access import settings_tokens, split_address
from cellbench_sdk.units import Duration


class WebSettings(BaseModel):
    """Where the web interface listens, who may use it, and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    listen: str = Field(default="127.0.0.1:8080",
                        description="host:port to listen on (port 0: any free one)")
    tokens: dict[str, str] = Field(default={}, description="token = 'role label' (role viewer "
                                   "or operator); none: everyone on loopback is an operator")
    token_file: str | None = Field(default=None, description="a file of 'token role label' "
                                   "lines")
    tls_cert: str | None = Field(default=None, description="PEM certificate (HTTPS)")
    tls_key: str | None = Field(default=None, description="PEM private key of tls_cert")
    session_lifetime: Duration = Field(default=12 * 3600.0,
                                    description="how long a page login lasts, e.g. '12 h'")
    max_clients: int = Field(default=100, ge=1, le=10_000,
                             description="live (WebSocket) clients at once")

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str) -> str:
        split_address(value)
        return value

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: dict[str, str]) -> dict[str, str]:
        for n, token in enumerate(value, 1):
            if len(token) < 16 or not token.isprintable() or " " in token:
                raise ValueError(f"the token number {n}: a token has at least 16 printable "
                                 "characters and no spaces")
        settings_tokens(value, "web")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WebSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self
