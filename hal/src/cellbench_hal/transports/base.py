"""The transport contract and the framing every transport shares.

A transport is one connection to one device: lines of text (``write``, ``read_line``,
``query``) and raw bytes (``write_bytes``, ``read_bytes``) for binary protocols. It is async on
the outside; every blocking read and write runs on the device's single :class:`DeviceWorker`
thread, so calls from several tasks, loops or threads are serialised and a ``query``'s reply
always belongs to its command.

Each call has a timeout (the transport's default or the call's own). A reply that comes after
its call timed out is not taken for the reply to the next command: the transport is then out of
step, and its next write first drops input until that late reply has ended (waiting at most one
more timeout for it). A reply later than that cannot be told from the next one; protocols that
echo the command or number their replies can check that in the driver.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self, TypedDict, TypeVar

from cellbench_hal.errors import (
    BadReply,
    DeviceClosed,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
)
from cellbench_hal.guard import WhileOpen
from cellbench_hal.timeouts import DeviceWorker

T = TypeVar("T")

# Allowance for the worker thread beyond a call's own deadlines; it only matters when a library
# call ignores its timeout and hangs.
_GRACE_S = 1.0
_CHUNK = 65536


class Link(Protocol):
    """The raw byte pipe under a transport: a socket, a serial port, a pair of USB endpoints.

    Its methods block, and run on the transport's worker thread only. They raise
    :class:`TimeoutError` when sending does not finish in time, and another :class:`OSError`
    when the connection is gone.
    """

    def send(self, data: bytes, timeout: float) -> None:
        """Send all of ``data`` within ``timeout`` seconds."""

    def receive(self, size: int, timeout: float) -> bytes:
        """Up to ``size`` bytes: at least one, or ``b""`` when none arrived within ``timeout``
        seconds (0: only what is waiting already)."""

    def close(self) -> None:
        """Release the connection; idempotent."""


class TransportOptions(TypedDict, total=False):
    """Settings every transport takes as keywords (see :class:`LineTransport`)."""

    name: str
    timeout: float
    read_termination: str
    write_termination: str
    encoding: str
    max_line: int
    worker: DeviceWorker


def positive_seconds(what: str, value: float) -> float:
    """``value`` as float; a :class:`ValueError` naming ``what`` unless finite and above 0."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


