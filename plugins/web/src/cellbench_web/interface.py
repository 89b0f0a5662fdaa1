"""The web interface as the station starts it (an ``[[interfaces]]`` section with
``kind = "web"``): the app over the station's database and control, served by uvicorn on the
station's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from cellbench_sdk.access import (
    AuthGuard,
    is_loopback,
    read_token_file,
    settings_tokens,
    split_address,
)
from cellbench_sdk.control import StationControl
from cellbench_sdk.export import export_formats
from cellbench_web.app import Backend, build_app
from cellbench_web.auth import Access, Role
from cellbench_web.data import Reader
from cellbench_web.server import WebServer
from cellbench_web.settings import WebSettings


class WebInterface:
    """The web interface of a station (see :class:`cellbench_sdk.control.Interface`);
    ``address`` is the (host, port) it listens on once started."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.address: tuple[str, int] | None = None
        self.backend: Backend | None = None
        self._server: WebServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, control: StationControl) -> str:
        s = self.settings
        base = control.base_dir
        entries = settings_tokens(s.tokens, "web")
        if s.token_file is not None:
            entries |= read_token_file(_file(base, "token_file", s.token_file))
        tokens = {t: (Role[e.role.upper()], e.label) for t, e in entries.items()}
        host, port = split_address(s.listen)
        if not is_loopback(host) and not tokens:
            raise ValueError(f"web: listen = {s.listen!r} is reachable from other machines: "
                             "set tokens (or token_file) first")
        access = Access(tokens, session_lifetime_s=s.session_lifetime)
        self.backend = Backend(Reader(control.db.engine, central=False), access,
                               control.name, control.version, control,
                               formats=export_formats(), max_clients=s.max_clients,
                               secure_cookies=s.tls_cert is not None)
        server = WebServer(build_app(self.backend), host, port,
                           tls_cert=None if s.tls_cert is None
                           else _file(base, "tls_cert", s.tls_cert),
                           tls_key=None if s.tls_key is None
                           else _file(base, "tls_key", s.tls_key))
        url = await server.start()
        self._server, self.address = server, server.address
        self._sweeper = asyncio.create_task(_sweep(access.guard))
        return f"web {url}"

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
        if self.backend is not None and self.backend.hub is not None:
            await self.backend.hub.close()


def _file(base: Path, setting: str, name: str) -> Path:
    """The file a setting names (relative to the station file); ValueError naming both if it
    is not there."""
    found = base / name
    if not found.is_file():
        raise ValueError(f"web: {setting} = {name!r}: no file {found}")
    return found


async def _sweep(guard: AuthGuard) -> None:
    """Log the counts of failed tokens once their window ends, even if no request comes."""
    while True:
        await asyncio.sleep(min(1.0, guard.window_s / 4))
        guard.sweep()
