"""VISA resource strings: which ones the drivers take, checked where a station file gives them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TCPIP = re.compile(r"^TCPIP\d*::(?P<host>[^:\s]+)::(?P<port>\d{1,5})::SOCKET$", re.IGNORECASE)
_ASRL = re.compile(r"^ASRL(?P<port>[^:\s]+)::INSTR$", re.IGNORECASE)
_USB = re.compile(r"^USB\d*::(?P<vendor>0x[0-9a-f]{1,4}|\d+)::(?P<product>0x[0-9a-f]{1,4}|\d+)"
                  r"::(?P<serial>[^:\s]+)(?:::\d+)?::INSTR$", re.IGNORECASE)

EXAMPLES = ("TCPIP::10.0.0.5::5025::SOCKET", "ASRL/dev/ttyUSB0::INSTR",
            "USB0::0x2184::0x0044::GEQ123456::INSTR")


@dataclass(frozen=True, slots=True)
class Resource:
    """A checked resource string and what it reaches."""

    text: str
    bus: str  # "tcpip", "serial" or "usb"
    address: str  # host:port, the serial port, or vendor:product/serial

    @property
    def is_socket(self) -> bool:
        """True for a raw TCP socket (SCPI on port 5025 and alike)."""
        return self.bus == "tcpip"


def parse_resource(text: str) -> Resource:
    """Check ``text`` as one of the resource strings the drivers take; ValueError saying which
    forms there are otherwise."""
    stripped = text.strip()
    if found := _TCPIP.match(stripped):
        port = int(found["port"])
        if not 1 <= port <= 65535:
            raise ValueError(f"resource {text!r}: port {port} is not 1..65535")
        return Resource(stripped, "tcpip", f"{found['host']}:{port}")
    if found := _ASRL.match(stripped):
        return Resource(stripped, "serial", found["port"])
    if found := _USB.match(stripped):
        vendor, product = (int(found[k], 0) for k in ("vendor", "product"))
        if vendor > 0xFFFF or product > 0xFFFF:
            raise ValueError(f"resource {text!r}: vendor and product ids are 16-bit numbers")
        return Resource(stripped, "usb", f"0x{vendor:04x}:0x{product:04x}/{found['serial']}")
    raise ValueError(f"resource {text!r} is not one of the forms the SCPI drivers take: "
                     + ", ".join(EXAMPLES))