class LineTransport(ABC):
    """One connection to one device, speaking lines of text and raw bytes.

    ``timeout`` is the default for every call (seconds), and for :meth:`open` unless
    ``open_timeout`` is given; ``read_termination`` ends each reply line and
    ``write_termination`` is appended to each written line ("\\n", "\\r", "\\r\\n", ...);
    lines are ``encoding`` text; a reply of more than ``max_line`` bytes without the terminator
    is a :class:`BadReply`. ``worker`` is the device's worker thread when the device
    has one already (a vendor library on the same handle); otherwise the transport runs its own
    from :meth:`open` to :meth:`close`. ``name`` goes into every error.

    Errors: :class:`DeviceTimeout` (no complete answer in time), :class:`DeviceConnectionError`
    (cannot open; the peer went away: the transport is then closed), :class:`DeviceClosed`
    (a call on a transport that is not open), :class:`BadReply` (a reply that is not
    ``encoding`` text, or too long); :class:`ValueError` for a bad argument, such as a line
    that holds the write terminator.

    Subclasses open the connection in :meth:`_open_link`.
    """

    def __init__(self, *, name: str, open_timeout: float | None = None, timeout: float = 1.0,
                 read_termination: str = "\n", write_termination: str = "\n",
                 encoding: str = "ascii", max_line: int = 65536,
                 worker: DeviceWorker | None = None) -> None:
        self.name = name
        self.timeout = positive_seconds("timeout", timeout)
        self.open_timeout = (self.timeout if open_timeout is None
                             else positive_seconds("open_timeout", open_timeout))
        if not read_termination:
            raise ValueError(f"{name}: read_termination must not be empty")
        "".encode(encoding)  # an unknown encoding fails here, not at the first reply
        if not (isinstance(max_line, int) and max_line > 0):
            raise ValueError(f"{name}: max_line must be a positive number of bytes, "
                             f"not {max_line!r}")
        self.read_termination = read_termination
        self.write_termination = write_termination
        self.encoding = encoding
        self.max_line = max_line
        self._read_term = read_termination.encode(encoding)
        self._write_term = write_termination.encode(encoding)
        self._own_worker = worker is None
        self._worker = worker
        self._link = WhileOpen[Link](self)
        # Touched on the worker thread only.
        self._buffer = bytearray()
        self._out_of_step = False
        self._stale_until = 0.0

    @abstractmethod
    def _open_link(self) -> Link:
        """Open the connection within :attr:`open_timeout` (blocking, on the worker thread)."""

    @property
    def is_open(self) -> bool:
        """True from a successful :meth:`open` until :meth:`close` or a lost connection."""
        return self._link.is_open

    async def open(self) -> None:
        """Connect; a transport that is open already stays as it is."""
        if self._link.is_open:
            return
        if self._worker is None:
            self._worker = DeviceWorker(self.name, self.timeout)
        try:
            link = await self._worker.run(self._connect, self.open_timeout + _GRACE_S, "open")
        except BaseException:
            self._release_worker()
            raise
        self._link.set(link)

    async def close(self) -> None:
        """Close the connection after the call that is running; idempotent. Calls still
        waiting for the worker then raise :class:`DeviceClosed`. When the running call hangs
        past its timeout, the connection is closed from here instead."""
        link, worker = self._link.clear(), self._worker
        try:
            if link is not None and worker is not None:
                try:
                    await worker.run(functools.partial(_release, link), self.timeout + _GRACE_S,
                                     "close")
                except DeviceTimeout:
                    _release(link)
        finally:
            self._release_worker()

    async def write(self, line: str, *, timeout: float | None = None) -> None:
        """Send ``line`` and the write terminator."""
        data = self._encode(line)
        await self._call(f"write {line!r}", functools.partial(self._write_now, data), timeout)

    async def read_line(self, *, timeout: float | None = None) -> str:
        """The next line the device sends, without its terminator."""
        return await self._call("read_line", self._read_line_now, timeout)

    async def query(self, line: str, *, timeout: float | None = None) -> str:
        """Send ``line`` and return the reply line; no other call comes between the two."""
        data = self._encode(line)
        return await self._call(f"query {line!r}", functools.partial(self._query_now, data),
                                timeout)

    async def write_bytes(self, data: bytes, *, timeout: float | None = None) -> None:
        """Send ``data`` as it is (no terminator)."""
        await self._call("write_bytes", functools.partial(self._write_now, bytes(data)), timeout)

    async def read_bytes(self, n: int, *, timeout: float | None = None) -> bytes:
        """Exactly the next ``n`` bytes the device sends."""
        if not (isinstance(n, int) and n >= 0):
            raise ValueError(f"{self.name}: read_bytes needs a byte count >= 0, not {n!r}")
        return await self._call(f"read_bytes({n})", functools.partial(self._read_bytes_now, n),
                                timeout)

    async def clear(self, *, timeout: float | None = None) -> None:
        """Drop stale input: what has arrived and not been read, and the late reply to a call
        that timed out (waiting for it at most one timeout after that call failed)."""
        await self._call("clear", self._clear_now, timeout)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {'open' if self.is_open else 'closed'}>"

    # --- on the caller's loop ----------------------------------------------------------------

    def _encode(self, line: str) -> bytes:
        if self.write_termination and self.write_termination in line:
            raise ValueError(f"{self.name}: the line {line!r} holds the write terminator "
                             f"{self.write_termination!r}")
        try:
            return line.encode(self.encoding) + self._write_term
        except UnicodeEncodeError:
            raise ValueError(f"{self.name}: the line {line!r} is not {self.encoding} "
                             "text") from None

    async def _call(self, what: str, fn: Callable[[float], T], timeout: float | None) -> T:
        """Run ``fn(timeout)`` on the worker thread, refusing at once when closed."""
        self._link.get()
        worker = self._worker
        if worker is None:  # closed from another thread just now
            raise DeviceClosed(self.name, "not open")
        t = self.timeout if timeout is None else positive_seconds("timeout", timeout)
        # The call may first wait for a late reply (up to _stale_until) and for the calls queued
        # before it; the worker's own deadline only catches a library call that hangs.
        stale = max(0.0, self._stale_until - time.monotonic())
        return await worker.run(functools.partial(fn, t), 2 * t + stale + _GRACE_S, what)

    def _release_worker(self) -> None:
        if self._own_worker and self._worker is not None:
            self._worker.close()
            self._worker = None

    # --- on the worker thread ----------------------------------------------------------------

    def _connect(self) -> Link:
        self._buffer.clear()  # left from an earlier connection
        self._out_of_step = False
        try:
            return self._open_link()
        except DeviceError:
            raise
        except TimeoutError:
            raise DeviceTimeout(self.name, f"no connection within {self.open_timeout:g} s") \
                from None
        except OSError as error:
            raise DeviceConnectionError(self.name, f"cannot open: {_reason(error)}") from None

    def _write_now(self, data: bytes, timeout: float) -> None:
        link = self._link.get()
        if self._out_of_step:
            self._drop_input(link)
        self._send(link, data, time.monotonic() + timeout)

    def _query_now(self, data: bytes, timeout: float) -> str:
        link = self._link.get()
        if self._out_of_step:
            self._drop_input(link)
        deadline = time.monotonic() + timeout
        self._send(link, data, deadline)
        return self._read_line_until(link, deadline, timeout)

    def _read_line_now(self, timeout: float) -> str:
        return self._read_line_until(self._link.get(), time.monotonic() + timeout, timeout)

    def _read_line_until(self, link: Link, deadline: float, timeout: float) -> str:
        term = self._read_term
        buffer = self._buffer
        start = 0
        while True:
            end = buffer.find(term, start)
            if 0 <= end <= self.max_line:
                raw = bytes(buffer[:end])
                del buffer[:end + len(term)]
                try:
                    return raw.decode(self.encoding)
                except UnicodeDecodeError:
                    raise BadReply(self.name, f"the reply {raw[:80]!r} is not {self.encoding} "
                                   "text") from None
            if end > self.max_line or len(buffer) > self.max_line:
                buffer.clear()
                self._lose_step(timeout)
                raise BadReply(self.name, f"more than {self.max_line} bytes arrived without "
                               f"the terminator {self.read_termination!r}")
            start = max(0, len(buffer) - len(term) + 1)
            if not self._receive(link, deadline):
                self._lose_step(timeout)
                got = (f"; received {bytes(buffer[:80])!r} without the terminator "
                       f"{self.read_termination!r}") if buffer else ""
                raise DeviceTimeout(self.name, f"no reply within {timeout:g} s{got}")

    def _read_bytes_now(self, n: int, timeout: float) -> bytes:
        link = self._link.get()
        deadline = time.monotonic() + timeout
        while len(self._buffer) < n:
            if not self._receive(link, deadline):
                self._lose_step(timeout)
                raise DeviceTimeout(self.name, f"{len(self._buffer)} of {n} bytes arrived "
                                    f"within {timeout:g} s")
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _clear_now(self, timeout: float) -> None:
        self._drop_input(self._link.get())

    def _drop_input(self, link: Link) -> None:
        """Drop buffered and waiting input; when out of step, first wait (until
        ``_stale_until``) for the late reply to end."""
        if self._out_of_step:
            while self._read_term not in self._buffer and self._receive(link, self._stale_until):
                pass
            self._out_of_step = False
        self._buffer.clear()
        while self._receive(link, 0.0):
            self._buffer.clear()

    def _lose_step(self, timeout: float) -> None:
        self._out_of_step = True
        self._stale_until = time.monotonic() + timeout

    def _send(self, link: Link, data: bytes, deadline: float) -> None:
        try:
            link.send(data, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            self._lose_step(self.timeout)
            raise DeviceTimeout(self.name, f"could not send {data[:80]!r} in time") from None
        except OSError as error:
            raise self._lost(link, error) from None

    def _receive(self, link: Link, deadline: float) -> bool:
        """Append what arrives before ``deadline`` (or is waiting) to the buffer; False if
        nothing did."""
        try:
            chunk = link.receive(_CHUNK, max(0.0, deadline - time.monotonic()))
        except OSError as error:
            raise self._lost(link, error) from None
        self._buffer += chunk
        return bool(chunk)

    def _lost(self, link: Link, error: OSError) -> DeviceConnectionError:
        reason = f"connection lost: {_reason(error)}"
        self._link.clear(reason)
        self._buffer.clear()
        self._out_of_step = False
        _release(link)
        return DeviceConnectionError(self.name, reason)


def _release(link: Link) -> None:
    """Close ``link``; a connection that is broken already may fail to close, and is gone
    either way."""
    with contextlib.suppress(OSError):
        link.close()


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__
