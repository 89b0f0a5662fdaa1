"""Real peers for the transport tests: a line server on loopback TCP and on a pseudo-terminal."""

from __future__ import annotations

import contextlib
import os
import select
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

#: What :func:`answer` returns to make the peer close the connection.
HANG_UP = b"<hang up>"


def answer(line: bytes) -> bytes:
    """The peer's reply to one command line; every test speaks this small protocol."""
    if line.startswith(b"SLOW "):  # SLOW <seconds>: a reply that comes late
        time.sleep(float(line.split()[1]))
        return b"late\n"
    replies = {
        b"BYE": HANG_UP,
        b"GARBAGE": b"garbage",  # no terminator
        b"NOTTEXT": b"\xff\xfe\n",
        b"LONG": b"x" * 100,
        b"BIN": b"\x00\x01\x02\xff",
        b"SILENT": b"",
    }
    return replies.get(line, b"re:" + line + b"\n")


@pytest.fixture
def line_protocol() -> Callable[[bytes], bytes]:
    """:func:`answer`, for peers that a test builds itself (a fake USB device)."""
    return answer


@dataclass
class LineServer:
    """How a peer frames commands, what it sends on connecting, and what it has received."""

    terminator: bytes = b"\n"
    greeting: bytes = b""
    received: list[bytes] = field(default_factory=list)

    def serve(self, recv: Callable[[], bytes], send: Callable[[bytes], object]) -> None:
        """Answer each command line that ``recv`` brings until it returns b"" or a hang-up."""
        if self.greeting:
            send(self.greeting)
        pending = b""
        while chunk := recv():
            pending += chunk
            while (end := pending.find(self.terminator)) >= 0:
                line, pending = pending[:end], pending[end + len(self.terminator):]
                self.received.append(line)
                reply = answer(line)
                if reply == HANG_UP:
                    return
                if reply:
                    send(reply)


@dataclass
class TcpPeer:
    """A :class:`LineServer` listening on 127.0.0.1:``port``."""

    server: LineServer
    port: int


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        line_server: LineServer = self.server.line_server  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            line_server.serve(lambda: self.request.recv(65536), self.request.sendall)


@pytest.fixture
def tcp_peer() -> Iterator[TcpPeer]:
    """A threaded line server on loopback; each connection gets its own thread."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.line_server = LineServer()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield TcpPeer(server.line_server, server.server_address[1])  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class PtyPeer:
    """A :class:`LineServer` on the master side of a pseudo-terminal; ``port`` is the slave's
    name, which pyserial opens like any serial port. :meth:`unplug` closes the master."""

    server: LineServer
    port: str
    master: int
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def unplug(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        os.close(self.master)


@pytest.fixture
def pty_peer() -> Iterator[PtyPeer]:
    master, slave = os.openpty()
    port = os.ttyname(slave)
    os.close(slave)  # pyserial opens it by name
    peer = PtyPeer(LineServer(), port, master)
    stop = peer.stop

    def recv() -> bytes:
        while not stop.is_set():
            with contextlib.suppress(OSError):  # no slave open yet (EIO), or closed
                if select.select([master], [], [], 0.05)[0]:
                    return os.read(master, 65536)
            time.sleep(0.01)
        return b""

    peer.thread = threading.Thread(target=peer.server.serve,
                                   args=(recv, lambda data: os.write(master, data)))
    peer.thread.start()
    try:
        yield peer
    finally:
        if not stop.is_set():
            peer.unplug()
