"""An emulated Keysight 34970A / DAQ970A data logger: the SCPI subset the driver uses, with
multiplexer cards in its slots, thermocouples and DC voltages behind their channels, and an
error queue.

The temperatures drift slowly around their base values (a cell warming and cooling); set
:attr:`LoggerEmulator.values` to fix a channel's value and :attr:`LoggerEmulator.open_channels`
for an open thermocouple (an overload reading). Faults of the line (slow, garbled, silent,
dropped connection) come from :class:`cellbench_sdk.emulation.LineEmulator`;
:meth:`LoggerEmulator.push_error` puts an error into the queue as a misbehaving instrument
would. Serve it on TCP or on a pseudo-terminal as an RS-232 line.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from cellbench_scpi_logger.scpi import OVERLOAD, parse_channel_list
from cellbench_sdk.emulation import LineEmulator

_IDN = {"DAQ970A": "Keysight Technologies,DAQ970A,MY58000123,A.03.02-01.00-03.02-00.02-00.01",
        "34970A": "HEWLETT-PACKARD,34970A,0,13-2-2"}
#: Long SCPI keywords the emulator accepts besides the short forms.
_SHORT = {"CONFIGURE": "CONF", "TEMPERATURE": "TEMP", "VOLTAGE": "VOLT", "FORMAT": "FORM",
          "READING": "READ", "CHANNEL": "CHAN", "ROUTE": "ROUT", "SYSTEM": "SYST",
          "ERROR": "ERR", "TCOUPLE": "TC"}
_CONF_TEMP = re.compile(r"^CONF:TEMP TC,([BEJKNRST])(?:,[^(]*)?,(\(@.*\))$")
_CONF_DCV = re.compile(r"^CONF:VOLT:DC (AUTO|DEF|[\d.E+-]+)(?:,[^(]*)?,(\(@.*\))$")
_FORMAT = re.compile(r"^FORM:READ:(CHAN|UNIT) (ON|OFF|1|0)$")
_SCAN = re.compile(r"^ROUT:SCAN (\(@.*\))$")


def _short(command: str) -> str:
    """``command`` upper-cased, its header's long keywords shortened."""
    header, space, rest = command.strip().upper().partition(" ")
    words = [_SHORT.get(word, word) for word in header.split(":")]
    parts = rest.split(",")
    rest = ",".join(_SHORT.get(part.strip(), part.strip()) for part in parts)
    return ":".join(words) + (space + rest if space else "")


class LoggerEmulator(LineEmulator):
    """The logger; ``cards`` gives the channel count of the card in each slot (no entry: an
    empty slot)."""

    def __init__(self, *, model: str = "DAQ970A", cards: dict[int, int] | None = None,
                 clock: Callable[[], float] = time.monotonic, **options: Any) -> None:
        super().__init__(**options)
        if model not in _IDN:
            raise ValueError(f"model {model!r}: one of {', '.join(_IDN)}")
        self.model = model
        self.cards = {1: 20, 2: 20} if cards is None else cards
        #: Fixed values by channel (°C or V), overriding the built-in signals.
        self.values: dict[int, float] = {}
        #: Channels whose thermocouple is open: they read the overload value.
        self.open_channels: set[int] = set()
        self.errors: deque[str] = deque(maxlen=20)
        #: Scans taken (READ? answered).
        self.scans = 0
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """*RST: no channel configured, no scan list, plain readings."""
        self.functions: dict[int, str] = {}  # channel -> "TC K" or "VDC"
        self.scan: list[int] = []
        self.format_channel = self.format_unit = False

    def push_error(self, error: str) -> None:
        """Queue an error as ``-123,"Text"``, answered by the next SYST:ERR?."""
        self.errors.append(error)

    def value(self, channel: int) -> float:
        """What ``channel`` measures now."""
        if channel in self.open_channels:
            return OVERLOAD
        if channel in self.values:
            return self.values[channel]
        slot, number = divmod(channel, 100)
        wave = math.sin(self._clock() / 60.0 + number)
        if self.functions[channel].startswith("TC"):
            return 25.0 + 0.5 * slot + 0.1 * number + 0.2 * wave
        return 3.6 + 0.01 * number + 0.005 * wave

    def respond(self, line: str) -> str | None:
        command = _short(line)
        try:
            return self._respond(command)
        except ValueError as err:
            self.push_error(f'-224,"Illegal parameter value; {err}"')
            return None

    def _respond(self, command: str) -> str | None:
        if command == "*IDN?":
            return _IDN[self.model]
        if command == "*RST":
            self.reset()
            return None
        if command == "*CLS":
            self.errors.clear()
            return None
        if command == "SYST:ERR?":
            return self.errors.popleft() if self.errors else '+0,"No error"'
        if command == "READ?":
            return self._read()
        if (match := _CONF_TEMP.match(command)) is not None:
            self._configure(f"TC {match[1]}", match[2])
            return None
        if (match := _CONF_DCV.match(command)) is not None:
            self._configure("VDC", match[2])
            return None
        if (match := _FORMAT.match(command)) is not None:
            setattr(self, "format_channel" if match[1] == "CHAN" else "format_unit",
                    match[2] in ("ON", "1"))
            return None
        if (match := _SCAN.match(command)) is not None:
            channels = self._valid(parse_channel_list(match[1]))
            if channels is not None:
                unconfigured = [c for c in channels if c not in self.functions]
                if unconfigured:
                    self.push_error(f'-221,"Settings conflict; channel {unconfigured[0]} is not '
                                    f'configured"')
                else:
                    self.scan = sorted(set(channels))
            return None
        self.push_error('-113,"Undefined header"')
        return None

    def _valid(self, channels: list[int]) -> list[int] | None:
        """``channels`` if the cards have them; else an error queued and None."""
        for channel in channels:
            slot, number = divmod(channel, 100)
            if slot not in self.cards:
                self.push_error(f'+703,"Invalid card slot; no module in slot {slot}"')
                return None
            if not 1 <= number <= self.cards[slot]:
                self.push_error(f'-222,"Data out of range; channel {channel}"')
                return None
        return channels

    def _configure(self, function: str, channels_text: str) -> None:
        channels = self._valid(parse_channel_list(channels_text))
        if channels is None:
            return
        for channel in channels:
            self.functions[channel] = function
        self.scan = sorted(set(channels))  # CONFigure also sets the scan list to its channels

    def _read(self) -> str | None:
        if not self.scan:
            self.push_error('-221,"Settings conflict; empty scan list"')
            return None
        self.scans += 1
        readings = []
        for channel in self.scan:
            text = f"{self.value(channel):+.8E}"
            if self.format_unit:
                text += " C" if self.functions[channel].startswith("TC") else " VDC"
            readings.append(f"{text},{channel}" if self.format_channel else text)
        return ",".join(readings)


async def serve(host: str, port: int, **options: Any) -> None:
    """Serve an emulated logger on ``host:port`` until cancelled; ``options`` as for
    :class:`LoggerEmulator`."""
    await LoggerEmulator(**options).serve_forever(host, port)
