"""The rci wire format, shared by server and client: the error codes, reply lines
(``OK [payload]`` / ``ERR <code> <message>``) and their parsing, and the words of command lines
(channel lists, numbers). Pushed lines start with ``*`` and are no replies. docs/rci.md
describes the protocol for people."""

from __future__ import annotations

import contextlib
import enum
import math
import re
from dataclasses import dataclass

from cellbench_sdk.units import Dimension, UnitError, parse_value


class ErrorCode(enum.IntEnum):
    """The stable numeric codes of ``ERR`` replies (docs/rci.md has the table)."""

    SYNTAX = 10  # empty, garbled, non-ASCII or control characters
    UNKNOWN_COMMAND = 11
    ARGUMENT_COUNT = 12
    LINE_TOO_LONG = 13
    BAD_NUMBER = 20
    BAD_CHANNEL = 21  # a channel list that does not parse
    NON_FINITE = 22
    OUT_OF_RANGE = 23
    NO_SUCH_CHANNEL = 30
    CHANNEL_BUSY = 31
    CHANNEL_IDLE = 32
    NOT_PAUSED = 33
    ALREADY_PAUSED = 34
    NOT_EXTERNAL = 35  # SET, KEEPALIVE: the channel's step is no external step
    NO_SUCH_PLAN = 40
    PLAN_INVALID = 41
    NO_SUCH_BATTERY = 42
    ALREADY_EXISTS = 43
    NO_SUCH_ENTRY = 44
    NOT_CANCELLABLE = 45
    AUTH_REQUIRED = 50
    AUTH_FAILED = 51
    FORBIDDEN = 52  # the viewer role reads only
    RATE_LIMIT = 60
    TOO_MANY_CONNECTIONS = 61
    IDLE_TIMEOUT = 62
    TOO_MANY_SUBSCRIPTIONS = 63
    UNAVAILABLE = 70  # the station is stopping, or its database failed
    DEVICE_ERROR = 71  # the channel's device failed a setpoint: the test failed, output off
    INTERNAL = 99


class RciError(Exception):
    """An ``ERR`` reply: ``code`` (an :class:`ErrorCode`, or the bare number of a code this
    version does not know) and ``message``; ``command`` is the command it answered, if known."""

    def __init__(self, code: ErrorCode | int, message: str, command: str | None = None) -> None:
        with contextlib.suppress(ValueError):  # a newer server's code stays a number
            code = ErrorCode(code)
        super().__init__(f"ERR {int(code)} {message}")
        self.code = code
        self.message = message
        self.command = command


@dataclass(frozen=True, slots=True)
class Reply:
    """An ``OK`` reply's payload (``""`` for a bare ``OK``)."""

    payload: str

    @property
    def records(self) -> list[list[str]]:
        """The payload as records (separated by ``;``) of fields (separated by ``,``)."""
        return [record.split(",") for record in self.payload.split(";")] if self.payload else []


def ok_line(payload: str = "") -> bytes:
    """The reply line for success with ``payload``; anything but printable ASCII in it (a
    step text's degree sign, say) becomes ``?``, so the reply stays one ASCII line."""
    if not payload:
        return b"OK\n"
    if not (payload.isascii() and payload.isprintable()):
        payload = "".join(c if c.isascii() and c.isprintable() else "?" for c in payload)
    return f"OK {payload}\n".encode("ascii")


def err_line(code: ErrorCode | int, message: str) -> bytes:
    """The reply line for an error; the message is kept to one line of printable ASCII."""
    text = " ".join("".join(c if c.isascii() and c.isprintable() else " "
                            for c in message).split())
    return f"ERR {int(code)} {text}\n".encode("ascii")


def parse_reply(line: str) -> Reply | RciError:
    """A reply line (without its line end) as a :class:`Reply` or, for ``ERR``, an
    :class:`RciError` (returned, not raised). Raises ValueError if the line is no reply."""
    if line == "OK":
        return Reply("")
    if line.startswith("OK "):
        return Reply(line[3:])
    if line.startswith("ERR "):
        code, _, message = line[4:].partition(" ")
        if code.isascii() and code.isdigit():
            return RciError(int(code), message)
    raise ValueError(f"not an rci reply line: {line[:80]!r}")


