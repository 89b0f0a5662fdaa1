"""The unit parser: every accepted spelling, every rejection and its message, exact round trips."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellbench_core.units import (
    Dimension,
    UnitError,
    Value,
    format_value,
    parse_duration,
    parse_quantity,
    parse_value,
)

D = Dimension


@pytest.mark.parametrize(
    ("text", "dimension", "si"),
    [
        ("4.2 V", D.VOLTAGE, 4.2),
        ("4.2V", D.VOLTAGE, 4.2),
        ("  4.2   V ", D.VOLTAGE, 4.2),
        ("4200 mV", D.VOLTAGE, 4.2),
        ("4.2 mV", D.VOLTAGE, 0.0042),
        ("1 kV", D.VOLTAGE, 1000.0),
        (".5 V", D.VOLTAGE, 0.5),
        ("3. V", D.VOLTAGE, 3.0),
        ("-2 A", D.CURRENT, -2.0),
        ("+1.5 mA", D.CURRENT, 0.0015),
        ("1e3 mA", D.CURRENT, 1.0),
        ("2.5E-1 A", D.CURRENT, 0.25),
        ("5 W", D.POWER, 5.0),
        ("500 mW", D.POWER, 0.5),
        ("2 kW", D.POWER, 2000.0),
        ("4 Ohm", D.RESISTANCE, 4.0),
        ("4 ohm", D.RESISTANCE, 4.0),
        ("4 ohms", D.RESISTANCE, 4.0),
        ("4 \u03a9", D.RESISTANCE, 4.0),
        ("4 \u2126", D.RESISTANCE, 4.0),
        ("50 mOhm", D.RESISTANCE, 0.05),
        ("50 m\u03a9", D.RESISTANCE, 0.05),
        ("1 s", D.TIME, 1.0),
        ("100 ms", D.TIME, 0.1),
        ("10 sec", D.TIME, 10.0),
        ("1 second", D.TIME, 1.0),
        ("2 seconds", D.TIME, 2.0),
        ("10 min", D.TIME, 600.0),
        ("1 minute", D.TIME, 60.0),
        ("30 Minutes", D.TIME, 1800.0),
        ("1 h", D.TIME, 3600.0),
        ("2 hr", D.TIME, 7200.0),
        ("1 hour", D.TIME, 3600.0),
        ("1.5 HOURS", D.TIME, 5400.0),
        ("1.2 Ah", D.CHARGE, 1.2),
        ("1200 mAh", D.CHARGE, 1.2),
        ("5 Wh", D.ENERGY, 5.0),
        ("500 mWh", D.ENERGY, 0.5),
        ("1 kWh", D.ENERGY, 1000.0),
        ("25 °C", D.TEMPERATURE, 25.0),
        ("-20 degC", D.TEMPERATURE, -20.0),
        ("60 ℃", D.TEMPERATURE, 60.0),
    ],
)
def test_values_in_si(text: str, dimension: Dimension, si: float) -> None:
    assert parse_value(text, dimension) == Value(si)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("1C", 1.0),
        ("2C", 2.0),
        ("0.5 C", 0.5),
        ("C/20", 0.05),
        ("C / 2", 0.5),
        ("-1 C", -1.0),
        ("-C/20", -0.05),
        ("C/2.5", 0.4),
    ],
)
def test_c_rates_are_currents_per_capacity(text: str, rate: float) -> None:
    assert parse_value(text, D.CURRENT) == Value(rate, per_capacity=True)
    assert parse_quantity(text) == (D.CURRENT, Value(rate, per_capacity=True))


@pytest.mark.parametrize(
    ("text", "dimension", "message"),
    [
        ("4.2 A", D.VOLTAGE, "expected a voltage like '4.2 V', got '4.2 A' (a current)"),
        ("1C", D.VOLTAGE, "expected a voltage like '4.2 V', got '1C' (a C-rate)"),
        ("60 C", D.TEMPERATURE, "expected a temperature like '25 °C', got '60 C' (a C-rate)"),
        ("4.2", D.VOLTAGE, "missing unit: expected a voltage like '4.2 V', got '4.2'"),
        ("", D.VOLTAGE, "expected a voltage like '4.2 V', got nothing"),
        ("   ", D.CURRENT, "expected a current like '2 A' or '1C', got nothing"),
        ("V", D.VOLTAGE, "expected a voltage like '4.2 V', got 'V'"),
        ("four volts", D.VOLTAGE, "expected a voltage like '4.2 V', got 'four volts'"),
        ("\uff14.2 V", D.VOLTAGE, "expected a voltage like '4.2 V', got '４.2 V'"),  # fullwidth 4
        ("4.\u0662 V", D.VOLTAGE, "unknown unit '٢ V'"),  # an Arabic-Indic 2
        ("nan V", D.VOLTAGE, "'nan V' is not a finite number"),
        ("NaN", D.VOLTAGE, "'NaN' is not a finite number"),
        ("inf V", D.VOLTAGE, "'inf V' is not a finite number"),
        ("-Infinity A", D.CURRENT, "is not a finite number"),
        ("1e999 V", D.VOLTAGE, "'1e999 V' is not a finite number"),
        ("1e308 kWh", D.ENERGY, "'1e308 kWh' is too large"),
        ("4.2 Vx", D.VOLTAGE, "unknown unit 'Vx' (did you mean 'V'?); expected a voltage"),
        ("4.2 v", D.VOLTAGE, "unknown unit 'v' (did you mean 'V'?)"),
        ("1 MW", D.POWER, "unknown unit 'MW'"),
        ("1 c", D.CURRENT, "unknown unit 'c' (did you mean 'C'?)"),
        ("C/0", D.CURRENT, "a C-rate divides by a positive number, got 'C/0'"),
        ("C/1e-400", D.CURRENT, "a C-rate divides by a positive number"),
        ("C/-2", D.CURRENT, "expected a current like '2 A' or '1C', got 'C/-2'"),
        ("4.2 V\nx", D.VOLTAGE, "unknown unit"),
    ],
)
def test_rejections_say_what_was_expected(text: str, dimension: Dimension, message: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_value(text, dimension)
    assert message in str(caught.value)


def test_long_inputs_are_shortened_in_messages() -> None:
    with pytest.raises(UnitError) as caught:
        parse_value("4.2 " + "V" * 1000, D.VOLTAGE)
    assert len(str(caught.value)) < 200


def test_c_rate_can_be_refused() -> None:
    assert parse_value("2 A", D.CURRENT, c_rate=False) == Value(2.0)
    message = "expected a current in A like '2 A', got the C-rate '1C'"
    with pytest.raises(UnitError, match=re.escape(message)):
        parse_value("1C", D.CURRENT, c_rate=False)


def test_quantity_of_any_or_some_dimensions() -> None:
    assert parse_quantity("5 W") == (D.POWER, Value(5.0))
    assert parse_quantity("4 Ohm", (D.POWER, D.RESISTANCE)) == (D.RESISTANCE, Value(4.0))
    with pytest.raises(
        UnitError,
        match=re.escape(
            "expected a power like '5 W' or a resistance like '4 Ohm', got '4 V' (a voltage)"
        ),
    ):
        parse_quantity("4 V", (D.POWER, D.RESISTANCE))
    message = "expected a number with a unit like '4.2 V', got 'x'"
    with pytest.raises(UnitError, match=re.escape(message)):
        parse_quantity("x")


def test_durations_are_positive_seconds() -> None:
    assert parse_duration("1 s") == 1.0
    assert parse_duration("100 ms") == 0.1
    assert parse_duration("2 hours") == 7200.0
    for text in ("0 s", "-1 min"):
        with pytest.raises(UnitError, match="a duration must be positive"):
            parse_duration(text)
    with pytest.raises(UnitError, match=re.escape("expected a duration like '10 min', got '1 V'")):
        parse_duration("1 V")
    assert parse_duration("1 ms") == 0.001
    for text in ("1e-300 s", "0.9 ms", "0.0001 s"):  # no station keeps such a period: it spins
        with pytest.raises(UnitError, match="a duration must be at least 1 ms"):
            parse_duration(text)


@pytest.mark.parametrize(
    ("value", "dimension", "text"),
    [
        (Value(4.2), D.VOLTAGE, "4.2 V"),
        (Value(-2.0), D.CURRENT, "-2 A"),
        (Value(1.0, per_capacity=True), D.CURRENT, "1 C"),
        (Value(0.05, per_capacity=True), D.CURRENT, "0.05 C"),
        (Value(3600.0), D.TIME, "3600 s"),
        (Value(4.0), D.RESISTANCE, "4 Ohm"),
        (Value(60.0), D.TEMPERATURE, "60 °C"),
        (Value(1e-7), D.CHARGE, "1e-07 Ah"),
        (Value(1e20), D.ENERGY, "1e+20 Wh"),
    ],
)
def test_format_in_si_units(value: Value, dimension: Dimension, text: str) -> None:
    assert format_value(value, dimension) == text


@given(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(Dimension),
    st.booleans(),
)
def test_format_parses_back_exactly(number: float, dimension: Dimension, rate: bool) -> None:
    value = Value(number, per_capacity=(rate and dimension is D.CURRENT) or dimension is D.C_RATE)
    parsed = parse_value(format_value(value, dimension), dimension)
    assert parsed == value
    assert math.copysign(1, parsed.si) == math.copysign(1, number) or number == 0


@given(st.text(max_size=30), st.sampled_from(Dimension))
def test_any_text_gives_a_value_or_a_unit_error(text: str, dimension: Dimension) -> None:
    try:
        value = parse_value(text, dimension)
    except UnitError:
        return
    assert math.isfinite(value.si)
