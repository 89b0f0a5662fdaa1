"""The web interface as the station starts it (an ``[[interfaces]]`` section with
``kind = "web"``): the app over the station's database and control, served by uvicorn on the
station's event loop."""

from __future__ import annotations

from cellbench_sdk.access import is_loopback, read_token_file
from cellbench_sdk.control import StationControl
from cellbench_sdk.export import export_formats
from cellbench_web.app import Backend, build_app
from cellbench_web.auth import Access, Role
from cellbench_web.data import Reader
from cellbench_web.server import WebServer
from cellbench_web.settings import WebSettings, parse_listen


class WebInterface:
    """The web interface of a station (see :class:`cellbench_sdk.control.Interface`);
    ``address`` is the (host, port) it listens on once started."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.address: tuple[str, int] | None = None
        self.backend: Backend | None = None
        self._server: WebServer | None = None

    async def start(self, control: StationControl) -> str:
        s = self.settings
        base = control.base_dir
        tokens: dict[str, Role] = {t: Role[r.upper()] for t, r in s.tokens.items()}
        if s.token_file is not None:
            tokens |= {t: Role[r.upper()]
                       for t, r in read_token_file(base / s.token_file).items()}
        host, port = parse_listen(s.listen)
        if not is_loopback(host) and not tokens:
            raise ValueError(f"web: listen = {s.listen!r} is reachable from other machines: "
                             "set tokens (or token_file) first")
        access = Access(tokens, session_lifetime_s=s.session_lifetime)
        self.backend = Backend(Reader(control.db.engine, central=False), access,
                               control.name, control.version, control,
                               formats=export_formats(), max_clients=s.max_clients,
                               secure_cookies=s.tls_cert is not None)
        server = WebServer(build_app(self.backend), host, port,
                           tls_cert=None if s.tls_cert is None else base / s.tls_cert,
                           tls_key=None if s.tls_key is None else base / s.tls_key)
        url = await server.start()
        self._server, self.address = server, server.address
        return f"web {url}"

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
        if self.backend is not None and self.backend.hub is not None:
            await self.backend.hub.close()
