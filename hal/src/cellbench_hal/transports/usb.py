"""Raw bytes and lines over a USB device's bulk endpoints with pyusb (the ``usb`` extra)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Unpack

from cellbench_hal.errors import DeviceConnectionError
from cellbench_hal.transports.base import LineTransport, Link, TransportOptions

INSTALL_HINT = "pip install 'cellbench-hal[usb]' (or uv add 'cellbench-hal[usb]')"


def _pyusb() -> tuple[ModuleType, ModuleType]:
    """``usb.core`` and ``usb.util``, or an ImportError that says how to install them."""
    try:
        return importlib.import_module("usb.core"), importlib.import_module("usb.util")
    except ImportError as error:
        raise ImportError(f"UsbTransport needs pyusb, which is not installed: {INSTALL_HINT}",
                          name="usb") from error


def _ms(seconds: float) -> int:
    # libusb reads a timeout of 0 as "wait for ever"; the shortest wait is 1 ms.
    return max(1, round(seconds * 1000))


class _UsbLink:
    """A pair of bulk endpoints of an open pyusb device as a :class:`Link`."""

    def __init__(self, device: Any, endpoint_out: int, endpoint_in: int) -> None:
        self._device = device
        self._out = endpoint_out
        self._in = endpoint_in
        self._core, self._util = _pyusb()

    def send(self, data: bytes, timeout: float) -> None:
        try:
            sent = self._device.write(self._out, data, _ms(timeout))
        except self._core.USBTimeoutError:
            raise TimeoutError(f"sent part of {len(data)} bytes") from None
        if sent != len(data):
            raise TimeoutError(f"sent {sent} of {len(data)} bytes")

    def receive(self, size: int, timeout: float) -> bytes:
        # The transport asks for 64 KiB, a multiple of every bulk packet size: a transfer
        # never overflows the read.
        try:
            return bytes(self._device.read(self._in, size, _ms(timeout)))
        except self._core.USBTimeoutError:
            return b""

    def close(self) -> None:
        self._util.dispose_resources(self._device)


class UsbTransport(LineTransport):
    """A USB device found by ``vendor_id``, ``product_id`` and, when several are connected,
    ``serial_number``; it talks over bulk endpoints of ``interface``.

    ``endpoint_out`` and ``endpoint_in`` are endpoint addresses (such as 0x01 and 0x81); left
    out, they are the interface's first bulk endpoints of each direction. A kernel driver bound
    to the interface is detached. Bytes go as they are with :meth:`write_bytes` and
    :meth:`read_bytes`; lines are framed by the terminators as on any transport. A device that
    is unplugged raises :class:`DeviceConnectionError`. Needs pyusb (the ``usb`` extra of
    cellbench-hal) and a libusb backend; other settings: :class:`LineTransport`.
    """

    def __init__(self, vendor_id: int, product_id: int, serial_number: str | None = None, *,
                 interface: int = 0, endpoint_out: int | None = None,
                 endpoint_in: int | None = None, **options: Unpack[TransportOptions]) -> None:
        _pyusb()
        for what, value in (("vendor_id", vendor_id), ("product_id", product_id)):
            if not (isinstance(value, int) and 0 <= value <= 0xFFFF):
                raise ValueError(f"{what} must be 0x0000..0xFFFF, not {value!r}")
        if not (isinstance(interface, int) and 0 <= interface <= 255):
            raise ValueError(f"interface must be 0..255, not {interface!r}")
        for what, address, low in (("endpoint_out", endpoint_out, 0x01),
                                   ("endpoint_in", endpoint_in, 0x81)):
            if address is not None and address not in range(low, low + 15):
                raise ValueError(f"{what} must be 0x{low:02x}..0x{low + 14:02x}, "
                                 f"not {address!r}")
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.serial_number = serial_number
        self.interface = interface
        self.endpoint_out = endpoint_out
        self.endpoint_in = endpoint_in
        self.ids = f"0x{vendor_id:04x}:0x{product_id:04x}"
        options.setdefault("name", f"usb://{self.ids}" + (f"/{serial_number}"
                                                           if serial_number else ""))
        super().__init__(**options)

    def _open_link(self) -> Link:
        core, util = _pyusb()
        device = self._find(core)
        try:
            if device.is_kernel_driver_active(self.interface):
                device.detach_kernel_driver(self.interface)
        except NotImplementedError:  # backends without kernel drivers (Windows, macOS)
            pass
        try:
            config = device.get_active_configuration()
        except core.USBError:  # not configured yet
            device.set_configuration()
            config = device.get_active_configuration()
        out_ep, in_ep = self.endpoint_out, self.endpoint_in
        if out_ep is None or in_ep is None:
            try:
                endpoints = list(config[(self.interface, 0)])
            except (KeyError, IndexError):
                raise DeviceConnectionError(self.name, f"the device has no interface "
                                            f"{self.interface}") from None
            bulk = [e.bEndpointAddress for e in endpoints
                    if util.endpoint_type(e.bmAttributes) == util.ENDPOINT_TYPE_BULK]
            if out_ep is None:
                out_ep = self._first(bulk, util.ENDPOINT_OUT, util, "OUT")
            if in_ep is None:
                in_ep = self._first(bulk, util.ENDPOINT_IN, util, "IN")
        return _UsbLink(device, out_ep, in_ep)

    def _find(self, core: ModuleType) -> Any:
        found = list(core.find(find_all=True, idVendor=self.vendor_id,
                               idProduct=self.product_id) or ())
        if not found:
            raise DeviceConnectionError(self.name, f"no USB device {self.ids} is connected (or "
                                        "this user may not open it)")
        serials = [_serial_of(core, device) for device in found]
        if self.serial_number is not None:
            matches = [d for d, s in zip(found, serials, strict=True) if s == self.serial_number]
        elif len(found) == 1:
            matches = found
        else:
            raise DeviceConnectionError(self.name, f"{len(found)} USB devices {self.ids} are "
                                        f"connected (serial numbers {', '.join(serials)}); "
                                        "give the serial number")
        if not matches:
            raise DeviceConnectionError(self.name, f"no USB device {self.ids} has the serial "
                                        f"number {self.serial_number!r} (connected: "
                                        f"{', '.join(serials)})")
        return matches[0]

    def _first(self, bulk: list[int], direction: int, util: ModuleType, what: str) -> int:
        for address in bulk:
            if util.endpoint_direction(address) == direction:
                return address
        raise DeviceConnectionError(self.name, f"interface {self.interface} has no bulk {what} "
                                    "endpoint")


def _serial_of(core: ModuleType, device: Any) -> str:
    try:
        return str(device.serial_number)
    except (ValueError, NotImplementedError, core.USBError):  # no string descriptor, or denied
        return "?"
