"""UsbTransport with pyusb's device lookup replaced by fake devices: a USB bus cannot be real here.

Everything above ``usb.core.find`` is real: the transport's endpoint discovery with pyusb's own
descriptor helpers, its framing, timeouts, resync and errors.
"""

from __future__ import annotations

import array
import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import usb.core
import usb.util

from cellbench_hal import DeviceClosed, DeviceConnectionError, DeviceTimeout, UsbTransport

BULK, INTERRUPT = usb.util.ENDPOINT_TYPE_BULK, usb.util.ENDPOINT_TYPE_INTR


@dataclass
class Endpoint:
    bEndpointAddress: int  # pyusb's descriptor field names
    bmAttributes: int


@dataclass
class FakeDevice:
    """A device that answers command lines on its bulk endpoints."""

    serial_number: str
    answer: Callable[[bytes], bytes]
    endpoints: list[Endpoint] = field(default_factory=lambda: [
        Endpoint(0x83, INTERRUPT), Endpoint(0x02, BULK), Endpoint(0x81, BULK)])
    configured: bool = False
    kernel_driver: bool = True
    unplugged: bool = False
    written: list[tuple[int, bytes]] = field(default_factory=list)
    pending: bytearray = field(default_factory=bytearray)

    def is_kernel_driver_active(self, interface: int) -> bool:
        return self.kernel_driver

    def detach_kernel_driver(self, interface: int) -> None:
        self.kernel_driver = False

    def set_configuration(self) -> None:
        self.configured = True

    def get_active_configuration(self) -> dict[tuple[int, int], list[Endpoint]]:
        if not self.configured:
            raise usb.core.USBError("Configuration not set")
        return {(0, 0): self.endpoints}

    def write(self, endpoint: int, data: bytes, timeout_ms: int) -> int:
        self._check()
        self.written.append((endpoint, bytes(data)))
        for line in bytes(data).split(b"\n")[:-1]:
            self.pending += self.answer(line)
        return len(data)

    def read(self, endpoint: int, size: int, timeout_ms: int) -> array.array[int]:
        self._check()
        assert endpoint == 0x81
        if not self.pending:
            time.sleep(timeout_ms / 1000)
            raise usb.core.USBTimeoutError("Operation timed out", -7, 110)
        data, self.pending[:] = self.pending[:size], self.pending[size:]
        return array.array("B", data)

    def _check(self) -> None:
        if self.unplugged:
            raise usb.core.USBError("No such device", -4, 19)


@dataclass
class Bus:
    """The devices connected, all 0x2184:0x0044; a released device leaves the list."""

    answer: Callable[[bytes], bytes]
    devices: list[FakeDevice] = field(default_factory=list)

    def plug(self, serial_number: str, *endpoints: Endpoint) -> FakeDevice:
        device = FakeDevice(serial_number, self.answer)
        if endpoints:
            device.endpoints = list(endpoints)
        self.devices.append(device)
        return device


@pytest.fixture
def bus(monkeypatch: pytest.MonkeyPatch, line_protocol: Callable[[bytes], bytes]) -> Bus:
    bus = Bus(line_protocol)

    def find(find_all: bool, idVendor: int, idProduct: int) -> list[FakeDevice]:
        assert find_all
        return list(bus.devices) if (idVendor, idProduct) == (0x2184, 0x0044) else []

    monkeypatch.setattr(usb.core, "find", find)
    monkeypatch.setattr(usb.util, "dispose_resources", bus.devices.remove)
    return bus


def test_lines_and_bytes_over_discovered_bulk_endpoints(bus: Bus) -> None:
    device = bus.plug("GEQ1")

    async def run() -> None:
        async with UsbTransport(0x2184, 0x0044, timeout=0.2) as io:
            assert io.name == "usb://0x2184:0x0044"
            assert await io.query("*IDN?") == "re:*IDN?"
            await io.write_bytes(b"BIN\n")
            assert await io.read_bytes(4) == b"\x00\x01\x02\xff"
            with pytest.raises(DeviceTimeout, match="no reply within 0.2 s"):
                await io.query("SILENT")

    asyncio.run(run())
    assert device.configured and not device.kernel_driver
    assert device.written == [(0x02, b"*IDN?\n"), (0x02, b"BIN\n"), (0x02, b"SILENT\n")]
    assert bus.devices == []  # released on close


def test_the_serial_number_picks_the_device(bus: Bus) -> None:
    first, second = bus.plug("GEQ1"), bus.plug("GEQ2")

    async def run() -> None:
        many = UsbTransport(0x2184, 0x0044, name="psu")
        with pytest.raises(DeviceConnectionError, match=r"^psu: 2 USB devices 0x2184:0x0044 "
                           r"are connected \(serial numbers GEQ1, GEQ2\); give the serial"):
            await many.open()
        wrong = UsbTransport(0x2184, 0x0044, "GEQ3")
        with pytest.raises(DeviceConnectionError, match="has the serial number 'GEQ3' "
                                                        r"\(connected: GEQ1, GEQ2\)"):
            await wrong.open()
        async with UsbTransport(0x2184, 0x0044, "GEQ2", endpoint_out=0x02,
                                endpoint_in=0x81) as io:
            assert io.name == "usb://0x2184:0x0044/GEQ2"
            assert await io.query("PING") == "re:PING"

    asyncio.run(run())
    assert first.written == [] and second.written == [(0x02, b"PING\n")]


def test_no_device_and_no_bulk_endpoint(bus: Bus) -> None:
    async def run() -> None:
        with pytest.raises(DeviceConnectionError, match="no USB device 0x2184:0x0044 is "
                                                        "connected"):
            await UsbTransport(0x2184, 0x0044).open()
        bus.plug("GEQ1", Endpoint(0x02, BULK))
        with pytest.raises(DeviceConnectionError, match="interface 0 has no bulk IN endpoint"):
            await UsbTransport(0x2184, 0x0044).open()
        with pytest.raises(DeviceConnectionError, match="the device has no interface 1"):
            await UsbTransport(0x2184, 0x0044, interface=1).open()

    asyncio.run(run())


def test_an_unplugged_device_raises_and_closes(bus: Bus) -> None:
    device = bus.plug("GEQ1")

    async def run() -> None:
        io = UsbTransport(0x2184, 0x0044, timeout=0.2)
        await io.open()
        device.unplugged = True
        with pytest.raises(DeviceConnectionError, match="connection lost: No such device"):
            await io.query("PING")
        with pytest.raises(DeviceClosed):
            await io.query("PING")
        await io.close()

    asyncio.run(run())
    assert bus.devices == []


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="vendor_id must be 0x0000..0xFFFF"):
        UsbTransport(0x12345, 1)
    with pytest.raises(ValueError, match="endpoint_in must be 0x81..0x8f, not 1"):
        UsbTransport(1, 1, endpoint_in=0x01)
    with pytest.raises(ValueError, match="endpoint_out must be 0x01..0x0f, not 129"):
        UsbTransport(1, 1, endpoint_out=0x81)


def test_without_pyusb_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "usb.core", None)
    with pytest.raises(ImportError, match=r"pip install 'cellbench-hal\[usb\]'"):
        UsbTransport(0x2184, 0x0044)
