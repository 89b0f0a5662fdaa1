"""Byte-exact instrument conversations: :func:`expected_protocol`.

A test lists the ``(sent, reply)`` byte pairs of a conversation and lets the driver talk, over a
real loopback TCP connection (the driver's own socket code runs) or over an in-memory stream
handed to the driver's transport; the first byte that differs fails the test, with the pairs
that went well before it. PyMeasure's ``expected_protocol`` is the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Literal

from cellbench_sdk.peer import HANG_UP, HangUp, ScriptCursor, ScriptedPeer

Pairs = Sequence[tuple[bytes, bytes | HangUp]]


class MemoryStream:
    """The instrument's end of an in-memory byte stream, shaped like a pyserial port.

    The driver writes requests with :meth:`write` and reads replies with :meth:`read` or
    :meth:`read_until`. A reply is there as soon as its request is complete. Where a real
    instrument would leave the driver waiting until its timeout (a reply it never sends), a read
    raises :class:`TimeoutError` at once; after a deviation or :data:`HANG_UP` the stream is
    closed: reads return ``b""`` and writes raise :class:`BrokenPipeError`.
    """

    def __init__(self, cursor: ScriptCursor) -> None:
        self._cursor = cursor
        self._pending = b""
        self._hung_up = False
        self.closed = False

    @property
    def in_waiting(self) -> int:
        """How many reply bytes are ready to read."""
        return len(self._pending)

    def _take(self, due: list[bytes | HangUp]) -> None:
        for reply in due:
            if reply is HANG_UP:
                self._hung_up = True
                return
            self._pending += reply

    def open(self) -> None:
        """(Re)connect: the instrument sends what it says before being asked."""
        self.closed = self._hung_up = False
        self._pending = b""
        self._cursor.reconnect()
        self._take(self._cursor.feed(b""))

    def _dead(self) -> bool:
        return self.closed or self._hung_up or bool(self._cursor.failure)

    def write(self, data: bytes) -> int:
        """Send ``data`` to the instrument; return its length."""
        if self._dead():
            raise BrokenPipeError(f"the instrument closed the stream ({self._why()})")
        self._take(self._cursor.feed(bytes(data)))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` reply bytes (all that are ready for a negative size)."""
        if not self._pending:
            return self._nothing()
        n = len(self._pending) if size < 0 else size
        data, self._pending = self._pending[:n], self._pending[n:]
        return data

    def read_until(self, expected: bytes = b"\n") -> bytes:
        """The reply bytes up to and including ``expected``."""
        end = self._pending.find(expected)
        if end < 0:
            if self._dead():
                data, self._pending = self._pending, b""
                return data
            return self._nothing()
        end += len(expected)
        data, self._pending = self._pending[:end], self._pending[end:]
        return data

    def _nothing(self) -> bytes:
        if self._dead():
            return b""
        raise TimeoutError(f"the instrument sends nothing more until it receives "
                           f"{self._cursor.script[self._cursor.step][0]!r}"
                           if self._cursor.step < len(self._cursor.script)
                           else "the instrument sends nothing more: the script is finished")

    def _why(self) -> str:
        return "a deviation" if self._cursor.failure else "hang-up" if self._hung_up else "closed"

    def close(self) -> None:
        """Close the stream; idempotent."""
        self.closed = True


class Conversation:
    """A conversation along a script, as :func:`expected_protocol` makes it.

    Over ``"tcp"`` the instrument listens on :attr:`host`:\\ :attr:`port` (:attr:`address` is
    ``"host:port"``) and a driver that reconnects continues the script; over ``"memory"`` it is
    :attr:`stream`. Leaving the ``async with`` (or, in memory, ``with``) block raises
    :class:`AssertionError` at the first deviation, at bytes after the script's end or at an
    unfinished script, with the pairs that went well.
    """

    def __init__(self, pairs: Pairs, transport: Literal["tcp", "memory"]) -> None:
        if transport not in ("tcp", "memory"):
            raise ValueError(f"transport must be 'tcp' or 'memory', not {transport!r}")
        self.transport = transport
        self._peer = ScriptedPeer(pairs)
        self._cursor = self._peer.cursor
        self._stream = MemoryStream(self._cursor)

    @property
    def host(self) -> str:
        """The loopback address the instrument listens on (tcp)."""
        return self._peer.host

    @property
    def port(self) -> int:
        """The port the instrument listens on (tcp); 0 before the block is entered."""
        return self._peer.port

    @property
    def address(self) -> str:
        """``"host:port"`` (tcp)."""
        return f"{self.host}:{self.port}"

    @property
    def stream(self) -> MemoryStream:
        """The instrument's stream (memory)."""
        if self.transport != "memory":
            raise AttributeError("a tcp conversation has no stream: connect to host and port")
        return self._stream

    def report(self) -> str:
        """The conversation so far and its first problem; empty if it followed the script."""
        problem = self._cursor.problem()
        if not problem:
            return ""
        script, step = self._cursor.script, self._cursor.step
        lines = [f"expected_protocol: {'deviated' if self._cursor.failure else 'stopped'} at "
                 f"pair {step} of {len(script)}"]
        lines += [f"  pair {i}: sent {sent!r}, reply {reply!r}"
                  for i, (sent, reply) in enumerate(script[:step])]
        received = self._cursor.received
        if step < len(script):
            expected = script[step][0]
            lines += [f"  pair {step}: expected {expected!r}", f"{'':10}received {received!r}"]
            if self._cursor.failure:
                same = next((i for i, (a, b) in enumerate(zip(expected, received, strict=False))
                             if a != b), min(len(expected), len(received)))
                lines.append(f"{'':10}(the first difference is at byte {same})")
        else:
            lines.append(f"  then:    received {received!r} after the last pair")
        return "\n".join(lines)

    def _finish(self, exc: BaseException | None) -> None:
        report = self.report()
        if report:
            raise AssertionError(report) from exc

    def __enter__(self) -> Conversation:
        if self.transport != "memory":
            raise TypeError("a tcp conversation is entered with `async with`")
        self._stream.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stream.close()
        self._finish(exc)

    async def __aenter__(self) -> Conversation:
        if self.transport == "memory":
            return self.__enter__()
        await self._peer.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.transport == "memory":
            self.__exit__(exc_type, exc, tb)
            return
        # The peer's AssertionError tells the same problem that _finish reports with the
        # conversation so far.
        with contextlib.suppress(AssertionError):
            await self._peer.__aexit__(exc_type, exc, tb)
        self._finish(exc)


def expected_protocol(pairs: Pairs, *,
                      transport: Literal["tcp", "memory"] = "tcp") -> Conversation:
    """A conversation in which the driver must send each pair's first bytes and gets its second.

    An empty sent part makes the instrument speak first; an empty reply answers nothing (so the
    driver's timeout can be tested); :data:`~cellbench_sdk.peer.HANG_UP` closes the connection
    instead of answering::

        async with expected_protocol([(b"MEAS?\\n", b"3.71,0,25.5\\n")]) as instrument:
            driver = MyDriver(MySettings(port=instrument.port))
            ...

        with expected_protocol(pairs, transport="memory") as instrument:
            parse(query(instrument.stream, b"MEAS?\\n"))
    """
    return Conversation(pairs, transport)
