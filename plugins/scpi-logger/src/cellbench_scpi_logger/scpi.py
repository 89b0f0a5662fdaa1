"""The SCPI of the 34970A / DAQ970A family as this plugin speaks it: channel lists, the
configuration commands of a scan list, and the readings a scan returns. Shared by the driver and
the emulator."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Final

from cellbench_scpi_logger.settings import LoggerChannel

#: The value a logger returns for an overload or an open thermocouple.
OVERLOAD: Final = 9.9e37
#: The unit suffix of each kind's readings (FORMat:READing:UNIT ON), and its SI unit.
READING_UNITS: Final = {"tc": ("C", "°C"), "dcv": ("VDC", "V")}
#: Models of the family (the second field of *IDN?).
MODELS: Final = ("34970A", "34972A", "DAQ970A", "DAQ973A")

_LIST = re.compile(r"^\(@\s*([\d\s,:]*)\)$")


def channel_list(channels: Iterable[int]) -> str:
    """``(@101,102,205)``: the channels in ascending order, as the logger scans them."""
    return "(@" + ",".join(str(c) for c in sorted(channels)) + ")"


def parse_channel_list(text: str) -> list[int]:
    """The channels of ``(@101,103:105)``; ValueError if it is not a channel list."""
    match = _LIST.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a channel list such as (@101,102)")
    channels: list[int] = []
    for part in filter(None, (p.strip() for p in match[1].split(","))):
        first, _, last = part.partition(":")
        start, end = int(first), int(last or first)
        if end < start:
            raise ValueError(f"range {part} runs backwards")
        channels.extend(range(start, end + 1))
    return channels


def family(channel: LoggerChannel) -> str:
    """``tc`` or ``dcv``."""
    return "tc" if channel.kind.startswith("tc-") else "dcv"


def configuration(channels: Mapping[str, LoggerChannel], *, reset: bool) -> list[str]:
    """The commands that set the scan list up: one CONFigure per kind and range (in the order
    the kinds first appear), the reading format (units and channel numbers on), the scan."""
    groups: dict[str, list[int]] = {}
    for channel in channels.values():
        if channel.kind == "dcv":
            head = "CONF:VOLT:DC " + ("AUTO" if channel.range is None else f"{channel.range:g}")
        else:
            head = f"CONF:TEMP TC,{channel.kind[3:].upper()}"
        groups.setdefault(head, []).append(channel.ch)
    return [*(["*RST"] if reset else []), "*CLS",
            *(f"{head},{channel_list(numbers)}" for head, numbers in groups.items()),
            "FORM:READ:CHAN ON", "FORM:READ:UNIT ON",
            f"ROUT:SCAN {channel_list(c.ch for c in channels.values())}"]


def parse_scan(reply: str, channels: Mapping[str, LoggerChannel]) -> dict[str, float]:
    """The values by signal name of a scan's reply ``+2.345E+01 C,101,+3.7E+00 VDC,103``: every
    configured channel once, each in its kind's unit; an overload (open thermocouple) is NaN.
    ValueError says what is wrong."""
    by_number = {c.ch: (name, c) for name, c in channels.items()}
    fields = [f.strip() for f in reply.split(",")]
    if len(fields) != 2 * len(by_number):
        raise ValueError(f"{len(fields)} fields, expected {2 * len(by_number)} (a reading and "
                         f"a channel for each of {len(by_number)} channels)")
    values: dict[str, float] = {}
    for reading, number in zip(fields[::2], fields[1::2], strict=True):
        if not number.isdigit() or int(number) not in by_number:
            raise ValueError(f"channel {number!r} is not in the scan list")
        name, channel = by_number[int(number)]
        if name in values:
            raise ValueError(f"channel {number} appears twice")
        text, _, unit = reading.partition(" ")
        expected = READING_UNITS[family(channel)][0]
        if unit != expected:
            raise ValueError(f"channel {number} ({channel.kind}) reads {reading!r}, not in "
                             f"{expected}")
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"channel {number} reads {reading!r}, not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"channel {number} reads {reading!r}")
        values[name] = math.nan if abs(value) >= OVERLOAD else value
    return values
