"""A scripted protocol peer for byte-level tests of drivers that talk over a stream.

In the spirit of PyMeasure's ``expected_protocol``, but over a real loopback TCP connection, so
the driver's own transport code runs: SCPI instruments, chamber protocols, remote-control
clients. Re-exported by :mod:`cellbench_sdk.testing`, whose
:func:`~cellbench_sdk.testing.expected_protocol` holds such a conversation on loopback or in
memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Sequence
from enum import Enum
from types import TracebackType
from typing import Final


class HangUp(Enum):
    """The type of :data:`HANG_UP`."""

    HANG_UP = "hang up"


#: A :class:`ScriptedPeer` reply that closes the connection instead of answering.
HANG_UP: Final = HangUp.HANG_UP





class ScriptCursor:
    """Where a conversation stands in a script of ``(request, reply)`` steps: it judges the bytes
    the code under test sends and says which replies are due."""

    def __init__(self, script: Sequence[tuple[bytes, bytes | HangUp]]) -> None:
        for i, item in enumerate(script):
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes)
                    and (isinstance(item[1], bytes) or item[1] is HANG_UP)):
                raise TypeError(f"script[{i}] must be (request bytes, reply bytes or HANG_UP), "
                                f"not {item!r}")
        self.script = list(script)
        #: Index of the step the conversation is at (``len(script)`` once all are done).
        self.step = 0
        #: Bytes of the current step received so far.
        self.received = b""
        #: The first deviation, in words; empty while the conversation follows the script.
        self.failure = ""

    def fail(self, problem: str) -> None:
        """Record ``problem`` unless an earlier one is recorded."""
        self.failure = self.failure or problem

    def reconnect(self) -> None:
        """A new connection: bytes of the previous one that no step took are dropped."""
        self.received = b""

    def feed(self, data: bytes) -> list[bytes | HangUp]:
        """Take ``data`` from the code under test; return the replies now due, in order (the
        empty ``data`` at connection time yields the replies to empty requests). A deviation is
        recorded in :attr:`failure` and yields nothing more."""
        if self.failure:
            return []
        self.received += data
        due: list[bytes | HangUp] = []
        while self.step < len(self.script):
            request, reply = self.script[self.step]
            if not self.received.startswith(request):
                if not request.startswith(self.received):
                    self.fail(f"script[{self.step}]: expected {request!r}, received "
                              f"{self.received!r}")
                return due
            self.received = self.received[len(request):]
            self.step += 1
            due.append(reply)
            if reply is HANG_UP:
                return due
        if self.received:
            self.fail(f"received {self.received!r} after the end of the script "
                      f"({len(self.script)} steps)")
        return due

    def problem(self) -> str:
        """The first deviation, or what is missing of an unfinished script; empty if neither."""
        if not self.failure and self.step < len(self.script):
            return (f"script[{self.step}] unfinished: expected {self.script[self.step][0]!r}, "
                    f"received {self.received!r}")
        return self.failure


class ScriptedPeer:
    """A TCP server on loopback that holds a scripted conversation with the code under test.

    ``script`` lists ``(request, reply)`` steps: the peer waits for exactly the bytes of
    ``request`` (nothing if empty), then sends ``reply`` (nothing if empty) or, for
    :data:`HANG_UP`, closes the connection. A client that reconnects continues the script. The
    first deviation closes the connection; leaving the ``async with`` block then raises
    :class:`AssertionError` naming the step and both byte strings, as it does when the script is
    unfinished or bytes arrive after its end::

        async with ScriptedPeer([(b"*IDN?\\n", b"ACME,BC-4,1234,1.0\\n")]) as peer:
            assert await identify(peer.host, peer.port) == "ACME BC-4"

    With ``tls`` (a server-side context) the peer speaks TLS.
    """

    def __init__(self, script: Sequence[tuple[bytes, bytes | HangUp]],
                 host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None) -> None:
        self.cursor = ScriptCursor(script)
        self.script = self.cursor.script
        self.host = host
        self.tls = tls
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connection: asyncio.StreamWriter | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def step(self) -> int:
        """Index of the step the peer is at (``len(script)`` once all are done)."""
        return self.cursor.step

    async def __aenter__(self) -> ScriptedPeer:
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        # Bytes the client sent just before leaving are already on the loopback socket; a few
        # loop iterations let the server accept, read and judge them.
        for _ in range(20):
            await asyncio.sleep(0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._connection is not None:
            self._connection.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        problem = self.cursor.problem()
        if problem:
            raise AssertionError(f"ScriptedPeer {problem}") from exc

    def _fail(self, problem: str) -> None:
        self.cursor.fail(problem)
        if self._connection is not None:
            self._connection.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        if self._connection is not None:
            writer.close()
            self._fail(f"a second connection arrived while the first was open (at script"
                       f"[{self.step}])")
            return
        self._connection = writer
        try:
            await self._converse(reader, writer)
        except ConnectionError:
            pass  # the client went away; __aexit__ reports an unfinished script
        finally:
            self._connection = None
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.cursor.reconnect()
        due = self.cursor.feed(b"")
        while not self.cursor.failure:
            for reply in due:
                if reply is HANG_UP:
                    return
                writer.write(reply)
            await writer.drain()
            chunk = await reader.read(65536)
            if not chunk:
                return
            due = self.cursor.feed(chunk)


def free_port(count: int = 1) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (it was free a moment ago), for a peer
    or an emulator to listen on, or for a driver to fail to connect to; with ``count``, the
    first of that many consecutive free ports (an emulator of a supply and a load listens on
    two)."""
    while True:
        with contextlib.ExitStack() as held:
            first = held.enter_context(socket.socket())
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            try:
                for following in range(port + 1, port + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", following))
            except (OSError, OverflowError):  # taken, or past the last port: another first
                continue
            return port


def connect_when_listening(port: int, host: str = "127.0.0.1",
                           timeout_s: float = 5.0) -> socket.socket:
    """A blocking connection to ``host:port`` once something listens there (an emulator
    started in another process); ConnectionRefusedError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return socket.create_connection((host, port), timeout=2.0)
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
