"""Central databases on each backend (a SQLite file, and fresh databases on the PostgreSQL and
MariaDB servers on loopback), and a TCP proxy that plays a server going away. The station
database (``bench``) and the comparison of both sides (``digest``) come from the workspace's
conftest.py.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa


@pytest.fixture
def central_url(database_url: str) -> str:
    """A fresh, empty central database on each backend (parametrise ``database_url``
    indirectly to choose the backends)."""
    return database_url


class Proxy:
    """A TCP proxy on loopback to a server: :meth:`stop` is the server going away mid-transfer
    (every connection cut, nothing listening), :meth:`start` its return on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Listen (on the same port as before, if started before) and forward connections."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        with self._lock:
            self._sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Cut every connection and stop listening."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):  # a listener, or a connection closed already
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # cut by stop()
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxied() -> Iterator[Callable[[str], tuple[Proxy, str]]]:
    """``proxied(url) -> (proxy, url through the proxy)``; every proxy stops afterwards."""
    proxies: list[Proxy] = []

    def make(url: str) -> tuple[Proxy, str]:
        parsed = sa.make_url(url)
        proxy = Proxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        proxy.start()
        proxies.append(proxy)
        return proxy, parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)

    yield make
    for proxy in proxies:
        proxy.stop()
