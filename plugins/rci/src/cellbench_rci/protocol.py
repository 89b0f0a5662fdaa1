"""The rci wire format of replies, shared by server and client: the error codes, reply lines
(``OK [payload]`` / ``ERR <code> <message>``) and their parsing. Pushed lines start with ``*``
and are no replies. docs/rci.md describes the protocol for people."""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass


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
    """The reply line for success with ``payload``."""
    return f"OK {payload}\n".encode("ascii") if payload else b"OK\n"


def err_line(code: ErrorCode, message: str) -> bytes:
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
