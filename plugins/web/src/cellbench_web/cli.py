"""``cellbench web --db URL``: the pages and the API, read-only, over a station database or a
central one that many stations sync to."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cellbench_sdk.access import is_loopback, read_token_file, split_address
from cellbench_sdk.cli import console, fail
from cellbench_web.auth import Role

if TYPE_CHECKING:
    from cellbench_web.server import WebServer

HELP = """Serve the web pages and the HTTP API read-only over a database: a station's, or a
central one (sync-sql) holding many stations, each with its channels as last synced.

Examples:

    cellbench web --db sqlite:///cellbench.db

    cellbench web --db postgresql+psycopg://central/results --listen 0.0.0.0:8080 \\
        --token-file web-tokens.txt

Beyond loopback it needs --token-file (lines '<token> viewer <label>'); everyone is a viewer
here.
docs/web.md has the API."""


def register(app: typer.Typer) -> None:
    """Add ``web`` to the ``cellbench`` command line."""

    @app.command("web", help=HELP)
    def web(
        db: Annotated[str, typer.Option("--db", help="the database URL (SQLAlchemy)")],
        listen: Annotated[str, typer.Option(help="host:port")] = "127.0.0.1:8080",
        token_file: Annotated[Path | None, typer.Option(
            help="'<token> <role> <label>' lines")] = None,
        tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate (HTTPS)")] = None,
        tls_key: Annotated[Path | None, typer.Option(help="PEM key of --tls-cert")] = None,
    ) -> None:
        try:
            host, port = split_address(listen)
            listed = read_token_file(token_file) if token_file is not None else {}
            tokens = {t: (Role[e.role.upper()], e.label) for t, e in listed.items()}
        except (ValueError, OSError) as err:
            fail(f"--listen/--token-file: {err}", code=2)
        if not is_loopback(host) and not tokens:
            fail(f"--listen {listen} is reachable from other machines: give --token-file",
                 code=2)
        if (tls_cert is None) != (tls_key is None):
            fail("--tls-cert and --tls-key go together", code=2)
        # FastAPI and uvicorn load here, not when `cellbench` starts (they take a third of a
        # second, which every other command would pay).
        from cellbench_sdk.export import export_formats
        from cellbench_web.app import Backend, build_app
        from cellbench_web.auth import Access
        from cellbench_web.data import Reader
        from cellbench_web.server import WebServer

        try:
            reader = Reader.open(db)
        except ValueError as err:
            fail(str(err), code=2)
        name = "central" if reader.central else "database"
        backend = Backend(reader, Access(tokens, highest=Role.VIEWER), name, _version(),
                          formats=export_formats())
        try:
            asyncio.run(_serve(WebServer(build_app(backend), host, port, tls_cert=tls_cert,
                                         tls_key=tls_key)))
        except OSError as err:
            fail(str(err), code=2)
        finally:
            reader.engine.dispose()


async def _serve(server: WebServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    url = await server.start()
    console.print(f"cellbench web ready: {url}", markup=False, highlight=False)
    await stop.wait()
    await server.stop()


def _version() -> str:
    from importlib.metadata import version

    return version("cellbench-web")
