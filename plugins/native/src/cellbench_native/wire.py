"""The host process's protocol: frames over its standard input and output pipes, one request
and one reply at a time.

A frame is a 5-byte header, the payload's length (``<I``) and a code (``B``: the operation in a
request, :data:`OK` or :data:`FAILED` in a reply), then the payload. Payloads are the bytes the
operation needs: native doubles, ``cb_sample`` structs, a packed step, or JSON for the rare
descriptive calls and errors. Both ends are the same machine and build, so native layouts are
safe to send; nothing received is ever evaluated, only unpacked and checked.

The host's side is blocking and imports little (the host process starts on every restart); the
station's side, on its event loop, is in :mod:`cellbench_native.hosted`.
"""

from __future__ import annotations

import io
import struct
from enum import IntEnum

HEADER = struct.Struct("<IB")
#: A frame longer than this is garbage (a measure of the largest capacity is far smaller).
MAX_PAYLOAD = 64 << 20
OK, FAILED = 0, 1


class Op(IntEnum):
    """What a request asks of the host."""

    OPEN = 1  # JSON {path, variant, declarations, version, config, max_samples} -> nothing
    SIGNALS = 2  # -> JSON [[name, unit, writable], ...]
    CHANNELS = 3  # -> JSON [[name, voltage_min_v, voltage_max_v, current_max_a, power_max_w]]
    READ = 4  # -> native doubles
    WRITE = 5  # <id index, value -> nothing
    APPLY = 6  # <i channel + StepSpec.pack() -> nothing
    OUTPUT_OFF = 7  # <i channel -> nothing
    MEASURE = 8  # -> cb_sample structs
    CLOSE = 9  # -> nothing; the host exits after replying
    LAYOUT = 10  # -> JSON [size, {field: offset}] of cb_sample
    INFO = 11  # -> JSON {name: value} of cb_describe_device


class HungUp(Exception):
    """The other end closed the connection (for the station: the host process is gone)."""


def frame(code: int, payload: bytes = b"") -> bytes:
    """One frame's bytes."""
    return HEADER.pack(len(payload), code) + payload


def send(sink: io.RawIOBase, code: int, payload: bytes = b"") -> None:
    """Send one frame (the host's side, blocking)."""
    view = memoryview(frame(code, payload))
    while view:
        written = sink.write(view)
        view = view[written or 0:]


def receive(source: io.RawIOBase) -> tuple[int, bytes]:
    """Receive one frame (the host's side, blocking): its code and payload. :class:`HungUp`
    when the other end closed."""
    length, code = HEADER.unpack(_exactly(source, HEADER.size))
    check_length(length)
    return code, _exactly(source, length) if length else b""


def check_length(length: int) -> None:
    """Refuse a frame longer than :data:`MAX_PAYLOAD` with :class:`HungUp`."""
    if length > MAX_PAYLOAD:
        raise HungUp(f"a frame of {length} bytes, beyond the {MAX_PAYLOAD} allowed")


def _exactly(source: io.RawIOBase, size: int) -> bytes:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = source.readinto(view[got:])
        if not n:
            raise HungUp("the connection was closed")
        got += n
    return bytes(buffer)
