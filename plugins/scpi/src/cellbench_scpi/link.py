"""One instrument over pyvisa (pure-Python backend): lines out, lines back, typed errors.

Every method blocks and runs on the driver's worker thread (one thread per channel), so a slow
instrument never holds up another. pyvisa's errors become the SDK's: a reply that does not come
is :class:`DeviceTimeout`, a dropped connection :class:`DeviceConnectionError`, bytes that are
not text :class:`BadReply`. After any of these the link is *lost*: later calls fail at once,
and :meth:`Link.reopen` connects again.
"""

from __future__ import annotations

import contextlib
import select
import socket
from typing import Any

import pyvisa
import pyvisa.constants
import pyvisa.errors

from cellbench_scpi.resources import Resource
from cellbench_sdk import BadReply, DeviceClosed, DeviceConnectionError, DeviceError, DeviceTimeout

#: The pyvisa backend: pyvisa-py, pure Python (sockets, pyserial, pyusb), no vendor VISA.
BACKEND = "@py"


class Link:
    """A pyvisa resource for one instrument."""

    def __init__(self, name: str, resource: Resource, timeout_s: float, baud_rate: int) -> None:
        self.name = name
        self.resource = resource
        self.timeout_s = timeout_s
        self.baud_rate = baud_rate
        self._manager: pyvisa.ResourceManager | None = None
        self._instrument: Any = None  # a pyvisa MessageBasedResource while open
        self._lost = ""  # why the connection is gone, once it is

    @property
    def is_open(self) -> bool:
        """True while connected."""
        return self._instrument is not None

    def open(self) -> None:
        """Connect; DeviceConnectionError naming the resource if it cannot."""
        options: dict[str, Any] = {"read_termination": "\n", "write_termination": "\n",
                                   "timeout": self.timeout_s * 1000.0, "encoding": "ascii"}
        if self.resource.bus == "serial":
            options["baud_rate"] = self.baud_rate
        try:
            self._manager = pyvisa.ResourceManager(BACKEND)
            self._instrument = self._manager.open_resource(self.resource.text, **options)
        except (pyvisa.errors.Error, OSError, ValueError) as err:
            self.close()
            raise DeviceConnectionError(self.name, f"cannot open {self.resource.text}: "
                                                   f"{err}") from err
        self._lost = ""
        sock = self._socket()
        if sock is not None:
            # A command that gets no reply, then a query: with Nagle on, the query would wait
            # for the instrument's delayed ACK of the command (40 ms on Linux).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def reopen(self) -> None:
        """Close and connect again."""
        self.close()
        self.open()

    def close(self) -> None:
        """Release the resource; idempotent."""
        instrument, self._instrument = self._instrument, None
        manager, self._manager = self._manager, None
        with contextlib.suppress(Exception):  # closing a broken session may fail in any way
            if instrument is not None:
                instrument.close()
        with contextlib.suppress(Exception):
            if manager is not None:
                manager.close()

    def write(self, line: str) -> None:
        """Send one command line."""
        self._call(line, False)

    def query(self, line: str) -> str:
        """Send one query line and return the reply line, stripped."""
        return self._call(line, True).strip()

    def _call(self, line: str, reply: bool) -> str:
        instrument = self._instrument
        if instrument is None:
            raise DeviceClosed(self.name, f"not open ({self._lost})" if self._lost
                               else "not open")
        try:
            if not reply:
                instrument.write(line)
                return ""
            text: str = instrument.query(line)
            return text
        except pyvisa.errors.VisaIOError as err:
            if err.error_code == pyvisa.constants.StatusCode.error_timeout:
                if self._peer_gone():
                    raise self._lose(f"connection lost: the instrument closed it during "
                                     f"{line!r}", DeviceConnectionError) from None
                raise self._lose(f"no answer to {line!r} within {self.timeout_s:g} s",
                                 DeviceTimeout) from None
            raise self._lose(f"{line!r} failed: {err}", DeviceConnectionError) from err
        except UnicodeDecodeError:
            raise self._lose(f"garbled reply to {line!r} (not ASCII text)", BadReply) from None
        except (OSError, pyvisa.errors.Error) as err:
            raise self._lose(f"connection lost during {line!r}: {err}",
                             DeviceConnectionError) from err

    def _lose(self, message: str, error: type[DeviceError]) -> DeviceError:
        """Drop the connection (a late or half reply would otherwise answer the next command)."""
        self.close()
        self._lost = message
        return error(self.name, message)

    def _peer_gone(self) -> bool:
        """True when a TCP instrument has closed the connection (pyvisa-py reports that as a
        timeout)."""
        sock = self._socket()
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _socket(self) -> socket.socket | None:
        """The TCP socket under pyvisa-py's session, for raw-socket resources."""
        if not self.resource.is_socket or self._instrument is None:
            return None
        session = self._instrument.visalib.sessions.get(self._instrument.session)
        sock = getattr(session, "interface", None)
        return sock if isinstance(sock, socket.socket) else None
