"""Numbers with units, as people write them in plans and configuration files.

A value is a number (ASCII digits, optional sign, decimals and exponent) followed by a unit, with
or without a space: ``"4.2 V"``, ``"-2A"``, ``"100 ms"``, ``"1e3 mAh"``. Results are SI as
everywhere in cellbench: V, A, W, Ω, s, Ah, Wh, °C. Accepted units:

=============  ===============================================================
voltage        ``V`` ``mV`` ``kV``
current        ``A`` ``mA``; C-rates ``1C``, ``0.5 C``, ``C/20`` (amperes per Ah)
power          ``W`` ``mW`` ``kW``
resistance     ``Ohm`` ``ohm`` ``Ω`` ``mOhm`` ``mΩ``
duration       ``ms`` ``s`` ``sec`` ``second(s)`` ``min`` ``minute(s)`` ``h`` ``hr`` ``hour(s)``
               ``d`` ``day(s)``
charge         ``Ah`` ``mAh``
energy         ``Wh`` ``mWh`` ``kWh``
temperature    ``°C`` ``degC``
voltage rate   ``V/s`` ``mV/s`` ``V/min`` ``mV/min`` ``V/h`` ``mV/h``
temp. rate     ``K/s`` ``K/min`` ``K/h`` (also written ``°C/min`` etc.)
humidity       ``%`` (relative humidity, in percent)
count          a bare number, where a count is expected (``10``)
=============  ===============================================================

Unit symbols are case-sensitive (``mA`` is not ``MA``); unit words (``ohm``, ``sec``, ``minute``,
``hours``...) are not. NaN, infinities, missing and unknown units are rejected with a
:class:`UnitError` that says what was expected.
"""

from __future__ import annotations

import decimal
import difflib
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Value:
    """A number in SI units, or (``per_capacity``) a C-rate: amperes per ampere-hour."""

    si: float
    per_capacity: bool = False

    def resolve(self, capacity_ah: float | None) -> float:
        """The value in SI units, given the battery capacity for C-rates."""
        if not self.per_capacity:
            return self.si
        if capacity_ah is None:
            raise ValueError("a C-rate needs the battery's capacity")
        return self.si * capacity_ah


class UnitError(ValueError):
    """A text is not a value of the expected kind; the message says what was expected."""


class Dimension(StrEnum):
    """The physical kind of a value."""

    VOLTAGE = "voltage"
    CURRENT = "current"
    POWER = "power"
    RESISTANCE = "resistance"
    TIME = "duration"
    CHARGE = "charge"
    ENERGY = "energy"
    TEMPERATURE = "temperature"
    VOLTAGE_RATE = "voltage rate"
    TEMPERATURE_RATE = "temperature rate"
    HUMIDITY = "relative humidity"  # in percent
    COUNT = "count"  # a bare number without unit
    # Amperes per ampere-hour: what a current over a charge gives in a plan expression. A C-rate
    # value is parsed as a CURRENT with ``per_capacity``; this names it where it stands alone.
    C_RATE = "C-rate"


_DESCRIPTION = {
    Dimension.VOLTAGE: ("a voltage", "'4.2 V'"),
    Dimension.CURRENT: ("a current", "'2 A' or '1C'"),
    Dimension.POWER: ("a power", "'5 W'"),
    Dimension.RESISTANCE: ("a resistance", "'4 Ohm'"),
    Dimension.TIME: ("a duration", "'10 min'"),
    Dimension.CHARGE: ("a charge", "'1.2 Ah'"),
    Dimension.ENERGY: ("an energy", "'5 Wh'"),
    Dimension.TEMPERATURE: ("a temperature", "'25 °C'"),
    Dimension.VOLTAGE_RATE: ("a voltage rate", "'1 mV/min'"),
    Dimension.TEMPERATURE_RATE: ("a temperature rate", "'1 K/min'"),
    Dimension.HUMIDITY: ("a relative humidity", "'50 %'"),
    Dimension.COUNT: ("a number", "'10'"),
    Dimension.C_RATE: ("a C-rate", "'0.5C'"),
}

