"""Lines and bytes over a serial port (RS-232, RS-485, USB-serial adapters) with pyserial."""

from __future__ import annotations

import os
import sys
import time
from typing import Literal, Unpack

import serial

from cellbench_hal.transports.base import LineTransport, Link, TransportOptions

# What pyserial raises, besides its SerialException, for settings a port refuses.
_REFUSED: tuple[type[Exception], ...]
if sys.platform == "win32":
    _REFUSED = (ValueError,)
else:
    import termios

    _REFUSED = (ValueError, termios.error)

Parity = Literal["N", "E", "O", "M", "S"]
PARITIES: tuple[Parity, ...] = ("N", "E", "O", "M", "S")
BYTESIZES = (5, 6, 7, 8)
STOPBITS = (1, 1.5, 2)
_POLL_S = 0.02


class _SerialLink:
    """An open pyserial port as a :class:`Link`.

    Changing a pyserial timeout reconfigures the port, so the port keeps one short read
    timeout and :meth:`receive` polls with it until its own deadline; a byte that arrives ends
    the wait at once. Writes use the write timeout set when the port was opened.
    """

    def __init__(self, port: serial.Serial) -> None:
        self._port = port

    def send(self, data: bytes, timeout: float) -> None:
        try:
            self._port.write(data)
        except serial.SerialTimeoutException:
            raise TimeoutError(f"sent part of {len(data)} bytes") from None

    def receive(self, size: int, timeout: float) -> bytes:
        port = self._port
        if timeout <= 0 and not port.in_waiting:
            return b""
        deadline = time.monotonic() + timeout
        first = port.read(1)
        while not first and time.monotonic() < deadline:
            first = port.read(1)
        if not first:
            return b""
        waiting = port.in_waiting
        return first + port.read(min(size - 1, waiting)) if waiting else first

    def close(self) -> None:
        self._port.close()


class SerialLineTransport(LineTransport):
    """A serial ``port`` ("/dev/ttyUSB0", "COM3") opened with pyserial.

    ``baudrate``, ``bytesize`` (5..8), ``parity`` ("N", "E", "O", "M", "S"), ``stopbits``
    (1, 1.5, 2), and flow control by ``rtscts`` or ``xonxoff``. On POSIX the port is locked, so
    a second program cannot open it meanwhile. A port that disappears (an unplugged adapter)
    raises :class:`DeviceConnectionError` and leaves the transport closed. Other settings:
    :class:`LineTransport`.
    """

    def __init__(self, port: str, *, baudrate: int = 9600, bytesize: int = 8,
                 parity: Parity = "N", stopbits: float = 1, rtscts: bool = False,
                 xonxoff: bool = False, **options: Unpack[TransportOptions]) -> None:
        if not port:
            raise ValueError("a serial transport needs a port, such as /dev/ttyUSB0 or COM3")
        if not (isinstance(baudrate, int) and baudrate > 0):
            raise ValueError(f"baudrate must be a positive integer, not {baudrate!r}")
        if bytesize not in BYTESIZES:
            raise ValueError(f"bytesize must be one of 5, 6, 7, 8, not {bytesize!r}")
        if parity not in PARITIES:
            raise ValueError(f"parity must be one of {', '.join(PARITIES)}, not {parity!r}")
        if stopbits not in STOPBITS:
            raise ValueError(f"stopbits must be one of 1, 1.5, 2, not {stopbits!r}")
        if rtscts and xonxoff:
            raise ValueError("choose one flow control: rtscts or xonxoff, not both")
        self.port = port
        self.baudrate = baudrate
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self.rtscts = rtscts
        self.xonxoff = xonxoff
        options.setdefault("name", f"serial://{port}")
        super().__init__(**options)

    def _open_link(self) -> Link:
        try:
            port = serial.Serial(
                self.port, self.baudrate, bytesize=self.bytesize, parity=self.parity,
                stopbits=self.stopbits, rtscts=self.rtscts, xonxoff=self.xonxoff,
                timeout=_POLL_S, write_timeout=self.timeout,
                exclusive=True if os.name == "posix" else None,
            )
        except _REFUSED as error:
            raise OSError(str(error)) from None
        return _SerialLink(port)
