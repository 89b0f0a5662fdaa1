"""uvicorn on the station's own event loop: started as a task, stopped by its exit flag."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn that leaves the signals to the station (which stops it in its own order)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class WebServer:
    """Serves ``app`` on ``host:port`` (HTTPS with ``tls_cert`` and ``tls_key``).

    WebSocket messages are not compressed: a live message goes to every client, and deflating
    it once per client cost more CPU than the bytes it saves on a lab's network."""

    def __init__(self, app: FastAPI, host: str, port: int, *, tls_cert: Path | None = None,
                 tls_key: Path | None = None) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                access_log=False, lifespan="off", ws="websockets-sansio",
                                ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                                ws_max_size=64 * 1024, ws_per_message_deflate=False,
                                timeout_graceful_shutdown=2)
        self.server = _Server(config)
        self.tls = tls_cert is not None
        self._task: asyncio.Task[None] | None = None
        #: The (host, port) it listens on once started.
        self.address: tuple[str, int] | None = None

    async def start(self) -> str:
        """Listen; return the URL served. OSError naming the address if it cannot."""
        config = self.server.config
        # Bound here, not by uvicorn: a taken port is an OSError naming the address, where
        # uvicorn would log it and exit the process.
        try:
            family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((config.host, config.port))
        except OSError as err:
            sock.close()
            raise OSError(f"web: cannot listen on {config.host}:{config.port}: "
                          f"{err.strerror}") from None
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self._task.done():
                sock.close()
                error = self._task.exception() if not self._task.cancelled() else None
                raise OSError(f"web: the server did not start: {error!r}")
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        self.address = (host, port)
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{shown}:{port}/"

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._task is None:
            return
        self.server.should_exit = True
        self.server.force_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
