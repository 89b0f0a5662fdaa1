"""A scripted protocol peer for byte-level tests of drivers that talk over a stream.

In the spirit of PyMeasure's ``expected_protocol``, but over a real loopback TCP connection, so
the driver's own transport code runs: SCPI instruments, chamber protocols, remote-control
clients. Re-exported by :mod:`cellbench_sdk.testing`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from enum import Enum
from types import TracebackType
from typing import Final


class HangUp(Enum):
    """The type of :data:`HANG_UP`."""

    HANG_UP = "hang up"


#: A :class:`ScriptedPeer` reply that closes the connection instead of answering.
HANG_UP: Final = HangUp.HANG_UP


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
        for i, item in enumerate(script):
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes)
                    and (isinstance(item[1], bytes) or item[1] is HANG_UP)):
                raise TypeError(f"script[{i}] must be (request bytes, reply bytes or HANG_UP), "
                                f"not {item!r}")
        self.script = list(script)
        self.host = host
        self.tls = tls
        self.port = 0
        #: Index of the step the peer is at (``len(script)`` once all are done).
        self.step = 0
        self._received = b""  # bytes of the current step received so far
        self._failure = ""
        self._server: asyncio.Server | None = None
        self._connection: asyncio.StreamWriter | None = None
        self._handlers: set[asyncio.Task[None]] = set()

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
        problem = self._failure
        if not problem and self.step < len(self.script):
            problem = (f"script[{self.step}] unfinished: expected "
                       f"{self.script[self.step][0]!r}, received {self._received!r}")
        if problem:
            raise AssertionError(f"ScriptedPeer {problem}") from exc

    def _fail(self, problem: str) -> None:
        self._failure = self._failure or problem
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
        self._received = b""
        while self.step < len(self.script):
            request, reply = self.script[self.step]
            while not self._received.startswith(request):
                if not request.startswith(self._received):
                    self._fail(f"script[{self.step}]: expected {request!r}, received "
                               f"{self._received!r}")
                    return
                chunk = await reader.read(65536)
                if not chunk:
                    return
                self._received += chunk
            self._received = self._received[len(request):]
            self.step += 1
            if reply is HANG_UP:
                return
            writer.write(reply)
            await writer.drain()
        extra = self._received or await reader.read(65536)
        if extra:
            self._fail(f"received {extra!r} after the end of the script ({len(self.script)} "
                       "steps)")
