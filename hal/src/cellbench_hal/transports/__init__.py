"""Transports: lines and bytes to one device over TCP, a serial port or USB.

Drivers talk through these instead of writing socket plumbing; every call has a timeout and
runs on the device's worker thread. See docs/transports.md.
"""

from cellbench_hal.transports.base import LineTransport, Link, TransportOptions
from cellbench_hal.transports.serial_port import SerialLineTransport
from cellbench_hal.transports.tcp import TcpLineTransport
from cellbench_hal.transports.url import open_transport, transport_from_url
from cellbench_hal.transports.usb import UsbTransport

__all__ = [
    "LineTransport",
    "Link",
    "SerialLineTransport",
    "TcpLineTransport",
    "TransportOptions",
    "UsbTransport",
    "open_transport",
    "transport_from_url",
]