# The unit each dimension is written in when a value is formatted (and its SI unit).
_SI_SYMBOL = {
    Dimension.VOLTAGE: "V",
    Dimension.CURRENT: "A",
    Dimension.POWER: "W",
    Dimension.RESISTANCE: "Ohm",
    Dimension.TIME: "s",
    Dimension.CHARGE: "Ah",
    Dimension.ENERGY: "Wh",
    Dimension.TEMPERATURE: "°C",
    Dimension.VOLTAGE_RATE: "V/s",
    Dimension.TEMPERATURE_RATE: "K/s",
    Dimension.HUMIDITY: "%",
    Dimension.COUNT: "",
    Dimension.C_RATE: "C",
}
C_RATE = "C"

# Scale factors are (multiplier, divisor), applied in decimal to the number as written, so that
# "4.2 mV" is the float nearest 0.0042 (in binary, 4.2 / 1000 is 0.004200000000000001).
_Unit = tuple[Dimension, int, int]
_SYMBOLS: dict[str, _Unit] = {
    "V": (Dimension.VOLTAGE, 1, 1),
    "mV": (Dimension.VOLTAGE, 1, 1000),
    "kV": (Dimension.VOLTAGE, 1000, 1),
    "A": (Dimension.CURRENT, 1, 1),
    "mA": (Dimension.CURRENT, 1, 1000),
    "W": (Dimension.POWER, 1, 1),
    "mW": (Dimension.POWER, 1, 1000),
    "kW": (Dimension.POWER, 1000, 1),
    "\u03a9": (Dimension.RESISTANCE, 1, 1),  # GREEK CAPITAL LETTER OMEGA
    "\u2126": (Dimension.RESISTANCE, 1, 1),  # OHM SIGN (editors may turn it into the omega)
    "mOhm": (Dimension.RESISTANCE, 1, 1000),
    "mohm": (Dimension.RESISTANCE, 1, 1000),
    "m\u03a9": (Dimension.RESISTANCE, 1, 1000),
    "m\u2126": (Dimension.RESISTANCE, 1, 1000),
    "ms": (Dimension.TIME, 1, 1000),
    "s": (Dimension.TIME, 1, 1),
    "h": (Dimension.TIME, 3600, 1),
    "d": (Dimension.TIME, 86400, 1),
    "Ah": (Dimension.CHARGE, 1, 1),
    "mAh": (Dimension.CHARGE, 1, 1000),
    "Wh": (Dimension.ENERGY, 1, 1),
    "mWh": (Dimension.ENERGY, 1, 1000),
    "kWh": (Dimension.ENERGY, 1000, 1),
    "°C": (Dimension.TEMPERATURE, 1, 1),
    "℃": (Dimension.TEMPERATURE, 1, 1),
    "degC": (Dimension.TEMPERATURE, 1, 1),
    "%": (Dimension.HUMIDITY, 1, 1),
    **{
        f"{prefix}V/{per}": (Dimension.VOLTAGE_RATE, 1, scale * seconds)
        for prefix, scale in (("", 1), ("m", 1000))
        for per, seconds in (("s", 1), ("min", 60), ("h", 3600))
    },
    **{
        f"{kelvin}/{per}": (Dimension.TEMPERATURE_RATE, 1, seconds)
        for kelvin in ("K", "°C", "degC")
        for per, seconds in (("s", 1), ("min", 60), ("h", 3600))
    },
}
# Words carry no SI prefix, so matching them case-insensitively cannot turn milli into mega.
_WORDS: dict[str, _Unit] = {
    "ohm": (Dimension.RESISTANCE, 1, 1),
    "ohms": (Dimension.RESISTANCE, 1, 1),
    **dict.fromkeys(("sec", "secs", "second", "seconds"), (Dimension.TIME, 1, 1)),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), (Dimension.TIME, 60, 1)),
    **dict.fromkeys(("hr", "hrs", "hour", "hours"), (Dimension.TIME, 3600, 1)),
    **dict.fromkeys(("day", "days"), (Dimension.TIME, 86400, 1)),
}

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# re.ASCII: without it \d and \s also match non-ASCII digits and spaces ("４.2 V").
_VALUE = re.compile(rf"\s*(?P<number>[+-]?{_NUMBER})\s*(?P<unit>.*?)\s*", re.ASCII | re.DOTALL)
_C_FRACTION = re.compile(rf"\s*(?P<sign>[+-]?)C\s*/\s*(?P<divisor>{_NUMBER})\s*", re.ASCII)
_NOT_FINITE = re.compile(r"\s*[+-]?(?:nan|inf)", re.ASCII | re.IGNORECASE)
_DECIMAL = decimal.Context(prec=40, traps=[])  # overflow gives Infinity, rejected as not finite
_SHOWN = 40  # characters of a bad input quoted in a message


