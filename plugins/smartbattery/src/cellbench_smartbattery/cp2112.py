"""The Silicon Labs CP2112 USB-to-SMBus bridge, spoken to through its HID reports (AN495: CP2112
Interface Specification), and the USB HID device it is reached through (pyusb).

A transaction is a request report on the interrupt OUT endpoint, then Transfer Status
Request / Response reports until the bridge reports it complete or failed, then (for a read)
Data Read Force Send and the Data Read Response reports carrying the bytes. Configuration is a
feature report (SMBus Configuration, 0x06).
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Iterator
from typing import Any, Final, Protocol

from cellbench_sdk import DeviceConnectionError
from cellbench_smartbattery.bus import BusError, BusNack, SmbusBus

#: USB ids of a CP2112 as it leaves the factory.
VENDOR_ID: Final = 0x10C4
PRODUCT_ID: Final = 0xEA90

# Report ids (AN495 section 5).
SMBUS_CONFIGURATION: Final = 0x06
DATA_READ_REQUEST: Final = 0x10
DATA_WRITE_READ_REQUEST: Final = 0x11
DATA_READ_FORCE_SEND: Final = 0x12
DATA_READ_RESPONSE: Final = 0x13
DATA_WRITE: Final = 0x14
TRANSFER_STATUS_REQUEST: Final = 0x15
TRANSFER_STATUS_RESPONSE: Final = 0x16
CANCEL_TRANSFER: Final = 0x17

#: Every interrupt report is 64 bytes, the report id first.
REPORT_LENGTH: Final = 64
#: Data bytes in one Data Write or Data Read Response report.
REPORT_DATA: Final = 61

# Transfer Status Response: status 0, and status 1 when status 0 is BUSY or ERROR.
STATUS_IDLE: Final = 0x00
STATUS_BUSY: Final = 0x01
STATUS_COMPLETE: Final = 0x02
STATUS_ERROR: Final = 0x03
ERROR_ADDRESS_NACKED: Final = 0x00
ERROR_BUS_NOT_FREE: Final = 0x01
ERROR_ARBITRATION_LOST: Final = 0x02
ERROR_READ_INCOMPLETE: Final = 0x03
ERROR_WRITE_INCOMPLETE: Final = 0x04
_ERRORS: Final = {
    ERROR_BUS_NOT_FREE: "timeout: the bus was not free",
    ERROR_ARBITRATION_LOST: "arbitration lost",
    ERROR_READ_INCOMPLETE: "read incomplete",
    ERROR_WRITE_INCOMPLETE: "write incomplete",
}


class HidDevice(Protocol):
    """The HID device the bridge is: interrupt reports both ways, feature reports through the
    control endpoint. Report bytes start with the report id."""

    def write(self, report: bytes) -> None:
        """Send an interrupt OUT report."""

    def read(self, timeout_s: float) -> bytes:
        """The next interrupt IN report; ``b""`` if none came within ``timeout_s``."""

    def send_feature_report(self, report: bytes) -> None:
        """Set a feature report."""

    def close(self) -> None:
        """Release the device."""


def _pad(report: bytes) -> bytes:
    return report.ljust(REPORT_LENGTH, b"\x00")


class Cp2112Bus(SmbusBus):
    """An SMBus behind a CP2112: ``opener()`` returns the bridge's :class:`HidDevice`."""

    def __init__(self, opener: Any, *, name: str = "CP2112", clock_hz: int = 100_000,
                 timeout_s: float = 0.1) -> None:
        self.name = name
        self.clock_hz = clock_hz
        self.timeout_s = timeout_s
        self._opener = opener
        self._hid: HidDevice | None = None

    def open(self) -> None:
        self._hid = self._opener()
        timeout_ms = max(1, round(self.timeout_s * 1000))
        # Clock, our own address (0x02: never addressed), no auto-send of reads, write and read
        # timeouts, SCL-low timeout on, one retry by the bridge: retries are counted here.
        self._hid.send_feature_report(struct.pack(
            ">BIBBHHBH", SMBUS_CONFIGURATION, self.clock_hz, 0x02, 0, timeout_ms, timeout_ms,
            1, 1))

    def _device(self) -> HidDevice:
        if self._hid is None:
            raise DeviceConnectionError(self.name, "the CP2112 is not open")
        return self._hid

    def write_read(self, address: int, command: int, length: int) -> bytes:
        hid = self._device()
        hid.write(_pad(struct.pack(">BBHBB", DATA_WRITE_READ_REQUEST, address << 1, length, 1,
                                   command)))
        self._wait(hid)
        hid.write(_pad(struct.pack(">BH", DATA_READ_FORCE_SEND, length)))
        data = b""
        while len(data) < length:
            report = self._report(hid, DATA_READ_RESPONSE)
            if report[1] == STATUS_ERROR:
                raise BusError(f"the bridge failed the read after {len(data)} bytes")
            count = report[2]
            if count > REPORT_DATA:
                raise BusError(f"Data Read Response of {count} bytes (at most {REPORT_DATA})")
            if count == 0:
                raise BusError(f"read {len(data)} of {length} bytes")
            data += report[3:3 + count]
        return data[:length]

    def write(self, address: int, data: bytes) -> None:
        hid = self._device()
        if not 1 <= len(data) <= REPORT_DATA:
            raise ValueError(f"a CP2112 write carries 1..{REPORT_DATA} bytes, not {len(data)}")
        hid.write(_pad(bytes([DATA_WRITE, address << 1, len(data)]) + data))
        self._wait(hid)

    def _wait(self, hid: HidDevice) -> None:
        """Poll the transfer status until the bridge reports the transfer done or failed."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            hid.write(_pad(bytes([TRANSFER_STATUS_REQUEST, 0x01])))
            report = self._report(hid, TRANSFER_STATUS_RESPONSE)
            status, detail = report[1], report[2]
            if status == STATUS_COMPLETE:
                return
            if status == STATUS_ERROR:
                if detail == ERROR_ADDRESS_NACKED:
                    raise BusNack("the address was not acknowledged")
                raise BusError(_ERRORS.get(detail, f"transfer error 0x{detail:02X}"))
            if time.monotonic() > deadline:
                hid.write(_pad(bytes([CANCEL_TRANSFER, 0x01])))
                raise BusError(f"the transfer did not finish within {self.timeout_s:g} s")

    def _report(self, hid: HidDevice, report_id: int) -> bytes:
        report = hid.read(self.timeout_s)
        if not report:
            raise BusError(f"no report 0x{report_id:02X} within {self.timeout_s:g} s")
        if report[0] != report_id or len(report) < 7:
            raise BusError(f"expected report 0x{report_id:02X}, got {report[:8].hex(' ')}")
        return report

    def close(self) -> None:
        hid, self._hid = self._hid, None
        if hid is not None:
            hid.close()


class PyUsbHid:
    """A CP2112 as a raw USB device through pyusb (and libusb): the kernel's hid-cp2112 driver
    is detached for as long as it is open. A USB error (the bridge unplugged) is a
    :class:`~cellbench_sdk.DeviceConnectionError`."""

    #: The interrupt endpoints of the CP2112's HID interface.
    ENDPOINT_OUT: Final = 0x01
    ENDPOINT_IN: Final = 0x81

    def __init__(self, device: Any, name: str) -> None:
        self.device = device
        self.name = name
        with self._usb("claiming the HID interface"):
            if device.is_kernel_driver_active(0):
                device.detach_kernel_driver(0)
            device.set_configuration()

    @classmethod
    def find(cls, serial_number: str | None = None) -> PyUsbHid:
        """Open the CP2112 with ``serial_number`` (or the only one connected)."""
        import usb.core

        try:
            found = list(usb.core.find(find_all=True, idVendor=VENDOR_ID,
                                       idProduct=PRODUCT_ID))
        except usb.core.NoBackendError:
            raise DeviceConnectionError("CP2112", "pyusb finds no USB backend: install libusb "
                                                  "(libusb-1.0)") from None
        except usb.core.USBError as err:
            raise DeviceConnectionError("CP2112", f"listing USB devices: {err}") from None
        if serial_number is not None:
            found = [d for d in found if d.serial_number == serial_number]
        if len(found) != 1:
            what = f"serial number {serial_number!r}" if serial_number else "any serial number"
            raise DeviceConnectionError("CP2112", f"{len(found)} CP2112 with {what} on USB "
                                                  f"({VENDOR_ID:04x}:{PRODUCT_ID:04x}); "
                                                  f"exactly one is needed")
        return cls(found[0], f"CP2112 {serial_number or ''}".strip())

    @contextlib.contextmanager
    def _usb(self, doing: str) -> Iterator[None]:
        import usb.core

        try:
            yield
        except usb.core.USBError as err:
            raise DeviceConnectionError(self.name, f"{doing}: {err}") from None

    def write(self, report: bytes) -> None:
        with self._usb(f"writing report 0x{report[0]:02X}"):
            self.device.write(self.ENDPOINT_OUT, report, 1000)

    def read(self, timeout_s: float) -> bytes:
        import usb.core

        try:
            return bytes(self.device.read(self.ENDPOINT_IN, REPORT_LENGTH,
                                          max(1, round(timeout_s * 1000))))
        except usb.core.USBTimeoutError:
            return b""
        except usb.core.USBError as err:
            raise DeviceConnectionError(self.name, f"reading a report: {err}") from None

    def send_feature_report(self, report: bytes) -> None:
        # HID class SET_REPORT (0x09) of a feature report (type 3) to interface 0.
        with self._usb(f"setting feature report 0x{report[0]:02X}"):
            self.device.ctrl_transfer(0x21, 0x09, 0x0300 | report[0], 0, report, 1000)

    def close(self) -> None:
        import usb.core
        import usb.util

        # Releasing a bridge that was unplugged fails; there is nothing left to release then.
        with contextlib.suppress(usb.core.USBError):
            usb.util.dispose_resources(self.device)
