"""The SIMSERV protocol of Weiss Technik / Vötsch chamber controllers, as both ends speak it.

A command is its five-digit number, the chamber's index and the command's arguments, joined by
the byte 0xB6 ("¶" in latin-1) and ended by a carriage return. The reply is a return code
(1: done) followed by the values asked for, joined and ended the same way.
"""

from __future__ import annotations

from enum import IntEnum

SEPARATOR = "\xb6"
"""The field separator, byte 0xB6."""
TERMINATOR = "\r"
"""Ends every command and every reply."""
ENCODING = "latin-1"
"""One byte per character, so that 0xB6 passes."""
DEFAULT_PORT = 2049

OK = 1
"""The return code of a command that was accepted and executed."""
CODES: dict[int, str] = {
    OK: "command accepted and executed",
    -5: "command number unknown",
    -6: "too few or incorrect parameters",
    -8: "data could not be read",
}
"""What the controller's return codes mean, where known."""

TEMPERATURE = 1
"""The controlled variable (Regelgröße) of temperature."""
HUMIDITY = 2
"""The controlled variable of relative humidity, on chambers that control it."""
MANUAL_OPERATION = 1
"""The digital channel that starts (1) and stops (0) manual operation."""

STATUS_RUNNING = 2
"""Bit of the status word: conditioning (status 1 is idle, 3 is running)."""
STATUS_WARNING = 4
"""Bit of the status word: a warning message is active."""
STATUS_ALARM = 8
"""Bit of the status word: an alarm message is active."""
MESSAGE_ALARM = 1
"""Message type of an alarm (2 is a warning, 4 an information)."""


class Command(IntEnum):
    """The command numbers this plugin uses."""

    STATUS = 10012
    SET_SETPOINT = 11001
    READ_SETPOINT = 11002
    READ_ACTUAL = 11004
    SET_DIGITAL_OUTPUT = 14001
    MESSAGE_COUNT = 17002
    MESSAGE_TYPE = 17005
    MESSAGE_TEXT = 17007
    MESSAGE_STATUS = 17009

    @property
    def describe(self) -> str:
        """``11001 (set setpoint)``: the number and what it does, for errors."""
        return f"{self.value} ({self.name.lower().replace('_', ' ')})"


def encode(command: int, chamber: int, *arguments: str) -> str:
    """The command line without its terminator."""
    return SEPARATOR.join([str(command), str(chamber), *arguments])


def format_number(value: float) -> str:
    """A setpoint as the controller reads it: decimal point, two decimals."""
    return f"{value:.2f}"


def describe_code(code: int) -> str:
    """``-6 (too few or incorrect parameters)``, or the bare code when its meaning is unknown."""
    meaning = CODES.get(code)
    return f"{code} ({meaning})" if meaning else str(code)
