"""A USB bus with one USBTMC instrument on it, for the one thing that cannot be real here.

pyusb's device lookup is replaced by a fake bus holding a USBTMC device whose bulk endpoints
carry the USBTMC message headers (USBTMC 1.0, section 3) to and from an emulated Keithley 2450;
everything above pyusb (pyvisa-py's USBTMC protocol and session, pyvisa, the driver) is the
real code. pyvisa-py looks for a USB backend when it is first imported, so this runs as a
script in a process of its own: ``python usb_bus.py`` prints what the driver saw as JSON.
"""

from __future__ import annotations

import array
import asyncio
import json
import struct
from collections import deque
from typing import Any

import usb.core
import usb.util

from cellbench_scpi.commands import KEITHLEY_2450
from cellbench_scpi.driver import smu_channel
from cellbench_scpi.emulator import EmulatedCell, EmulatedInstrument
from cellbench_scpi.settings import SmuSettings
from cellbench_sdk import RealClock, Step, StepMode

VENDOR, PRODUCT, SERIAL = 0x05E6, 0x2450, "04096218"
RESOURCE = f"USB0::0x{VENDOR:04X}::0x{PRODUCT:04X}::{SERIAL}::INSTR"
DEV_DEP_MSG_OUT, REQUEST_DEV_DEP_MSG_IN, GET_CAPABILITIES = 1, 2, 7
PACKET = 64


class Endpoint:
    """A bulk endpoint of the device."""

    def __init__(self, device: Device, address: int) -> None:
        self.device = device
        self.bEndpointAddress = address
        self.bmAttributes = 0x02  # bulk
        self.wMaxPacketSize = PACKET

    def write(self, data: bytes, timeout: int | None = None) -> int:
        self.device.bulk_out(bytes(data))
        return len(data)

    def read(self, size: int, timeout: int | None = None) -> array.array[int]:
        return array.array("B", self.device.bulk_in(size))


class Interface:
    """The USBTMC interface (class 0xFE, subclass 3) with a bulk OUT and a bulk IN endpoint."""

    bInterfaceNumber = bAlternateSetting = index = 0
    bInterfaceClass, bInterfaceSubClass = 0xFE, 3

    def __init__(self, device: Device) -> None:
        self.endpoints = [Endpoint(device, 0x01), Endpoint(device, 0x82)]

    def __iter__(self) -> Any:
        return iter(self.endpoints)


class Configuration:
    """The device's one configuration."""

    bConfigurationValue = 1

    def __init__(self, interface: Interface) -> None:
        self.interface = interface

    def __iter__(self) -> Any:
        return iter([self.interface])

    def __getitem__(self, key: object) -> Interface:
        return self.interface


class Device:
    """A USBTMC instrument: bulk OUT messages to the emulator, its replies as bulk IN."""

    idVendor, idProduct, serial_number = VENDOR, PRODUCT, SERIAL

    def __init__(self, instrument: EmulatedInstrument) -> None:
        self.instrument = instrument
        self.configuration = Configuration(Interface(self))
        self._incoming = b""
        self._replies: deque[bytes] = deque()
        self._requested: deque[int] = deque()

    def __iter__(self) -> Any:
        return iter([self.configuration])

    def is_kernel_driver_active(self, interface: int) -> bool:
        return False

    def get_active_configuration(self) -> Configuration:
        return self.configuration

    def set_configuration(self) -> None:
        """One configuration, always active."""

    def ctrl_transfer(self, request_type: int, request: int, value: int = 0, index: int = 0,
                      length: int = 0, timeout: int | None = None) -> array.array[int]:
        if request != GET_CAPABILITIES:
            raise usb.core.USBError(f"request {request} is not supported")
        return array.array("B", [1] + [0] * 0x17)  # success; no USB488 extras

    def bulk_out(self, data: bytes) -> None:
        message, tag = data[0], data[1]
        if message == REQUEST_DEV_DEP_MSG_IN:
            self._requested.append(tag)
            return
        if message != DEV_DEP_MSG_OUT:
            raise usb.core.USBError(f"message id {message}")
        size, end = struct.unpack_from("<LB", data, 4)
        self._incoming += data[12:12 + size]
        if end & 1:
            for line in self._incoming.decode("ascii").splitlines():
                self.instrument.received.append(line)
                reply = self.instrument.respond(line)
                if reply is not None:
                    self._replies.append(reply.encode("ascii") + b"\n")
            self._incoming = b""

    def bulk_in(self, size: int) -> bytes:
        if not (self._requested and self._replies):
            raise usb.core.USBTimeoutError("timeout", errno=110)
        tag, data = self._requested.popleft(), self._replies.popleft()
        header = struct.pack("BBBx", REQUEST_DEV_DEP_MSG_IN, tag, ~tag & 0xFF)
        header += struct.pack("<LBxxx", len(data), 1)
        return header + data + b"\0" * ((4 - len(data)) % 4)


def plug(device: Device) -> None:
    """Put ``device`` on the bus pyusb searches."""
    def find(find_all: bool = False, custom_match: Any = None, **match: Any) -> Any:
        found = [d for d in (device,)
                 if all(getattr(d, k) == v for k, v in match.items() if k != "backend")
                 and (custom_match is None or custom_match(d))]
        return found if find_all else (found[0] if found else None)

    usb.core.find = find
    usb.util.dispose_resources = lambda _device: None


async def drive() -> dict[str, Any]:
    """Open the driver on the USB resource, run a CC step, read a sample, close."""
    instrument = EmulatedInstrument(KEITHLEY_2450, EmulatedCell(speed=10.0))
    plug(Device(instrument))
    driver = smu_channel(SmuSettings(resource=RESOURCE))
    await driver.open(RealClock())
    try:
        await driver.apply(0, Step(StepMode.CC, current_a=0.25))
        on = instrument.output_on
        batch = await driver.measure()
    finally:
        await driver.close()
    return {"idn": instrument.idn, "on": on, "off_after_close": not instrument.output_on,
            "current_a": float(batch.current_a[0]), "voltage_v": float(batch.voltage_v[0]),
            "commands": list(instrument.received)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(drive())))
