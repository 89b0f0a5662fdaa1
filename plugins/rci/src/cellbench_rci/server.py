"""The station side of rci: the interface ``cellbench serve`` starts from an ``[[interfaces]]``
section with ``kind = "rci"``: a TCP listener (optionally TLS with client certificates) and/or a
serial port, each client a :class:`Connection` that feeds lines to the one :class:`Dispatcher`.

Every connection runs on the station's event loop as an :class:`asyncio.Protocol` (no task or
stream per client: a protocol answers a ``STATE?`` straight from ``data_received``), with its
own limits, so one client over a limit never slows another:

- a line longer than ``max_line`` gets ERR 13 and is discarded up to its end;
- commands beyond ``rate`` per second get ERR 60; a client that keeps flooding is not read
  until its bucket refills (the kernel's buffers hold its data meanwhile, not ours);
- a connection silent for ``idle_timeout`` gets ERR 62 and is closed;
- a connection beyond ``max_connections`` gets ERR 61 and is closed;
- pushed samples go out only while the client's send buffer is below a bound; the rest are
  dropped and counted in one ``*DROPPED <n>`` line once it reads again;
- a client that reads no replies stops being read (transport flow control) until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import ssl
import threading
import time
from collections.abc import Awaitable
from typing import Any

from cellbench_rci.commands import Dispatcher, Role, Session
from cellbench_rci.protocol import ErrorCode, err_line
from cellbench_sdk.control import StationControl

log = logging.getLogger(__name__)

#: Bytes waiting in a client's send buffer beyond which its pushes are dropped.
PUSH_BUFFER_BYTES = 256 * 1024


class Limits:
    """A connection's limits (from the interface's settings)."""

    def __init__(self, max_line: int, rate: float, idle_timeout_s: float,
                 max_subscriptions: int) -> None:
        self.max_line, self.rate = max_line, rate
        self.idle_timeout_s, self.max_subscriptions = idle_timeout_s, max_subscriptions


class Connection(asyncio.Protocol):
    """One client: cuts its bytes into lines, enforces its limits, answers in order.

    ``persistent`` connections (a serial port) are never closed by QUIT or idleness: QUIT
    starts a fresh session instead.
    """

    def __init__(self, server: RciServer, *, persistent: bool = False) -> None:
        self.server = server
        self.limits = server.limits
        self.persistent = persistent
        self.transport: Any = None
        self.session: Session | None = None
        self._buffer = bytearray()
        self._discarding = False  # inside an overlong line, up to its end
        self._busy = False  # a command awaits the station; later lines wait for it
        self._write_paused = False
        self._read_paused = False
        self._tokens = float(self.limits.rate)
        self._stamp = time.monotonic()
        self._dropped = 0
        self._waiting: asyncio.Future[None] | None = None  # the command awaited, if any
        self.last_line = self._stamp

    # ---- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self.server
        if not self.persistent and len(server.connections) >= server.max_connections:
            transport.write(err_line(ErrorCode.TOO_MANY_CONNECTIONS,
                                     f"at most {server.max_connections} connections"))
            transport.close()
            return
        server.connections.add(self)
        self.session = self._new_session()

    def _new_session(self) -> Session:
        identity, role = self.server.identify(self.transport)
        return Session(identity, role, self._push, self.limits.max_subscriptions)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.session is not None:
            self.session.close()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            return  # refused at connection_made
        self._buffer += data
        if not self._busy:
            self._process()

    # ---- lines -------------------------------------------------------------------------------

    def _process(self) -> None:
        buffer, limits = self._buffer, self.limits
        session = self.session
        assert session is not None
        while not self._busy and not self._write_paused and not self.transport.is_closing():
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > limits.max_line:  # the line cannot be valid: drop it now
                    if not self._discarding:
                        self.transport.write(err_line(ErrorCode.LINE_TOO_LONG, f"a line has at "
                                                      f"most {limits.max_line} bytes"))
                    self._discarding = True
                    buffer.clear()
                return
            line = bytes(buffer[:end])
            del buffer[:end + 1]
            if self._discarding:  # the end of an overlong line, already answered
                self._discarding = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            self.last_line = now = time.monotonic()
            if len(line) > limits.max_line:
                self.transport.write(err_line(ErrorCode.LINE_TOO_LONG,
                                              f"a line has at most {limits.max_line} bytes"))
                continue
            if not self._take_token(now):
                continue
            reply = self.server.dispatcher.execute(session, line)
            if isinstance(reply, bytes):
                self._reply(reply)
            else:
                self._busy = True
                self._waiting = asyncio.ensure_future(self._await(reply))

    def _take_token(self, now: float) -> bool:
        """The rate limit, a token bucket (burst = one second's rate): False if over it."""
        rate = self.limits.rate
        self._tokens = min(rate, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.transport.write(err_line(ErrorCode.RATE_LIMIT, f"more than {rate:g} commands per "
                                      "second"))
        self._tokens -= 1.0
        if self._tokens < -rate:  # still flooding: stop reading until the bucket refills
            self._pause_reading()
            delay = -self._tokens / rate
            asyncio.get_running_loop().call_later(delay, self._resume_reading)
        return False

    async def _await(self, reply: Awaitable[bytes]) -> None:
        try:
            line = await reply
        finally:
            self._busy = False
        if self.transport.is_closing():
            return
        self._reply(line)
        if self._buffer and not self._busy:
            self._process()

    def _reply(self, line: bytes) -> None:
        self.transport.write(line)
        session = self.session
        if session is not None and session.quitting:
            if self.persistent:  # a serial port stays: the next client starts afresh
                session.close()
                self.session = self._new_session()
            else:
                self.transport.close()

    def _push(self, line: bytes) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        if self._write_paused or transport.get_write_buffer_size() > PUSH_BUFFER_BYTES:
            self._dropped += 1
            return
        if self._dropped:
            transport.write(f"*DROPPED {self._dropped}\n".encode("ascii"))
            self._dropped = 0
        transport.write(line)

    def _pause_reading(self) -> None:
        if not self._read_paused and not self.transport.is_closing():
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and not self._write_paused and not self.transport.is_closing():
            self._read_paused = False
            self.transport.resume_reading()
            if self._buffer and not self._busy:
                self._process()

    def expire(self) -> None:
        """Close an idle connection with ERR 62."""
        self.transport.write(err_line(ErrorCode.IDLE_TIMEOUT, "idle for "
                                      f"{self.limits.idle_timeout_s:g} s; closing"))
        self.transport.close()


class RciServer:
    """The listeners of one rci interface and their connections."""

    def __init__(self, control: StationControl, dispatcher: Dispatcher, limits: Limits, *,
                 max_connections: int, tokens: bool, cert_roles: dict[str, Role]) -> None:
        self.control, self.dispatcher, self.limits = control, dispatcher, limits
        self.max_connections = max_connections
        self.connections: set[Connection] = set()
        self._tokens, self._cert_roles = tokens, cert_roles
        self._servers: list[asyncio.Server] = []
        #: The (host, port) of each TCP listener, as bound.
        self.addresses: list[tuple[str, int]] = []
        self._serial: SerialTransport | None = None
        self._reaper: asyncio.Task[None] | None = None

    def identify(self, transport: Any) -> tuple[str, Role | None]:
        """A new connection's identity and role before any AUTH."""
        port = transport.get_extra_info("serial_port")
        if port is not None:
            return f"serial:{port}", None if self._tokens else Role.OPERATOR
        host, remote = transport.get_extra_info("peername")[:2]
        certificate = transport.get_extra_info("peercert")
        if certificate:
            subject = dict(item[0] for item in certificate.get("subject", ()))
            name = subject.get("commonName", "?")
            return f"cert:{name}", self._cert_roles.get(name, Role.VIEWER)
        return f"tcp:{host}:{remote}", None if self._tokens else Role.OPERATOR

    async def listen(self, host: str, port: int, context: ssl.SSLContext | None) -> str:
        """Listen on TCP; return the address served."""
        server = await asyncio.get_running_loop().create_server(
            lambda: Connection(self), host, port, ssl=context, reuse_address=True)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        self.addresses.append((bound[0], bound[1]))
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap())
        return f"{'tls' if context else 'tcp'} {bound[0]}:{bound[1]}"

    def attach_serial(self, path: str, baudrate: int) -> str:
        """Serve the serial port ``path``."""
        connection = Connection(self, persistent=True)
        self._serial = SerialTransport(path, baudrate, connection,
                                       asyncio.get_running_loop())
        connection.connection_made(self._serial)
        self._serial.start()
        return f"serial {path} {baudrate} Bd"

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        for server in self._servers:
            await server.wait_closed()
        if self._serial is not None:
            await asyncio.to_thread(self._serial.join)

    async def _reap(self) -> None:
        """Close idle connections (checked a few times per idle timeout, at most every 1 s)."""
        timeout = self.limits.idle_timeout_s
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            deadline = time.monotonic() - timeout
            for connection in list(self.connections):
                if not connection.persistent and connection.last_line < deadline \
                        and not connection.transport.is_closing():
                    connection.expire()


class SerialTransport:
    """A serial port as an asyncio-style transport for :class:`Connection`: a thread reads the
    port and hands the bytes to the event loop; a thread writes what the loop queued."""

    def __init__(self, path: str, baudrate: int, protocol: Connection,
                 loop: asyncio.AbstractEventLoop) -> None:
        import serial  # only a station with a serial port needs pyserial loaded

        self.path, self.protocol, self.loop = path, protocol, loop
        self.port = serial.Serial(path, baudrate, timeout=0.1, write_timeout=5)
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._pending = 0  # bytes queued for the port
        self._lock = threading.Lock()
        self._closing = False
        self._reading = threading.Event()
        self._reading.set()
        self._threads = [threading.Thread(target=self._read, name=f"rci-read {path}",
                                          daemon=True),
                         threading.Thread(target=self._write, name=f"rci-write {path}",
                                          daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.path if name == "serial_port" else default

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        with self._lock:
            self._pending += len(data)
        self._out.put(data)

    def get_write_buffer_size(self) -> int:
        with self._lock:
            return self._pending

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._reading.set()
            self._out.put(None)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()
        self.port.close()
        self.loop.call_soon_threadsafe(self.protocol.connection_lost, None)

    def _read(self) -> None:
        while not self._closing:
            self._reading.wait()
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except Exception as err:  # the port went away: log it, stop serving it
                log.error("rci: serial port %s failed: %s", self.path, err)
                self.close()
                return
            if data and not self._closing:
                self.loop.call_soon_threadsafe(self.protocol.data_received, data)

    def _write(self) -> None:
        while (data := self._out.get()) is not None:
            try:
                self.port.write(data)
            except Exception as err:
                log.error("rci: serial port %s failed: %s", self.path, err)
                self.close()
                return
            with self._lock:
                self._pending -= len(data)
