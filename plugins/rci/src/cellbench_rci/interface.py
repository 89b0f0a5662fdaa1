"""The rci interface as the station starts it: its settings (the ``[interfaces.settings]`` of
an ``[[interfaces]]`` section with ``kind = "rci"``) and its start and stop."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cellbench_rci.commands import Dispatcher, Role
from cellbench_rci.server import Limits, RciServer
from cellbench_sdk.access import (
    Token,
    is_loopback,
    read_token_file,
    settings_tokens,
    split_address,
)
from cellbench_sdk.control import StationControl
from cellbench_sdk.units import Duration

RoleName = Literal["viewer", "operator"]


class RciSettings(BaseModel):
    """Settings of the rci interface (docs/rci.md has each with an example)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tcp: str | None = Field(default="127.0.0.1:5025",
                            description="host:port to listen on; none: no TCP")
    serial: str | None = Field(default=None, description="serial port, e.g. /dev/ttyS0")
    baudrate: int = Field(default=115200, gt=0)
    tokens: dict[str, str] = Field(default={}, description='"<token>" = "<role> <label>"')
    token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    cert_roles: dict[str, RoleName] = {}
    max_line: int = Field(default=512, ge=16, le=65536)
    idle_timeout: Duration = Field(default=300.0, description="e.g. '300 s'")
    preauth_timeout: Duration = Field(default=10.0, description="how long a connection may wait "
                                   "before AUTH, e.g. '10 s'")
    rate: float = Field(default=2000.0, gt=0, allow_inf_nan=False,
                        description="commands per second per client")
    max_connections: int = Field(default=64, ge=1)
    max_unauthenticated: int = Field(default=8, ge=1, description="connections waiting for "
                                     "AUTH at once (a new one closes the oldest)")
    max_subscriptions: int = Field(default=64, ge=1)

    @field_validator("tcp")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value)
        return value

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: dict[str, str]) -> dict[str, str]:
        settings_tokens(value, "rci")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RciSettings:
        if self.tcp is None and self.serial is None:
            raise ValueError("give tcp, serial or both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key (client certificates "
                             "are checked over TLS)")
        return self


class RciInterface:
    """The rci interface of a station (see :class:`cellbench_sdk.control.Interface`).

    ``address`` is the (host, port) it listens on once started (the port the system chose for
    ``port 0``)."""

    def __init__(self, settings: RciSettings) -> None:
        self.settings = settings
        self.server: RciServer | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, control: StationControl) -> str:
        s = self.settings
        base = control.base_dir

        def path(setting: str, name: str) -> Path:
            found = base / name
            if not found.is_file():
                raise ValueError(f"{setting} = {name!r}: no file {found}")
            return found

        entries: dict[str, Token] = settings_tokens(s.tokens, "rci")
        if s.token_file is not None:
            entries |= read_token_file(path("token_file", s.token_file))
        tokens = {t: (Role[e.role.upper()], e.label) for t, e in entries.items()}
        context = None
        if s.tls_cert is not None and s.tls_key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert, key = path("tls_cert", s.tls_cert), path("tls_key", s.tls_key)
            try:
                context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as err:
                raise ValueError(f"tls_cert = {s.tls_cert!r}, tls_key = {s.tls_key!r}: cannot "
                                 f"use {cert} with {key}: {err}") from None
            if s.tls_client_ca is not None:
                ca = path("tls_client_ca", s.tls_client_ca)
                try:
                    context.load_verify_locations(ca)
                except (OSError, ssl.SSLError) as err:
                    raise ValueError(f"tls_client_ca = {s.tls_client_ca!r}: cannot use {ca}: "
                                     f"{err}") from None
                context.verify_mode = ssl.CERT_REQUIRED
        host, port = (None, 0) if s.tcp is None else split_address(s.tcp)
        if host is not None and not is_loopback(host) and not tokens \
                and s.tls_client_ca is None:
            raise ValueError(f"tcp = {s.tcp!r} listens beyond this machine: set tokens (or "
                             "token_file) or TLS client certificates (tls_client_ca)")
        self.server = RciServer(
            control, Dispatcher(control, tokens),
            Limits(s.max_line, s.rate, s.idle_timeout, s.max_subscriptions, s.preauth_timeout),
            max_connections=s.max_connections, max_unauthenticated=s.max_unauthenticated,
            tokens=bool(tokens),
            cert_roles={n: Role[r.upper()] for n, r in s.cert_roles.items()})
        served = []
        try:
            if host is not None:
                served.append(await self.server.listen(host, port, context))
                self.address = self.server.addresses[0]
            if s.serial is not None:
                served.append(self.server.attach_serial(s.serial, s.baudrate))
        except BaseException:
            await self.server.close()
            raise
        return "rci " + ", ".join(served)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None
