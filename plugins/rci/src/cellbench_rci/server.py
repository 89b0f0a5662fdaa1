"""The station side of rci: the interface ``cellbench serve`` starts from an ``[[interfaces]]``
section with ``kind = "rci"``: a TCP listener (optionally TLS with client certificates) and/or a
serial port, each client a :class:`Connection` that feeds lines to the one :class:`Dispatcher`.

Every connection runs on the station's event loop as an :class:`asyncio.Protocol` (no task or
stream per client: a protocol answers a ``STATE?`` straight from ``data_received``), with its
own limits, so one client over a limit never slows another:

- a line longer than ``max_line`` gets ERR 13 and is discarded up to its end;
- commands beyond ``rate`` per second get ERR 60; a client that keeps flooding is not read
  until its bucket refills (the kernel's buffers hold its data meanwhile, not ours);
- a connection answers one line per turn of the event loop, so the runner's tick and the other
  connections take turns with it; while a command awaits the station, or while it holds more
  than :data:`PENDING_BYTES` of unanswered input, it is not read;
- a connection silent for ``idle_timeout`` gets ERR 62 and is closed, and so does one that
  has not authenticated within ``preauth_timeout``;
- a connection beyond ``max_connections`` gets ERR 61 and is closed; beyond
  ``max_unauthenticated`` connections waiting for AUTH, the oldest of them is;
- failed AUTH are slowed down, counted and logged per source address
  (:class:`cellbench_sdk.access.AuthGuard`);
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
#: Unanswered bytes of a client beyond which it is not read (at least two lines' worth).
PENDING_BYTES = 64 * 1024


class Limits:
    """A connection's limits (from the interface's settings)."""

    def __init__(self, max_line: int, rate: float, idle_timeout_s: float,
                 max_subscriptions: int, preauth_timeout_s: float = 10.0) -> None:
        self.max_line, self.rate = max_line, rate
        self.idle_timeout_s, self.max_subscriptions = idle_timeout_s, max_subscriptions
        self.preauth_timeout_s = preauth_timeout_s

    @property
    def pending_bytes(self) -> int:
        """Received bytes not yet answered beyond which a connection is not read."""
        return max(PENDING_BYTES, 2 * self.max_line)


class Connection(asyncio.Protocol):
    """One client: cuts its bytes into lines, enforces its limits, answers in order.

    A connection answers at most one line per turn of the event loop and then lets the others
    (and the runner's tick) have theirs; it is not read while a command awaits the station or
    while it holds more than :attr:`Limits.pending_bytes` of unanswered input.

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
        self._scheduled = False  # a turn is due on the event loop
        self._write_paused = False
        self._flooding = False  # over the rate limit: not read until the bucket refills
        self._read_paused = False
        self._tokens = float(self.limits.rate)
        self._stamp = time.monotonic()
        self._dropped = 0
        self._waiting: asyncio.Future[None] | None = None  # the command awaited, if any
        self.opened = self.last_line = self._stamp

    # ---- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self.server
        if not self.persistent and len(server.connections) >= server.max_connections:
            transport.write(err_line(ErrorCode.TOO_MANY_CONNECTIONS,
                                     f"at most {server.max_connections} connections"))
            transport.close()
            return
        self.session = self._new_session()
        if not self.persistent and self.session.role is None:
            server.make_room_for_unauthenticated()
        server.connections.add(self)

    def _new_session(self) -> Session:
        identity, role, address = self.server.identify(self.transport)
        return Session(identity, role, self._push, self.limits.max_subscriptions,
                       address=address)

    @property
    def authenticated(self) -> bool:
        return self.session is not None and self.session.role is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.session is not None:
            self.session.close()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()
        self._schedule()

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            return  # refused at connection_made
        self._buffer += data
        if self._scheduled or self._busy:
            self._update_reading()
        else:  # the first line now (a polling client's only one), any further at later turns
            self._turn()

    # ---- lines -------------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Answer the next line at the loop's next turn (after whoever waits already)."""
        if not self._scheduled and not self._busy and self._buffer:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        self._scheduled = False
        if not (self._busy or self._write_paused or self.transport.is_closing()):
            self._answer_one()
            if not self._busy and b"\n" in self._buffer:
                self._schedule()
        self._update_reading()

    def _answer_one(self) -> None:
        """Answer the buffer's first line, if it holds a whole one."""
        buffer, limits = self._buffer, self.limits
        session = self.session
        assert session is not None
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
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        self.last_line = now = time.monotonic()
        if len(line) > limits.max_line:
            self.transport.write(err_line(ErrorCode.LINE_TOO_LONG,
                                          f"a line has at most {limits.max_line} bytes"))
            return
        if not self._take_token(now):
            return
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
        if self._tokens < -rate and not self._flooding:  # still flooding: wait for the bucket
            self._flooding = True
            asyncio.get_running_loop().call_later(-self._tokens / rate, self._flood_over)
        return False

    def _flood_over(self) -> None:
        self._flooding = False
        self._update_reading()
        self._schedule()

    async def _await(self, reply: Awaitable[bytes]) -> None:
        try:
            line = await reply
        finally:
            self._busy = False
        if self.transport.is_closing():
            return
        self._reply(line)
        self._update_reading()
        self._schedule()

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

    def _update_reading(self) -> None:
        """Read from the client only while it is neither flooding nor waiting for a command,
        reads its replies, and has little unanswered input: whatever it sends meanwhile waits
        in the kernel's buffers (and then its own), not in ours."""
        if self.transport is None or self.transport.is_closing():
            return
        hold = (self._busy or self._write_paused or self._flooding
                or len(self._buffer) > self.limits.pending_bytes)
        if hold and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        elif not hold and self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()

    def expire(self, why: str) -> None:
        """Close the connection with ERR 62 saying ``why``."""
        self.transport.write(err_line(ErrorCode.IDLE_TIMEOUT, f"{why}; closing"))
        self.transport.close()


class RciServer:
    """The listeners of one rci interface and their connections.

    Connections that have not authenticated yet are at most ``max_unauthenticated`` (a new one
    beyond that closes the oldest, so whoever holds a token can always get in to send it) and
    last at most the pre-auth timeout."""

    def __init__(self, control: StationControl, dispatcher: Dispatcher, limits: Limits, *,
                 max_connections: int, tokens: bool, cert_roles: dict[str, Role],
                 max_unauthenticated: int = 8) -> None:
        self.control, self.dispatcher, self.limits = control, dispatcher, limits
        self.max_connections = max_connections
        self.max_unauthenticated = max_unauthenticated
        self.connections: set[Connection] = set()
        self._tokens, self._cert_roles = tokens, cert_roles
        self._servers: list[asyncio.Server] = []
        #: The (host, port) of each TCP listener, as bound.
        self.addresses: list[tuple[str, int]] = []
        self._serial: SerialTransport | None = None
        self._reaper: asyncio.Task[None] | None = None

    def identify(self, transport: Any) -> tuple[str, Role | None, str]:
        """A new connection's identity, its role before any AUTH, and its source address."""
        port = transport.get_extra_info("serial_port")
        if port is not None:
            return f"serial:{port}", None if self._tokens else Role.OPERATOR, f"serial:{port}"
        host, remote = transport.get_extra_info("peername")[:2]
        certificate = transport.get_extra_info("peercert")
        if certificate:
            subject = dict(item[0] for item in certificate.get("subject", ()))
            name = subject.get("commonName", "?")
            return f"cert:{name}", self._cert_roles.get(name, Role.VIEWER), host
        return f"tcp:{host}:{remote}", None if self._tokens else Role.OPERATOR, host

    def make_room_for_unauthenticated(self) -> None:
        """Close the oldest unauthenticated connections so that one more fits the cap."""
        waiting = sorted((c for c in self.connections
                          if not c.persistent and not c.authenticated
                          and not c.transport.is_closing()), key=lambda c: c.opened)
        for connection in waiting[:max(0, len(waiting) - self.max_unauthenticated + 1)]:
            connection.transport.write(err_line(
                ErrorCode.TOO_MANY_CONNECTIONS, f"at most {self.max_unauthenticated} "
                "connections may wait for AUTH; the oldest is closed"))
            connection.transport.close()

    async def listen(self, host: str, port: int, context: ssl.SSLContext | None) -> str:
        """Listen on TCP; return the address served."""
        server = await asyncio.get_running_loop().create_server(
            lambda: Connection(self), host, port, ssl=context, reuse_address=True)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        self.addresses.append((bound[0], bound[1]))
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap())
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        return f"{'tls' if context else 'tcp'} {shown}:{bound[1]}"

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
        """Close idle connections and those that did not authenticate in time (checked a few
        times per timeout, at most every 1 s); log the summaries of failed AUTH."""
        limits = self.limits
        while True:
            await asyncio.sleep(min(1.0, limits.idle_timeout_s / 4,
                                    limits.preauth_timeout_s / 4))
            self.dispatcher.guard.sweep()
            now = time.monotonic()
            for connection in list(self.connections):
                if connection.persistent or connection.transport.is_closing():
                    continue
                if connection.last_line < now - limits.idle_timeout_s:
                    connection.expire(f"idle for {limits.idle_timeout_s:g} s")
                elif not connection.authenticated \
                        and connection.opened < now - limits.preauth_timeout_s:
                    connection.expire(f"no AUTH within {limits.preauth_timeout_s:g} s")


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
