"""The two adapters at their boundaries: the CP2112 bridge against an emulated bridge at its HID
reports, and the Linux adapter through smbus2's own message objects handed to a stand-in for
the i2c-dev file (no I2C bus can be real here)."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import struct
import types
from typing import Any

import pytest
from smbus2 import I2cFunc

from cellbench_sdk import DeviceConnectionError, DeviceError, RealClock
from cellbench_sdk.testing import check_osi_device
from cellbench_smartbattery import cp2112
from cellbench_smartbattery.battery import SmartBattery
from cellbench_smartbattery.bus import BusError, BusNack, Smbus2Bus
from cellbench_smartbattery.cp2112 import Cp2112Bus
from cellbench_smartbattery.model import EmulatedCp2112, SbsBattery
from cellbench_smartbattery.settings import SmartBatterySettings


def cp2112_battery(bridge: EmulatedCp2112, **settings: Any) -> SmartBattery:
    bus = Cp2112Bus(lambda: bridge, name="CP2112 test", clock_hz=100_000)
    return SmartBattery(SmartBatterySettings(bus="cp2112", retry_delay_s=0, **settings), bus=bus)


def test_the_contract_through_a_cp2112() -> None:
    bridge = EmulatedCp2112(SbsBattery())
    asyncio.run(check_osi_device(cp2112_battery(bridge),
                                 values={"remaining_capacity_alarm": 0.2}))
    assert bridge.battery.remaining_capacity_alarm == 200
    assert bridge.closed


def test_the_cp2112_is_configured_at_open() -> None:
    bridge = EmulatedCp2112(SbsBattery())
    bus = Cp2112Bus(lambda: bridge, clock_hz=400_000, timeout_s=0.05)
    bus.open()
    # Report 0x06: clock 400 kHz, own address 0x02, no auto read, 50 ms timeouts, SCL low
    # timeout on, one retry.
    assert bridge.configuration == struct.pack(">BIBBHHBH", 0x06, 400_000, 0x02, 0, 50, 50, 1,
                                               1)
    bus.close()
    assert bridge.closed


def test_cp2112_nacks_and_bus_errors_are_typed() -> None:
    model = SbsBattery()
    bus = Cp2112Bus(lambda: EmulatedCp2112(model))
    bus.open()
    model.faults.nacks = 1
    with pytest.raises(BusNack):
        bus.write_read(model.address, 0x09, 3)
    model.faults.bus_errors = 1
    with pytest.raises(BusError, match="arbitration lost"):
        bus.write_read(model.address, 0x09, 3)
    with pytest.raises(BusNack):
        bus.write_read(0x0C, 0x09, 3)  # nobody at that address
    assert len(bus.write_read(model.address, 0x20, 34)) == 34  # a block read spans 1 report


def test_cp2112_retries_then_reads() -> None:
    model = SbsBattery()

    async def run() -> float:
        battery = cp2112_battery(EmulatedCp2112(model), retries=2)
        await battery.open(RealClock())
        model.faults.nacks = 2
        value = (await battery.read())["voltage"].value
        model.faults.bad_pec = 3
        with pytest.raises(DeviceError, match="failed 3 times; last: 0x.*PEC"):
            await battery.read()
        await battery.close()
        return value

    assert asyncio.run(run()) > 12.0


class SilentBridge(EmulatedCp2112):
    """A bridge whose interrupt IN endpoint never answers."""

    def read(self, timeout_s: float) -> bytes:
        return b""


def test_a_silent_cp2112_is_a_bus_error() -> None:
    bus = Cp2112Bus(lambda: SilentBridge(SbsBattery()), timeout_s=0.01)
    bus.open()
    with pytest.raises(BusError, match="no report 0x16"):
        bus.write_read(0x0B, 0x09, 3)


class I2cDev:
    """Stands in for smbus2's SMBus on /dev/i2c-N: carries out I2C_RDWR message lists against
    the register model, filling smbus2's own read buffers, or fails with an errno."""

    def __init__(self, model: SbsBattery, funcs: I2cFunc = I2cFunc.I2C | I2cFunc.SMBUS_PEC
                 ) -> None:
        self.model = model
        self.funcs = funcs
        self.fail_with: int | None = None
        self.closed = False

    def i2c_rdwr(self, *messages: Any) -> None:
        if self.fail_with is not None:
            raise OSError(self.fail_with, "stand-in failure")
        write = messages[0]
        written = bytes(write.buf[:write.len])
        if len(messages) == 1:
            self.model.transaction(write.addr, written, 0)
            return
        read = messages[1]
        reply = self.model.transaction(read.addr, written, read.len)
        ctypes.memmove(read.buf, reply, len(reply))

    def close(self) -> None:
        self.closed = True


