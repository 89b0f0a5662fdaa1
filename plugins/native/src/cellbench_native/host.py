"""The host process: one vendor library, served over the socketpair the station handed over.

``python -m cellbench_native.host FD`` serves requests (:mod:`cellbench_native.wire`) one at a
time until the station closes the connection or sends CLOSE. A crash or a hang in the vendor
code takes down or stalls only this process; the station notices, kills it if need be and
starts another.
"""

from __future__ import annotations

import json
import socket
import struct
import sys

from cellbench_native.library import NativeError, NativeLibrary, StepSpec
from cellbench_native.wire import FAILED, OK, HungUp, Op, receive, send


def serve(sock: socket.socket) -> None:
    """Answer requests on ``sock`` until it closes or CLOSE arrives; close the device then."""
    library: NativeLibrary | None = None
    try:
        while True:
            try:
                code, payload = receive(sock)
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
                send(sock, FAILED, err.encode())
            except Exception as err:  # a bug on this side: reported, not hidden, and served on
                send(sock, FAILED, NativeError("CB_ERROR", f"host process: {err!r}").encode())
            else:
                send(sock, OK, reply)
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
    elif code == Op.CLOSE:
        library.close()
    else:
        raise NativeError("CB_ERROR", f"host process: unknown request {code}")
    return b""


def main(argv: list[str]) -> None:
    """Serve the socket whose file descriptor is ``argv[0]``."""
    with socket.socket(fileno=int(argv[0])) as sock:
        serve(sock)


if __name__ == "__main__":
    main(sys.argv[1:])