def describe(dimension: Dimension) -> str:
    """``"a voltage like '4.2 V'"``: how error messages name what they expected."""
    noun, example = _DESCRIPTION[dimension]
    return f"{noun} like {example}"


def noun(dimension: Dimension) -> str:
    """``"a voltage"``: the dimension as error messages name it."""
    return _DESCRIPTION[dimension][0]


_NUMBER_AT = re.compile(_NUMBER, re.ASCII)
_C_FRACTION_AT = re.compile(rf"C\s*/\s*{_NUMBER}", re.ASCII)
# Longest first, so that "2 hours" is not read as "2 h" followed by "ours".
_SPELLINGS = sorted({*_SYMBOLS, *_WORDS, C_RATE}, key=len, reverse=True)
_NAME_CHARACTER = re.compile(r"\w", re.ASCII)


def literal_end(text: str, start: int) -> int:
    """Where the value literal at ``start`` of ``text`` ends (a number with an optional unit,
    or a C-rate ``C/20``), or ``start`` if none begins there; :func:`parse_quantity` reads it.

    A unit that ends in a letter must not run on into a name: ``2 hours`` is a duration, while
    in ``2 hq`` only the ``2`` is a literal.
    """
    fraction = _C_FRACTION_AT.match(text, start)
    if fraction:
        return fraction.end()
    number = _NUMBER_AT.match(text, start)
    if number is None:
        return start
    at = number.end()
    while at < len(text) and text[at] in " \t":
        at += 1
    for spelling in _SPELLINGS:
        found = text[at: at + len(spelling)]
        if found != spelling and not (spelling in _WORDS and found.casefold() == spelling):
            continue
        end = at + len(spelling)
        if not (_NAME_CHARACTER.match(spelling[-1]) and _NAME_CHARACTER.match(text, end)):
            return end
    return number.end()


def unit_spellings() -> frozenset[str]:
    """Every unit as it may be written (unit words in lower case)."""
    return frozenset(_SPELLINGS)


def quote(text: str) -> str:
    """``text`` quoted for an error message, shortened if long."""
    shown = text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"
    return repr(shown)


def parse_quantity(
    text: str, allowed: Collection[Dimension] | None = None
) -> tuple[Dimension, Value]:
    """Parse a number with a unit into its dimension and SI value.

    A C-rate is a :attr:`Dimension.CURRENT` with ``per_capacity`` set. ``allowed`` restricts the
    dimensions accepted; by default any is.
    """
    expected = _expected(allowed)
    if allowed is not None and Dimension.COUNT in allowed:
        bare = _VALUE.fullmatch(text)
        if bare is not None and not bare["unit"] and math.isfinite(float(bare["number"])):
            return Dimension.COUNT, Value(float(bare["number"]))
    fraction = _C_FRACTION.fullmatch(text)
    if fraction:
        divisor = decimal.Decimal(fraction["divisor"])
        magnitude = float(_DECIMAL.divide(1, divisor)) if divisor else 0.0
        if not (magnitude > 0 and math.isfinite(magnitude)):
            raise UnitError(f"a C-rate divides by a positive number, got {quote(text)}")
        dimension = Dimension.CURRENT
        value = Value(-magnitude if fraction["sign"] == "-" else magnitude, per_capacity=True)
    else:
        dimension, value = _number_with_unit(text, expected)
    if value.per_capacity and allowed is not None and Dimension.C_RATE in allowed:
        dimension = Dimension.C_RATE
    if allowed is not None and dimension not in allowed:
        what = "a C-rate" if value.per_capacity else _DESCRIPTION[dimension][0]
        raise UnitError(f"expected {expected}, got {quote(text)} ({what})")
    return dimension, value


def parse_value(text: str, dimension: Dimension, *, c_rate: bool = True) -> Value:
    """Parse a number with a unit of ``dimension`` into its SI value.

    C-rates are accepted for currents unless ``c_rate`` is false.
    """
    _, value = parse_quantity(text, (dimension,))
    if value.per_capacity and not c_rate:
        raise UnitError(f"expected a current in A like '2 A', got the C-rate {quote(text)}")
    return value


