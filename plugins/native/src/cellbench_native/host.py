"""The host process: one vendor library, served over the standard input and output pipes the
station opened.

``python -m cellbench_native.host`` serves requests (:mod:`cellbench_native.wire`) one at a
time until the station closes its input or sends CLOSE. A crash or a hang in the vendor code
takes down or stalls only this process; the station notices, kills it if need be and starts
another. What vendor code prints goes to standard error, never into the protocol.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys

from cellbench_native.library import NativeError, NativeLibrary, StepSpec
from cellbench_native.wire import FAILED, OK, HungUp, Op, receive, send


def serve(requests: io.RawIOBase, replies: io.RawIOBase) -> None:
    """Answer ``requests`` on ``replies`` until the requests end or CLOSE arrives; close the
    device then."""
    library: NativeLibrary | None = None
    try:
        while True:
            try:
                code, payload = receive(requests)
            except HungUp:
                return
            try:
                if code == Op.OPEN:
                    library = _open(payload)
                    reply = b""
                elif library is None:
                    raise NativeError("CB_DISCONNECTED", "the library is not loaded yet")
                else:
                    reply = _answer(library, code, payload)
            except NativeError as err:
                send(replies, FAILED, err.encode())
            except Exception as err:  # a bug on this side: reported, not hidden, and served on
                send(replies, FAILED, NativeError("CB_ERROR", f"host process: {err!r}").encode())
            else:
                send(replies, OK, reply)
            if code == Op.CLOSE:
                return
    finally:
        if library is not None and library.is_open:
            library.close()


def _open(payload: bytes) -> NativeLibrary:
    request = json.loads(payload)
    library = NativeLibrary(request["path"], request["variant"], request["declarations"],
                            request["version"])
    library.open(request["config"], request["max_samples"])
    return library


def _answer(library: NativeLibrary, code: int, payload: bytes) -> bytes:
    if code == Op.READ:
        return library.read()
    if code == Op.MEASURE:
        return library.measure()
    if code == Op.WRITE:
        index, value = struct.unpack("<id", payload)
        library.write(index, value)
    elif code == Op.APPLY:
        (channel,) = struct.unpack_from("<i", payload)
        library.apply(channel, StepSpec.unpack(payload[4:]))
    elif code == Op.OUTPUT_OFF:
        library.output_off(*struct.unpack("<i", payload))
    elif code == Op.SIGNALS:
        return json.dumps([[s.name, s.unit, s.writable] for s in library.signals()]).encode()
    elif code == Op.CHANNELS:
        return json.dumps([[c.name, c.voltage_min_v, c.voltage_max_v, c.current_max_a,
                            c.power_max_w] for c in library.channels()]).encode()
    elif code == Op.LAYOUT:
        return json.dumps(library.sample_layout()).encode()
    elif code == Op.INFO:
        return json.dumps(library.device_info()).encode()
    elif code == Op.CLOSE:
        library.close()
    else:
        raise NativeError("CB_ERROR", f"host process: unknown request {code}")
    return b""


def main() -> None:
    """Serve the station on this process's standard input and output."""
    _die_with_the_station()
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    # From here on, file descriptor 1 is standard error and 0 reads nothing: a vendor library
    # that prints or reads the console cannot garble the protocol.
    os.dup2(2, 1)
    nothing = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nothing, 0)
    os.close(nothing)
    with requests, replies:
        serve(requests, replies)


def _die_with_the_station() -> None:
    """On Linux, have the kernel kill this process when the station's process ends: a station
    that is killed while vendor code hangs here must not leave it holding the instrument. (A
    host that is not stuck sees the end of its input and exits by itself, on every system.)"""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    set_parent_death_signal = 1  # PR_SET_PDEATHSIG of <sys/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(set_parent_death_signal, signal.SIGKILL)


if __name__ == "__main__":
    main()
