"""Lines and bytes over a serial port (RS-232, RS-485, USB-serial adapters) with pyserial."""

from __future__ import annotations

import os
from typing import Literal, Unpack

import serial

from cellbench_hal.transports.base import LineTransport, Link, TransportOptions

Parity = Literal["N", "E", "O", "M", "S"]
PARITIES: tuple[Parity, ...] = ("N", "E", "O", "M", "S")
BYTESIZES = (5, 6, 7, 8)
STOPBITS = (1, 1.5, 2)


class _SerialLink:
    """An open pyserial port as a :class:`Link`."""

    def __init__(self, port: serial.Serial) -> None:
        self._port = port

    def send(self, data: bytes, timeout: float) -> None:
        # Each change of a pyserial timeout reconfigures the port: set it only when it differs.
        if self._port.write_timeout != timeout:
            self._port.write_timeout = timeout
        try:
            self._port.write(data)
        except serial.SerialTimeoutException:
            raise TimeoutError(f"sent part of {len(data)} bytes") from None

    def receive(self, size: int, timeout: float) -> bytes:
        if self._port.timeout != timeout:
            self._port.timeout = timeout
        first = self._port.read(1)
        if not first:
            return b""
        waiting = self._port.in_waiting
        return first + self._port.read(min(size - 1, waiting)) if waiting else first

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
        super().__init__(open_timeout=options.get("timeout", 1.0), **options)

    def _open_link(self) -> Link:
        try:
            port = serial.Serial(
                self.port, self.baudrate, bytesize=self.bytesize, parity=self.parity,
                stopbits=self.stopbits, rtscts=self.rtscts, xonxoff=self.xonxoff,
                timeout=self.timeout, write_timeout=self.timeout,
                exclusive=True if os.name == "posix" else None,
            )
        except ValueError as error:  # pyserial's word for a port it cannot configure
            raise OSError(str(error)) from None
        return _SerialLink(port)