#: The range a battery's quantities and a plan's limits may lie in, SI units, ends included:
#: outside it a value is a slip (a sign, a unit, an exponent), never a battery
#: (docs/plans.md, docs/station.md).
PHYSICAL_RANGES: dict[Dimension, tuple[float, float]] = {
    Dimension.VOLTAGE: (0.0, 2000.0),
    Dimension.CURRENT: (0.0, 10_000.0),  # a magnitude
    Dimension.CHARGE: (1e-6, 100_000.0),
    Dimension.TEMPERATURE: (-100.0, 500.0),  # well above absolute zero
}


def check_physical(si: float, dimension: Dimension) -> float:
    """``si``, if it lies in the physical range of ``dimension`` (if it has one); else a
    UnitError saying the range."""
    low, high = PHYSICAL_RANGES.get(dimension, (-math.inf, math.inf))
    if not low <= si <= high:
        low_text, high_text, value_text = (format_value(Value(float(v)), dimension)
                                           for v in (low, high, si))
        raise UnitError(f"{value_text} is outside the physical range of "
                        f"{noun(dimension)}, {low_text} to {high_text}")
    return si


#: The shortest duration a person may write (a sample period, a step's time, a timeout): less
#: is no period a station can keep, and a sample period below it would spin the station.
MIN_DURATION_S = 1e-3


def parse_duration(text: str) -> float:
    """Parse a duration of at least :data:`MIN_DURATION_S` such as ``"1 s"``, ``"100 ms"`` or
    ``"2 hours"`` into seconds."""
    seconds = parse_value(text, Dimension.TIME).si
    if seconds <= 0:
        raise UnitError(f"a duration must be positive, got {quote(text)}")
    if seconds < MIN_DURATION_S:
        raise UnitError(f"a duration must be at least 1 ms, got {quote(text)}")
    return seconds


def format_number(number: float) -> str:
    """The shortest text that parses back to exactly ``number`` (no trailing ``.0``)."""
    if number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return repr(number)


def format_value(value: Value, dimension: Dimension) -> str:
    """``value`` written in the SI unit of ``dimension`` (or as a C-rate), so that
    :func:`parse_value` reads it back exactly: ``"4.2 V"``, ``"-2 A"``, ``"0.05 C"``."""
    unit = C_RATE if value.per_capacity else _SI_SYMBOL[dimension]
    return f"{format_number(value.si)} {unit}" if unit else format_number(value.si)


def _expected(allowed: Collection[Dimension] | None) -> str:
    if allowed is None:
        return "a number with a unit like '4.2 V'"
    return " or ".join(describe(d) for d in allowed)


def _number_with_unit(text: str, expected: str) -> tuple[Dimension, Value]:
    if not text.strip():
        raise UnitError(f"expected {expected}, got nothing")
    match = _VALUE.fullmatch(text)
    if match is None:
        if _NOT_FINITE.match(text):
            raise UnitError(f"{quote(text)} is not a finite number; expected {expected}")
        raise UnitError(f"expected {expected}, got {quote(text)}")
    if not math.isfinite(float(match["number"])):
        raise UnitError(f"{quote(text)} is not a finite number; expected {expected}")
    symbol = match["unit"]
    if not symbol:
        raise UnitError(f"missing unit: expected {expected}, got {quote(text)}")
    if symbol == C_RATE:
        return Dimension.CURRENT, Value(float(match["number"]), per_capacity=True)
    unit = _SYMBOLS.get(symbol) or _WORDS.get(symbol.casefold())
    if unit is None:
        raise UnitError(f"unknown unit {quote(symbol)}{_suggest(symbol)}; expected {expected}")
    dimension, multiplier, divisor = unit
    si = _scale(match["number"], multiplier, divisor)
    if not math.isfinite(si):
        raise UnitError(f"{quote(text)} is too large; expected {expected}")
    return dimension, Value(si)


def _scale(number: str, multiplier: int, divisor: int) -> float:
    """``number * multiplier / divisor`` from the written digits, rounded once."""
    return float(_DECIMAL.divide(_DECIMAL.multiply(decimal.Decimal(number), multiplier), divisor))


def _suggest(symbol: str) -> str:
    if len(symbol) > _SHOWN:
        return ""
    # Compared case-insensitively so that "v" suggests "V"; the suggestion keeps its case.
    spellings = {unit.casefold(): unit for unit in (*_SYMBOLS, *_WORDS, C_RATE)}
    close = difflib.get_close_matches(symbol.casefold(), spellings, n=1)
    return f" (did you mean {spellings[close[0]]!r}?)" if close else ""
