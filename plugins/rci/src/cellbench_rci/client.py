"""Client library for the rci remote-control protocol: a blocking client (scripts, the
``cellbench rci`` command, tests) and an asyncio client (many connections in one program).

Both share one core, :class:`ReplyReader`, that cuts received bytes into lines and sorts them
into replies (``OK ...`` / ``ERR <code> <message>``, matched to commands in the order they were
sent) and pushed lines (``*SAMPLE ...``, ``*DROPPED ...``), which go to a callback or a queue and
never to a command. Reply lines are parsed by :mod:`cellbench_rci.protocol`, the one place that
defines the wire format.

    with RciClient.connect("127.0.0.1", 5025) as rci:
        print(rci.command("STATE? 1-4").records)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import select
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Final, Self, cast

from cellbench_rci.protocol import ErrorCode, RciError, Reply, parse_reply

__all__ = ["AsyncRciClient", "ErrorCode", "RciClient", "RciError", "Reply", "ReplyReader",
           "tls_context"]

#: Port of the rci interface unless the station file says otherwise.
DEFAULT_PORT: Final = 5025
#: Seconds a command waits for its reply (and a connection attempt for the server).
DEFAULT_TIMEOUT_S: Final = 10.0
#: The longest line the client accepts from the server; a longer one means a broken peer.
MAX_REPLY_BYTES: Final = 16 * 1024 * 1024

PushCallback = Callable[[str], None]


class ReplyReader:
    """Cuts the received byte stream into lines and sorts them: pushed lines (starting with
    ``*``) to ``on_push``, every other line to ``on_reply``; both get the line without its end.
    """

    __slots__ = ("_buffer", "_on_push", "_on_reply")

    def __init__(self, on_reply: Callable[[str], None], on_push: PushCallback) -> None:
        self._buffer = b""
        self._on_reply = on_reply
        self._on_push = on_push

    def feed(self, data: bytes) -> None:
        """Take the next received bytes; deliver every line they complete."""
        buffer = self._buffer + data if self._buffer else data
        if b"\n" not in buffer:
            if len(buffer) > MAX_REPLY_BYTES:
                raise ConnectionError(f"the server sent a line over {MAX_REPLY_BYTES} bytes")
            self._buffer = buffer
            return
        *lines, self._buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("ascii", "replace").rstrip("\r")
            if line.startswith("*"):
                self._on_push(line)
            else:
                self._on_reply(line)


def encode_command(line: str) -> bytes:
    """``line`` as the bytes to send; a command must be one line of printable ASCII."""
    if not line.isascii() or not line.isprintable():
        raise ValueError(f"command {line!r}: only printable ASCII on one line can be sent")
    return line.encode("ascii") + b"\n"


def tls_context(ca: Path | None = None, cert: Path | None = None,
                key: Path | None = None) -> ssl.SSLContext:
    """A TLS client context that trusts ``ca`` (a PEM file; default: the system's CAs) and,
    with ``cert`` (and ``key`` unless the cert file holds it), presents a client certificate.
    Raises ValueError naming the file that cannot be used."""
    if key is not None and cert is None:
        raise ValueError(f"client key {key}: needs the client certificate it belongs to")
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ssl.SSLError) as err:
        raise ValueError(f"CA certificate {ca}: cannot load it: {err}") from err
    if cert is not None:
        try:
            context.load_cert_chain(str(cert), str(key) if key is not None else None)
        except (OSError, ssl.SSLError) as err:
            files = f"{cert}" + (f" with key {key}" if key is not None else "")
            raise ValueError(f"client certificate {files}: cannot load it: {err}") from err
    return context


def _reply(command: str, line: str) -> Reply:
    """The reply ``line`` to ``command``; raises RciError if it is an ERR line, ConnectionError
    if it is no reply at all (the peer is no rci server, or out of step)."""
    try:
        reply = parse_reply(line)
    except ValueError as err:
        raise ConnectionError(f"{command}: {err}") from None
    if isinstance(reply, RciError):
        reply.command = command
        raise reply
    return reply


class RciClient:
    """A blocking connection to an rci server.

    A reader thread receives everything the server sends: replies go back to the waiting
    :meth:`command`, pushed lines to ``on_push`` (called on the reader thread; it must not block)
    or, without a callback, to a queue that :meth:`pushes` iterates. A command that times out
    closes the connection, since a late reply would be taken for the next command's.
    """

    def __init__(self, sock: socket.socket, *, timeout: float = DEFAULT_TIMEOUT_S,
                 on_push: PushCallback | None = None) -> None:
        self._sock = sock
        self._timeout = timeout
        self._replies: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._pushes: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._on_push = on_push
        self._closed = False  # the connection has ended
        self._broken = False  # closed by this side: queued replies are stale
        self._lock = threading.Lock()  # one command at a time: replies come in order
        self._io = threading.Lock()  # one thread at a time in the socket (see _read)
        self.role: str | None = None
        self._reader = threading.Thread(target=self._read, name="rci-client-reader",
                                        daemon=True)
        self._reader.start()

    @classmethod
    def connect(cls, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                token: str | None = None, tls: ssl.SSLContext | None = None,
                timeout: float = DEFAULT_TIMEOUT_S,
                on_push: PushCallback | None = None) -> RciClient:
        """Connect to ``host:port`` (over TLS with ``tls``) and, with ``token``, authenticate;
        :attr:`role` then holds the role the server granted."""
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=host)
            sock.setblocking(False)  # see _read; commands time out on the reply queue
        except BaseException:
            sock.close()
            raise
        client = cls(sock, timeout=timeout, on_push=on_push)
        if token is not None:
            try:
                client.role = client.command(f"AUTH {token}").payload
            except BaseException:
                client.close()
                raise
        return client

    def _read(self) -> None:
        """Reader thread: receive until the connection ends, then wake every waiter.

        An SSL socket must not be read and written by two threads at once (TLS 1.3 reads
        process session tickets and key updates), so the socket does not block: this thread
        waits for data without the socket's lock and takes the lock only to receive it."""
        push = self._on_push if self._on_push is not None else self._pushes.put
        reader = ReplyReader(self._replies.put, push)
        sock = self._sock
        try:
            while True:
                if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    select.select([sock], [], [])
                with self._io:
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        continue  # no whole record yet, or a TLS message without data
                if not data:
                    break
                reader.feed(data)
        except (OSError, ValueError):
            pass  # closed by us (ValueError: select on a closed socket), reset by the server,
            # or a broken line (ConnectionError): the connection ends
        finally:
            self._closed = True
            self._replies.put(None)
            self._pushes.put(None)

    def _send(self, data: bytes) -> None:
        """Send all of ``data`` on the non-blocking socket; TimeoutError if the server takes
        none of it for the timeout."""
        view = memoryview(data)
        while view:
            with self._io:
                try:
                    view = view[self._sock.send(view):]
                    continue
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
            if not select.select([], [self._sock], [], self._timeout)[1]:
                raise TimeoutError(f"the rci server took nothing for {self._timeout:g} s")

    def command(self, line: str) -> Reply:
        """Send one command and return its reply.

        Raises RciError (with the server's code and message) on an ERR reply, TimeoutError if
        no reply comes within the timeout, ConnectionError if the connection is gone."""
        data = encode_command(line)
        with self._lock:
            if self._broken:
                raise ConnectionError(f"{line}: the connection to the rci server is closed")
            if not self._closed:
                # A send to a server that has just closed may fail: the reason it gave before
                # closing (ERR 61, ERR 62), if any, is already queued as the reply.
                try:
                    self._send(data)
                except TimeoutError as err:
                    self.close()
                    raise TimeoutError(f"{line}: {err} (connection closed)") from None
                except OSError:
                    pass
            try:
                answer = self._replies.get(timeout=self._timeout)
            except queue.Empty:
                self.close()
                raise TimeoutError(f"{line}: no reply within {self._timeout:g} s "
                                   "(connection closed)") from None
            if answer is None:
                self._replies.put(None)  # later commands fail at once too
                raise ConnectionError(f"{line}: the rci server closed the connection")
        try:
            return _reply(line, answer)
        except ConnectionError:
            self.close()  # out of step: later replies would answer the wrong commands
            raise

    def pushes(self, timeout: float | None = None) -> Iterator[str]:
        """Pushed lines (``*SAMPLE ...``) as they arrive, until the connection ends or, with
        ``timeout``, until none came for that long. Only without an ``on_push`` callback."""
        if self._on_push is not None:
            raise RuntimeError("pushes go to the on_push callback of this client")
        while True:
            try:
                line = self._pushes.get(timeout=timeout)
            except queue.Empty:
                return
            if line is None:
                self._pushes.put(None)  # later iterations end at once too
                return
            yield line

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed

    def close(self) -> None:
        """Close the connection (idempotent); the reader thread ends."""
        self._closed = self._broken = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=self._timeout)
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class _ClientProtocol(asyncio.Protocol):
    """The asyncio transport side of :class:`AsyncRciClient`."""

    def __init__(self, on_push: PushCallback | None) -> None:
        self.waiting: collections.deque[asyncio.Future[str]] = collections.deque()
        self.pushes: asyncio.Queue[str | None] = asyncio.Queue()
        self.reader = ReplyReader(self._reply, on_push or self.pushes.put_nowait)
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
        except ConnectionError as err:
            self.lost = err
            assert self.transport is not None
            self.transport.abort()

    def _reply(self, line: str) -> None:
        if not self.waiting:
            # The server's reason for closing (ERR 61, ERR 62) or a broken peer.
            try:
                parting: Reply | RciError | None = parse_reply(line)
            except ValueError:
                parting = None
            if isinstance(parting, RciError):
                self.lost = parting
            else:
                self.lost = ConnectionError(f"the rci server sent an unrequested reply {line!r}")
                assert self.transport is not None
                self.transport.abort()
            return
        future = self.waiting.popleft()
        if not future.done():
            future.set_result(line)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = ConnectionError("the rci server closed the connection")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)
        self.pushes.put_nowait(None)