def test_the_linux_adapter_through_smbus2_messages() -> None:
    model = SbsBattery()
    devices: list[I2cDev] = []

    def opener(bus: int | str) -> I2cDev:
        assert bus == 3
        devices.append(I2cDev(model))
        return devices[-1]

    battery = SmartBattery(SmartBatterySettings(i2c_bus=3, retry_delay_s=0),
                           bus=Smbus2Bus(3, opener=opener))
    assert battery.name == "smartbattery@/dev/i2c-3:0x0B"
    asyncio.run(check_osi_device(battery, values={"remaining_capacity_alarm": 0.4}))
    assert model.remaining_capacity_alarm == 400
    assert devices[0].closed


@pytest.mark.parametrize(("code", "error"), [
    (errno.ENXIO, BusNack), (errno.EREMOTEIO, BusNack), (errno.EIO, BusError),
    (errno.ETIMEDOUT, BusError), (errno.ENODEV, DeviceConnectionError)])
def test_i2c_dev_errors_are_typed(code: int, error: type[Exception]) -> None:
    device = I2cDev(SbsBattery())
    bus = Smbus2Bus(1, opener=lambda _: device)
    bus.open()
    device.fail_with = code
    with pytest.raises(error):
        bus.write_read(0x0B, 0x09, 3)


def test_an_smbus_only_adapter_is_refused_at_open() -> None:
    device = I2cDev(SbsBattery(), funcs=I2cFunc.SMBUS_READ_WORD_DATA | I2cFunc.SMBUS_PEC)
    bus = Smbus2Bus(0, opener=lambda _: device)
    with pytest.raises(DeviceConnectionError, match="/dev/i2c-0: the adapter makes SMBus "
                                                    "transfers only"):
        bus.open()
    assert device.closed


def test_a_missing_adapter_fails_to_open_with_its_path() -> None:
    bus = Smbus2Bus("/dev/i2c-does-not-exist")
    with pytest.raises(DeviceConnectionError, match="/dev/i2c-does-not-exist: cannot open"):
        bus.open()


class UsbCable:
    """Stands in for a pyusb device at the USB boundary: records control and interrupt
    transfers, answers reads from a queue, and can be unplugged."""

    def __init__(self) -> None:
        self.transfers: list[tuple[Any, ...]] = []
        self.replies: list[bytes] = []
        self.unplugged = False
        self.kernel_driver = True
        self.disposed = 0
        # pyusb's usb.util.dispose_resources(device) asks the device's backend context.
        self._ctx = types.SimpleNamespace(dispose=self._dispose)

    def _dispose(self, device: Any) -> None:
        self._check()
        self.disposed += 1

    def is_kernel_driver_active(self, interface: int) -> bool:
        return self.kernel_driver

    def detach_kernel_driver(self, interface: int) -> None:
        self.kernel_driver = False

    def set_configuration(self) -> None:
        pass

    def _check(self) -> None:
        import usb.core

        if self.unplugged:
            raise usb.core.USBError("No such device", errno=errno.ENODEV)

    def ctrl_transfer(self, *arguments: Any) -> None:
        self._check()
        self.transfers.append(("control", *arguments))

    def write(self, endpoint: int, data: bytes, timeout: int) -> int:
        self._check()
        self.transfers.append(("out", endpoint, bytes(data)))
        return len(data)

    def read(self, endpoint: int, size: int, timeout: int) -> bytes:
        import usb.core

        self._check()
        if not self.replies:
            raise usb.core.USBTimeoutError("Operation timed out", errno=errno.ETIMEDOUT)
        return self.replies.pop(0)