#: Anything but printable ASCII, space and tab in a command line.
_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e\t]")
_CHANNEL_PART = re.compile(r"([0-9]{1,9})(?:-([0-9]{1,9}))?", re.ASCII)
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def split_command(line: bytes) -> list[str]:
    """The words of a command line (without its line end): RciError SYNTAX for an empty line
    or one with bytes other than printable ASCII, spaces and tabs."""
    bad = _NOT_PRINTABLE.search(line)
    if bad is not None:
        raise RciError(ErrorCode.SYNTAX, f"byte 0x{line[bad.start()]:02x} at column "
                       f"{bad.start() + 1} is not printable ASCII")
    words = line.decode("ascii").split()
    if not words:
        raise RciError(ErrorCode.SYNTAX, "empty line")
    return words


def parse_channels(text: str, count: int) -> list[int]:
    """Channel numbers from ``3``, ``1-8``, ``1,3,5-6`` or ``ALL`` on a station with ``count``
    channels, in the order given: BAD_CHANNEL if the text does not parse, NO_SUCH_CHANNEL for a
    channel the station does not have."""
    if text.upper() == "ALL":
        return list(range(1, count + 1))
    numbers: list[int] = []
    for part in text.split(","):
        match = _CHANNEL_PART.fullmatch(part)
        if match is None:
            raise RciError(ErrorCode.BAD_CHANNEL, f"{part[:20]!r} is not a channel, range or ALL "
                           "(like 3, 1-8, 1,3,5-6)")
        first, last = int(match[1]), int(match[2] or match[1])
        if first > last:
            raise RciError(ErrorCode.BAD_CHANNEL, f"the range {first}-{last} runs backwards")
        for n in (first, last):
            if not 1 <= n <= count:
                raise RciError(ErrorCode.NO_SUCH_CHANNEL, f"channel {n} does not exist (this "
                               f"station has channels 1-{count})")
        numbers.extend(range(first, last + 1))
    return numbers


def parse_channel(text: str, count: int) -> int:
    """One channel number."""
    numbers = parse_channels(text, count)
    if len(numbers) != 1:
        raise RciError(ErrorCode.BAD_CHANNEL, f"{text[:20]!r}: give one channel, not a range")
    return numbers[0]


def parse_int(text: str, what: str, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``: BAD_NUMBER if ``text`` is no whole number,
    OUT_OF_RANGE (naming ``what`` and the range) if it is one outside the range."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not (digits.isascii() and digits.isdigit()):
        raise RciError(ErrorCode.BAD_NUMBER, f"{what}: {text[:20]!r} is not a whole number "
                       f"({low} to {high})")
    if len(digits) > 30 or not low <= int(text) <= high:
        raise RciError(ErrorCode.OUT_OF_RANGE, f"{what} must be {low} to {high}, not "
                       f"{text[:20]}{'...' if len(text) > 20 else ''}")
    return int(text)


def parse_quantity(text: str, what: str, dimension: Dimension) -> float:
    """A finite number in SI units, bare (``4.2``) or with a unit of ``dimension``
    (``4.2V``, ``4200 mV``)."""
    lowered = text.lower().lstrip("+-")
    if lowered in ("nan", "inf", "infinity"):
        raise RciError(ErrorCode.NON_FINITE, f"{what}: {text} is not a finite number")
    if _PLAIN_NUMBER.fullmatch(text):
        value = float(text)
    else:
        try:
            value = parse_value(text, dimension, c_rate=False).si
        except UnitError as err:
            raise RciError(ErrorCode.BAD_NUMBER, f"{what}: {err}") from None
    if not math.isfinite(value):
        raise RciError(ErrorCode.NON_FINITE, f"{what}: {text[:20]} is not a finite number")
    return value


def format_value(value: float) -> str:
    """A measured value in a reply or push: six significant digits, ``nan`` if unknown."""
    return f"{value:.6g}" if math.isfinite(value) else "nan"
