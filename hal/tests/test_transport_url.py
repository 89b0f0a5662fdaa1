"""Transports named by URL, and the errors that name the bad part of one."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import pytest

from cellbench_hal import (
    SerialLineTransport,
    TcpLineTransport,
    UsbTransport,
    open_transport,
    transport_from_url,
)

if TYPE_CHECKING:
    from conftest import TcpPeer


def test_tcp_url() -> None:
    io = transport_from_url("tcp://10.0.0.5:5025?connect_timeout=3&timeout=0.5",
                            read_termination="\r\n", name="psu")
    assert isinstance(io, TcpLineTransport)
    assert (io.host, io.port, io.open_timeout, io.timeout) == ("10.0.0.5", 5025, 3.0, 0.5)
    assert (io.read_termination, io.name) == ("\r\n", "psu")
    v6 = transport_from_url("tcp://[::1]:5025/")
    assert isinstance(v6, TcpLineTransport) and v6.host == "::1"
    assert v6.name == "tcp://[::1]:5025"


def test_serial_url() -> None:
    io = transport_from_url("serial:///dev/ttyUSB0?baudrate=19200&parity=e&stopbits=2"
                            "&bytesize=7&rtscts=yes")
    assert isinstance(io, SerialLineTransport)
    assert (io.port, io.baudrate, io.parity, io.stopbits, io.bytesize) == (
        "/dev/ttyUSB0", 19200, "E", 2.0, 7)
    assert io.rtscts and not io.xonxoff
    windows = transport_from_url("serial://COM3?xonxoff=1")
    assert isinstance(windows, SerialLineTransport)
    assert windows.port == "COM3" and windows.xonxoff


def test_usb_url() -> None:
    io = transport_from_url("usb://0x2184:0x0044/GEQ%20123?interface=1&out=0x02&in=0x82")
    assert isinstance(io, UsbTransport)
    assert (io.vendor_id, io.product_id, io.serial_number) == (0x2184, 0x0044, "GEQ 123")
    assert (io.interface, io.endpoint_out, io.endpoint_in) == (1, 0x02, 0x82)
    bare = transport_from_url("usb://2184:44")
    assert isinstance(bare, UsbTransport)
    assert (bare.vendor_id, bare.product_id, bare.serial_number) == (0x2184, 0x44, None)


@pytest.mark.parametrize(("url", "message"), [
    ("telnet://host:23", "unknown scheme 'telnet'; write tcp://HOST:PORT, serial://PORT or "
                         "usb://VID:PID[/SERIAL]"),
    ("10.0.0.5:5025", "no scheme; write tcp://HOST:PORT"),
    ("tcp://10.0.0.5", "'10.0.0.5' is not HOST:PORT"),
    ("tcp://10.0.0.5:http", "port 'http' must be 1..65535"),
    ("tcp://10.0.0.5:70000", "port '70000' must be 1..65535"),
    ("tcp://10.0.0.5:5025/x", "unexpected path '/x'"),
    ("tcp://10.0.0.5:5025?baudrate=9600", "unknown setting 'baudrate'; known: timeout, "
                                          "connect_timeout"),
    ("tcp://10.0.0.5:5025?timeout=0", "timeout='0' must be a positive number of seconds"),
    ("tcp://10.0.0.5:5025?timeout=1&timeout=2", "timeout is given twice"),
    ("tcp://10.0.0.5:5025?timeout", "'timeout' is not NAME=VALUE"),
    ("serial://", "no port; write serial:///dev/ttyUSB0"),
    ("serial:///dev/ttyUSB0?baudrate=fast", "baudrate='fast' must be an integer such as 9600"),
    ("serial:///dev/ttyUSB0?parity=Q", "parity must be one of N, E, O, M, S, not 'Q'"),
    ("serial:///dev/ttyUSB0?rtscts=maybe", "rtscts='maybe' must be 0 or 1"),
    ("usb://0x2184", "'0x2184' is not VID:PID"),
    ("usb://0x2184:", "product id '' must be 4 hex digits"),
    ("usb://0xZZ:0x0044", "vendor id '0xZZ' must be 4 hex digits"),
    ("usb://0x2184:0x0044?in=0x01", "endpoint_in must be 0x81..0x8f, not 1"),
])
def test_bad_urls_name_the_bad_part(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^transport URL {re.escape(repr(url))}: ") as caught:
        transport_from_url(url)
    assert message in str(caught.value)


def test_a_setting_in_the_url_and_as_a_keyword_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout is given in the URL and as a keyword"):
        transport_from_url("tcp://h:1?timeout=1", timeout=2.0)


def test_open_transport_connects(tcp_peer: TcpPeer) -> None:
    async def run() -> None:
        io = await open_transport(f"tcp://127.0.0.1:{tcp_peer.port}?timeout=0.5")
        assert io.is_open
        assert await io.query("PING") == "re:PING"
        await io.close()

    asyncio.run(run())
