"""The SMBus seen by the driver: a small interface of raw transactions, its Linux i2c-dev
implementation (smbus2), and :class:`SbsClient`, which makes SBS word and block reads of them
with PEC checks and bounded retries.

The interface is deliberately raw (bytes written, bytes read back in one combined transaction)
so that the PEC is computed and checked here, the same way for every bus, instead of trusting
an adapter to do it.
"""

from __future__ import annotations

import errno
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from cellbench_sdk import BadReply, DeviceConnectionError, DeviceError
from cellbench_smartbattery.sbs import MAX_BLOCK, pec, read_address, write_address

T = TypeVar("T")


class BusError(Exception):
    """A transaction failed on the bus (arbitration lost, a stuck line, an adapter error);
    worth retrying."""


class BusNack(BusError):
    """The slave did not acknowledge its address or a byte (busy, absent, or refusing the
    command)."""


class SmbusBus(ABC):
    """One SMBus, reached through an adapter. Blocking: the driver calls it on its worker
    thread, one transaction at a time."""

    #: Names the bus in errors ("/dev/i2c-1", "CP2112 0001A3F2").
    name: str = "smbus"

    @abstractmethod
    def open(self) -> None:
        """Reach the adapter; :class:`~cellbench_sdk.DeviceConnectionError` if it is not
        there."""

    @abstractmethod
    def write_read(self, address: int, command: int, length: int) -> bytes:
        """Write ``command`` to the 7-bit ``address``, then (repeated start) read ``length``
        bytes. :class:`BusNack` or :class:`BusError` if the transaction failed."""

    @abstractmethod
    def write(self, address: int, data: bytes) -> None:
        """Write ``data`` (command, payload and PEC) to ``address`` in one transaction."""

    @abstractmethod
    def close(self) -> None:
        """Release the adapter; idempotent."""


#: errno values of i2c-dev adapters for a slave that does not acknowledge (drivers differ):
#: ENXIO and EREMOTEIO (121 on Linux; the errno module lacks it elsewhere, where this module is
#: imported for the CP2112 bus).
_NACK_ERRNOS = frozenset({errno.ENXIO, getattr(errno, "EREMOTEIO", 121)})


class Smbus2Bus(SmbusBus):
    """A Linux I2C adapter through ``/dev/i2c-N`` and smbus2's combined transfers (I2C_RDWR).

    ``opener`` builds the smbus2 ``SMBus`` object from the bus number or path; tests replace it,
    since no I2C bus can be real on a test machine.
    """

    def __init__(self, bus: int | str, *, opener: Any = None) -> None:
        self.bus = bus
        self.name = bus if isinstance(bus, str) else f"/dev/i2c-{bus}"
        self._opener = opener
        self._smbus: Any = None
        self._message: Any = None  # smbus2's i2c_msg

    def open(self) -> None:
        # smbus2 is imported here, not with the module: it needs fcntl, which Windows lacks,
        # and the CP2112 bus of this plugin works there.
        try:
            from smbus2 import I2cFunc, SMBus, i2c_msg
        except ImportError as err:
            raise DeviceConnectionError(self.name, f"smbus2 (Linux i2c-dev) is not usable "
                                                   f"here: {err}") from None
        self._message = i2c_msg
        try:
            smbus = (self._opener or SMBus)(self.bus)
        except OSError as err:
            raise DeviceConnectionError(self.name, f"cannot open the I2C adapter: "
                                                   f"{err.strerror or err}") from None
        # The PEC is checked here over raw combined transfers, which SMBus-only controllers
        # (such as a PC's i801) cannot make: refuse them now rather than fail every read.
        if not smbus.funcs & I2cFunc.I2C:
            smbus.close()
            raise DeviceConnectionError(self.name, "the adapter makes SMBus transfers only, "
                                                   "not the plain I2C transfers (I2C_RDWR) "
                                                   "this driver needs: use an I2C adapter or "
                                                   "a CP2112")
        self._smbus = smbus

    def _transfer(self, *messages: Any) -> None:
        if self._smbus is None:
            raise DeviceConnectionError(self.name, "the I2C adapter is not open")
        try:
            self._smbus.i2c_rdwr(*messages)
        except OSError as err:
            if err.errno in _NACK_ERRNOS:
                raise BusNack(f"not acknowledged ({err.strerror})") from None
            if err.errno == errno.ENODEV:  # the adapter went away (a USB adapter unplugged)
                raise DeviceConnectionError(self.name, "the I2C adapter is gone") from None
            raise BusError(f"{err.strerror or err}") from None

    def write_read(self, address: int, command: int, length: int) -> bytes:
        read = self._message.read(address, length)
        self._transfer(self._message.write(address, [command]), read)
        return bytes(read)

    def write(self, address: int, data: bytes) -> None:
        self._transfer(self._message.write(address, list(data)))

    def close(self) -> None:
        smbus, self._smbus = self._smbus, None
        if smbus is not None:
            smbus.close()


