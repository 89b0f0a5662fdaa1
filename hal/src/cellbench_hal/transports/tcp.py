"""Lines and bytes over a TCP connection: SCPI sockets (port 5025), chamber protocols, loggers."""

from __future__ import annotations

import contextlib
import socket
from typing import Unpack

from cellbench_hal.transports.base import (
    LineTransport,
    Link,
    TransportOptions,
    positive_seconds,
)


class _SocketLink:
    """A connected socket as a :class:`Link`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: bytes, timeout: float) -> None:
        self._sock.settimeout(timeout)
        self._sock.sendall(data)

    def receive(self, size: int, timeout: float) -> bytes:
        self._sock.settimeout(timeout)  # 0: non-blocking
        try:
            data = self._sock.recv(size)
        except (TimeoutError, BlockingIOError):
            return b""
        if not data:
            raise ConnectionError("the peer closed the connection")
        return data

    def close(self) -> None:
        # shutdown wakes a receive blocked on another thread; close alone may not.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class TcpLineTransport(LineTransport):
    """A TCP connection to ``host``:``port``, made within ``connect_timeout`` seconds.

    A peer that closes the connection raises :class:`DeviceConnectionError` and leaves the
    transport closed (:meth:`open` connects again). Other settings: :class:`LineTransport`.
    """

    def __init__(self, host: str, port: int, *, connect_timeout: float = 5.0,
                 **options: Unpack[TransportOptions]) -> None:
        if not host:
            raise ValueError("a TCP transport needs a host")
        if not (isinstance(port, int) and 0 < port < 65536):
            raise ValueError(f"a TCP port is 1..65535, not {port!r}")
        self.host = host
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        options.setdefault("name", f"tcp://{shown}:{port}")
        super().__init__(open_timeout=positive_seconds("connect_timeout", connect_timeout),
                         **options)

    def _open_link(self) -> Link:
        sock = socket.create_connection((self.host, self.port), timeout=self.open_timeout)
        # Commands are short and each waits for its reply: send them at once.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _SocketLink(sock)