def test_hid_reports_reach_the_right_usb_transfers() -> None:
    cable = UsbCable()
    hid = cp2112.PyUsbHid(cable, "CP2112 X")
    assert not cable.kernel_driver  # detached from hid-cp2112
    hid.send_feature_report(b"\x06" + bytes(13))
    hid.write(b"\x15\x01".ljust(64, b"\0"))
    assert cable.transfers == [
        ("control", 0x21, 0x09, 0x0306, 0, b"\x06" + bytes(13), 1000),  # SET_REPORT, feature
        ("out", 0x01, b"\x15\x01".ljust(64, b"\0"))]
    assert hid.read(0.01) == b""  # nothing came: a timeout is no report, not an error
    cable.replies.append(b"\x16\x02\x05")
    assert hid.read(0.01) == b"\x16\x02\x05"
    cable.unplugged = True
    with pytest.raises(DeviceConnectionError, match="CP2112 X: writing report 0x15: "):
        hid.write(b"\x15\x01".ljust(64, b"\0"))
    with pytest.raises(DeviceConnectionError, match="reading a report"):
        hid.read(0.01)
    hid.close()  # nothing to release on an unplugged bridge, and no error
    cable.unplugged = False
    hid.close()
    assert cable.disposed == 1


def test_an_unplugged_bridge_is_a_connection_error_until_it_is_back() -> None:
    model = SbsBattery()
    cables: list[UsbCable] = []

    class Answering(UsbCable):
        """A cable with a CP2112 at its end: reports go to an emulated bridge."""

        def __init__(self) -> None:
            super().__init__()
            self.bridge = EmulatedCp2112(model)

        def ctrl_transfer(self, *arguments: Any) -> None:
            super().ctrl_transfer(*arguments)
            self.bridge.send_feature_report(bytes(arguments[4]))

        def write(self, endpoint: int, data: bytes, timeout: int) -> int:
            super().write(endpoint, data, timeout)
            self.bridge.write(bytes(data))
            reply = self.bridge.read(0)
            if reply:
                self.replies.append(reply)
            return len(data)

    def plug_in() -> cp2112.PyUsbHid:
        if cables and cables[-1].unplugged:
            raise DeviceConnectionError("CP2112", "0 CP2112 with any serial number on USB")
        cables.append(Answering())
        return cp2112.PyUsbHid(cables[-1], "CP2112")

    async def run() -> None:
        battery = SmartBattery(SmartBatterySettings(bus="cp2112", retry_delay_s=0),
                               bus=Cp2112Bus(plug_in, name="CP2112"))
        await battery.open(RealClock())
        try:
            assert (await battery.read())["voltage"].value > 12
            cables[-1].unplugged = True
            with pytest.raises(DeviceConnectionError, match="No such device"):
                await battery.read()
            with pytest.raises(DeviceConnectionError, match="0 CP2112"):
                await battery.read()  # still gone
            cables[-1].unplugged = False
            assert (await battery.read())["voltage"].value > 12  # plugged in again
            assert len(cables) == 2
        finally:
            await battery.close()

    asyncio.run(run())


class FailingReadBridge(EmulatedCp2112):
    """A bridge that completes the transfer, then reports its Data Read Response as failed."""

    def read(self, timeout_s: float) -> bytes:
        report = super().read(timeout_s)
        if report[:1] == bytes([cp2112.DATA_READ_RESPONSE]):
            return bytes([report[0], cp2112.STATUS_ERROR, 0]) + report[3:]
        return report


def test_a_failed_data_read_response_is_a_bus_error() -> None:
    bus = Cp2112Bus(lambda: FailingReadBridge(SbsBattery()))
    bus.open()
    with pytest.raises(BusError, match="the bridge failed the read after 0 bytes"):
        bus.write_read(0x0B, 0x09, 3)
