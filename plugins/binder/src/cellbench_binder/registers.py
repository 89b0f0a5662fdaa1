"""The Binder MB1 and MB2 register maps, and floats in two registers (low word first).

Sources: the addresses marked confirmed are those an open-source driver of a Binder MKFT 115
uses on MB1 and MB2 controllers; the door and alarm registers could not be confirmed from any
public source and are this plugin's assumption (docs/chamber-binder.md says so per register).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass


class Mode(enum.Enum):
    """What the controller is doing."""

    IDLE = "idle"  # basic state: not conditioning
    MANUAL = "manual"  # holding the manual setpoints
    PROGRAM = "program"  # running a stored program


@dataclass(frozen=True)
class RegisterMap:
    """Holding-register addresses of one controller family."""

    family: str
    temperature: int  # actual value, float
    humidity: int  # actual value, float
    setpoint_temperature: int  # read back, float
    setpoint_humidity: int  # read back, float
    write_temperature: int  # manual setpoint, float
    write_humidity: int  # manual setpoint, float
    mode: int  # one word
    mode_write: int  # one word
    door: int  # one word, 0 closed (assumed address)
    alarm: int  # one word, 0 no alarm, else the alarm code (assumed address)

    def name_of(self, address: int) -> str:
        """What the register at ``address`` holds, for error messages."""
        for field, value in vars(self).items():
            if value == address and field != "family":
                return field.replace("_", " ")
        return "unknown register"


# MB1 mode word: bit flags.
MB1_BASIC = 0x1000
MB1_MANUAL = 0x0800
MB1_PROGRAM = 0x0400
# MB2 operation contacts: bit 1 is "idle mode".
MB2_IDLE = 0x0002

MB1 = RegisterMap(
    family="MB1",
    temperature=0x11A9,
    humidity=0x11CD,
    setpoint_temperature=0x1077,
    setpoint_humidity=0x1079,
    write_temperature=0x1077,
    write_humidity=0x1079,
    mode=0x1A22,
    mode_write=0x1A22,
    door=0x1A30,
    alarm=0x1A31,
)

MB2 = RegisterMap(
    family="MB2",
    temperature=0x1004,
    humidity=0x100A,
    setpoint_temperature=0x10B2,
    setpoint_humidity=0x10B4,
    write_temperature=0x114C,
    write_humidity=0x114E,
    mode=0x1292,
    mode_write=0x1158,
    door=0x1300,
    alarm=0x1301,
)

MAPS = {"MB1": MB1, "MB2": MB2}


def decode_mode(family: str, word: int) -> Mode:
    """The mode a family's mode word says."""
    if family == "MB1":
        if word & MB1_PROGRAM:
            return Mode.PROGRAM
        return Mode.MANUAL if word & MB1_MANUAL else Mode.IDLE
    return Mode.IDLE if word & MB2_IDLE else Mode.MANUAL


def encode_mode(family: str, running: bool, word: int) -> int:
    """The mode word that starts (manual mode) or stops (idle) a chamber whose word is ``word``."""
    if family == "MB1":
        return MB1_MANUAL if running else MB1_BASIC
    return word & ~MB2_IDLE if running else word | MB2_IDLE


def float_to_words(value: float) -> list[int]:
    """An IEEE-754 single in two registers, low word first."""
    (bits,) = struct.unpack(">I", struct.pack(">f", value))
    return [bits & 0xFFFF, bits >> 16]


def words_to_float(words: list[int]) -> float:
    """The float in two registers, low word first."""
    low, high = words
    (value,) = struct.unpack(">f", struct.pack(">I", (high << 16) | low))
    return float(value)