class AsyncRciClient:
    """An asyncio connection to an rci server; many can share one event loop.

    Commands may overlap: each is sent at once and replies are matched in order (pipelining).
    Pushed lines go to ``on_push`` (called on the loop; it must not block) or, without one, to
    :meth:`pushes`. A command that times out closes the connection.
    """

    def __init__(self, protocol: _ClientProtocol, timeout: float) -> None:
        self._protocol = protocol
        self._timeout = timeout
        self.role: str | None = None

    @classmethod
    async def connect(cls, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                      token: str | None = None, tls: ssl.SSLContext | None = None,
                      timeout: float = DEFAULT_TIMEOUT_S,
                      on_push: PushCallback | None = None) -> AsyncRciClient:
        """Connect to ``host:port`` (over TLS with ``tls``) and, with ``token``, authenticate;
        :attr:`role` then holds the role the server granted."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            transport, protocol = await loop.create_connection(
                lambda: _ClientProtocol(on_push), host, port, ssl=tls,
                server_hostname=host if tls is not None else None)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = cls(protocol, timeout)
        if token is not None:
            try:
                client.role = (await client.command(f"AUTH {token}")).payload
            except BaseException:
                await client.close()
                raise
        return client

    async def command(self, line: str) -> Reply:
        """Send one command and return its reply; errors as for :meth:`RciClient.command`."""
        protocol = self._protocol
        if protocol.lost is not None:
            raise protocol.lost
        if protocol.transport is None or protocol.transport.is_closing():
            raise ConnectionError(f"{line}: the connection to the rci server is closed")
        data = encode_command(line)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        protocol.waiting.append(future)
        protocol.transport.write(data)
        try:
            async with asyncio.timeout(self._timeout):
                answer = await future
        except TimeoutError:
            await self.close()
            raise TimeoutError(f"{line}: no reply within {self._timeout:g} s "
                               "(connection closed)") from None
        try:
            return _reply(line, answer)
        except ConnectionError:
            await self.close()  # out of step: later replies would answer the wrong commands
            raise

    async def pushes(self) -> AsyncIterator[str]:
        """Pushed lines as they arrive, until the connection ends (without ``on_push``)."""
        while (line := await self._protocol.pushes.get()) is not None:
            yield line
        self._protocol.pushes.put_nowait(None)

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._protocol.lost is not None

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()
        await asyncio.sleep(0)  # let connection_lost run

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