class SbsClient:
    """SBS word and block commands to one smart battery on ``bus``: each transaction checked by
    its PEC (when ``use_pec``) and retried up to ``retries`` more times after a NACK, a bus error,
    a wrong PEC or an impossible block length, then a :class:`~cellbench_sdk.DeviceError` naming
    the command and the last failure."""

    def __init__(self, bus: SmbusBus, address: int, *, device: str, use_pec: bool = True,
                 retries: int = 3, retry_delay_s: float = 0.0) -> None:
        self.bus = bus
        self.address = address
        self.device = device
        self.use_pec = use_pec
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        #: Transactions that failed and were retried, since the client was made.
        self.retried = 0

    def read_word(self, command: int, *, retries: int | None = None) -> int:
        """The 16-bit word of ``command`` (SMBus Read Word)."""
        def attempt() -> int:
            length = 3 if self.use_pec else 2
            reply = self.bus.write_read(self.address, command, length)
            self._check_pec(command, reply, 2)
            return reply[0] | (reply[1] << 8)

        return self._retrying(f"read word 0x{command:02X}", attempt, retries)

    def read_block(self, command: int) -> bytes:
        """The bytes of ``command`` (SMBus Block Read); a length above 32 is refused."""
        def attempt() -> bytes:
            # The count comes first, so the whole block is read in one transaction at its
            # largest possible size; bytes past the count (and its PEC) are the bus idling.
            reply = self.bus.write_read(self.address, command, 1 + MAX_BLOCK + 1)
            count = reply[0]
            if count > MAX_BLOCK:
                raise BadReply(self.device, f"block read 0x{command:02X} announced {count} "
                                            f"bytes; a block has at most {MAX_BLOCK}")
            self._check_pec(command, reply, 1 + count)
            return bytes(reply[1:1 + count])

        return self._retrying(f"block read 0x{command:02X}", attempt, None)

    def write_word(self, command: int, value: int) -> None:
        """Write the 16-bit ``value`` to ``command`` (SMBus Write Word, with its PEC)."""
        payload = bytes([command, value & 0xFF, (value >> 8) & 0xFF])
        if self.use_pec:
            payload += bytes([pec(bytes([write_address(self.address)]) + payload)])

        def attempt() -> None:
            self.bus.write(self.address, payload)

        self._retrying(f"write word 0x{command:02X}", attempt, None)

    def _check_pec(self, command: int, reply: bytes, data_length: int) -> None:
        if not self.use_pec:
            return
        header = bytes([write_address(self.address), command, read_address(self.address)])
        expected = pec(header + reply[:data_length])
        if reply[data_length] != expected:
            raise BadReply(self.device, f"0x{command:02X}: PEC 0x{reply[data_length]:02X}, "
                                        f"expected 0x{expected:02X}")

    def _retrying(self, what: str, attempt: Callable[[], T], retries: int | None) -> T:
        tries = 1 + (self.retries if retries is None else retries)
        for n in range(tries):
            try:
                return attempt()
            except (BusError, BadReply) as err:
                last = err
                if n + 1 < tries:
                    self.retried += 1
                    if self.retry_delay_s:
                        time.sleep(self.retry_delay_s)
        raise DeviceError(self.device, f"{what} failed {tries} times; last: {_reason(last)}")


def _reason(err: Exception) -> str:
    if isinstance(err, DeviceError):
        return err.message
    return f"{'NACK' if isinstance(err, BusNack) else 'bus error'}: {err}"
