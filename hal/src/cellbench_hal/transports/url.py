"""Transports named by one URL, as station settings write them.

``tcp://HOST:PORT``, ``serial://PORT`` (``serial:///dev/ttyUSB0``, ``serial://COM3``) and
``usb://VID:PID[/SERIAL]`` (ids in hex, like lsusb prints them), each with the settings of its
transport as query parameters::

    tcp://10.0.0.5:5025?connect_timeout=3
    serial:///dev/ttyUSB0?baudrate=9600&parity=E&stopbits=1&rtscts=1
    usb://0x2184:0x0044/GEQ123456?interface=0&out=0x01&in=0x81

``timeout`` may be given in any of them; terminators, encoding and the rest come as keywords.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from string import hexdigits
from typing import Any, Unpack
from urllib.parse import parse_qsl, unquote, urlsplit

from cellbench_hal.transports.base import LineTransport, TransportOptions, positive_seconds
from cellbench_hal.transports.serial_port import SerialLineTransport
from cellbench_hal.transports.tcp import TcpLineTransport
from cellbench_hal.transports.usb import UsbTransport


def _seconds(text: str) -> float:
    return positive_seconds("a time", float(text))


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _integer(text: str) -> int:
    return int(text, 0)


# Query parameter -> (keyword of the transport, parser, what a valid value looks like).
_Param = tuple[str, Callable[[str], Any], str]
_TIMEOUT: _Param = ("timeout", _seconds, "a positive number of seconds")
_PARAMS: dict[str, dict[str, _Param]] = {
    "tcp": {"timeout": _TIMEOUT,
            "connect_timeout": ("connect_timeout", _seconds, "a positive number of seconds")},
    "serial": {"timeout": _TIMEOUT,
               "baudrate": ("baudrate", _integer, "an integer such as 9600"),
               "bytesize": ("bytesize", _integer, "5, 6, 7 or 8"),
               "parity": ("parity", str.upper, "N, E, O, M or S"),
               "stopbits": ("stopbits", float, "1, 1.5 or 2"),
               "rtscts": ("rtscts", _flag, "0 or 1"),
               "xonxoff": ("xonxoff", _flag, "0 or 1")},
    "usb": {"timeout": _TIMEOUT,
            "interface": ("interface", _integer, "an interface number such as 0"),
            "out": ("endpoint_out", _integer, "an OUT endpoint address such as 0x01"),
            "in": ("endpoint_in", _integer, "an IN endpoint address such as 0x81")},
}


def transport_from_url(url: str, **options: Unpack[TransportOptions]) -> LineTransport:
    """The transport ``url`` names, not yet open; ``options`` as for :class:`LineTransport`.

    A bad URL raises :class:`ValueError` naming the part that is wrong.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _PARAMS:
        problem = f"unknown scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(f"transport URL {url!r}: {problem}; write tcp://HOST:PORT, "
                         "serial://PORT or usb://VID:PID[/SERIAL]")
    settings = _query(url, parts.query, _PARAMS[scheme])
    for key in settings.keys() & options.keys():
        raise ValueError(f"transport URL {url!r}: {key} is given in the URL and as a keyword")
    try:
        if scheme == "tcp":
            return _tcp(url, parts.netloc, parts.path, settings, options)
        if scheme == "serial":
            port = unquote(parts.netloc + parts.path)
            if not port:
                raise ValueError("no port; write serial:///dev/ttyUSB0 or serial://COM3")
            return SerialLineTransport(port, **settings, **options)
        return _usb(parts.netloc, parts.path, settings, options)
    except ValueError as error:
        message = str(error)
        prefix = f"transport URL {url!r}: "
        raise ValueError(message if message.startswith(prefix) else prefix + message) from None


async def open_transport(url: str, **options: Unpack[TransportOptions]) -> LineTransport:
    """The transport ``url`` names, opened (see :func:`transport_from_url`)."""
    transport = transport_from_url(url, **options)
    await transport.open()
    return transport


def _query(url: str, query: str, known: Mapping[str, _Param]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for field in filter(None, query.split("&")):
        pairs = parse_qsl(field, keep_blank_values=True)
        if len(pairs) != 1 or "=" not in field:
            raise ValueError(f"transport URL {url!r}: {field!r} is not NAME=VALUE")
        name, text = pairs[0]
        if name not in known:
            raise ValueError(f"transport URL {url!r}: unknown setting {name!r}; known: "
                             f"{', '.join(known)}")
        keyword, parse, valid = known[name]
        if keyword in settings:
            raise ValueError(f"transport URL {url!r}: {name} is given twice")
        try:
            settings[keyword] = parse(text)
        except ValueError:
            raise ValueError(f"transport URL {url!r}: {name}={text!r} must be {valid}") from None
    return settings


def _tcp(url: str, netloc: str, path: str, settings: dict[str, Any],
         options: TransportOptions) -> TcpLineTransport:
    if path not in ("", "/"):
        raise ValueError(f"unexpected path {path!r}; write tcp://HOST:PORT")
    host, sep, port = netloc.rpartition(":")
    if not sep or not host or not port:
        raise ValueError(f"{netloc!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port {port!r} must be 1..65535")
    return TcpLineTransport(host, int(port), **settings, **options)


def _usb(netloc: str, path: str, settings: dict[str, Any],
         options: TransportOptions) -> UsbTransport:
    vendor, sep, product = netloc.partition(":")
    if not sep:
        raise ValueError(f"{netloc!r} is not VID:PID; write usb://VID:PID[/SERIAL], like "
                         "usb://0x2184:0x0044")
    ids = []
    for what, text in (("vendor id", vendor), ("product id", product)):
        digits = text[2:] if text.lower().startswith("0x") else text
        if not (1 <= len(digits) <= 4 and all(c in hexdigits for c in digits)):
            raise ValueError(f"{what} {text!r} must be 4 hex digits; write "
                             "usb://VID:PID[/SERIAL], like usb://0x2184:0x0044")
        ids.append(int(digits, 16))
    serial = unquote(path.strip("/")) or None
    return UsbTransport(ids[0], ids[1], serial, **settings, **options)
