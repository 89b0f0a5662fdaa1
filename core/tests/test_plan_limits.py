"""Safety limits in plans: absolute values, values against the battery's registered data, delays,
limits on device signals, the normal form's round trip, and every rejection with file, line and
field."""

from __future__ import annotations

import pytest

from cellbench_core.plan import Limit, PlanError, SafetyLimits, Value, dump_plan, parse_plan
from cellbench_core.plan.model import Signal, SignalLimit
from cellbench_core.plan.show import show_plan
from cellbench_core.units import Dimension


def limits(text: str) -> SafetyLimits:
    return parse_plan(f"name: t\nlimits:\n{text}steps: [Rest for 1 s]\n", "plan.yaml").limits


def test_limit_forms() -> None:
    parsed = limits("  voltage_max: Battery + 50 mV\n"
                    "  voltage_min: battery - 0.1 V for 2 s\n"
                    "  current_max: battery\n"
                    "  temperature_max: 60 °C for 1 min\n"
                    "  temperature_min: -10 °C\n")
    assert parsed == SafetyLimits(
        voltage_max=Limit(Value(0.05), battery=True),
        voltage_min=Limit(Value(-0.1), battery=True, delay_s=2.0),
        current_max=Limit(battery=True),
        temperature_max=Limit(Value(60), delay_s=60.0),
        temperature_min=Limit(Value(-10)),
    )
    assert limits("  current_max: battery + 0.5C FOR 100 ms\n").current_max == Limit(
        Value(0.5, per_capacity=True), battery=True, delay_s=0.1)


def test_limits_round_trip_through_the_normal_form() -> None:
    text = ("name: t\nlimits:\n  voltage_max: battery + 0.05 V for 3 s\n"
            "  voltage_min: battery - 0.1 V\n  current_max: 2C for 1 s\n"
            "  temperature_max: battery\nsteps: [Rest for 1 s]\n")
    parsed = parse_plan(text)
    assert "voltage_max: battery + 0.05 V for 3 s" in dump_plan(parsed)
    assert parse_plan(dump_plan(parsed)).limits == parsed.limits


def test_setpoints_are_checked_against_absolute_limits_only() -> None:
    text = "name: t\nlimits: {{voltage_max: {}}}\nsteps: [Charge at 1 A to 4.4 V for 1 h]\n"
    assert parse_plan(text.format("battery")).steps  # checked when the battery is known
    with pytest.raises(PlanError, match="4.4 V is above limits.voltage_max"):
        parse_plan(text.format("4.3 V for 2 s"))


@pytest.mark.parametrize(("text", "message"), [
    ("voltage_max: battery * 2", "expected 'battery + <offset>' or 'battery - <offset>'"),
    ("voltage_max: battery + -1 V", "write the offset's sign once"),
    ("voltage_max: battery + 1 A", "offset from the battery: expected a voltage"),
    ("voltage_max: batt", "(or 'battery' for the battery's own limit)"),
    ("voltage_max: 4.2 V for 0 s", "after 'for': a duration must be positive"),
    ("voltage_max: 4.2 V for soon", "after 'for': expected a duration"),
    ("voltage_max: 4.2 V for nan s", "not a finite number"),
    ("current_max: 0 A for 1 s", "must be positive: it limits the magnitude of the current"),
    ("temperature_max: [60 °C]", "expected a temperature like '25 °C', 'battery' or"),
    ("temperature_max: -300 °C",
     "-300 °C is outside the physical range of a temperature, -100 °C to 500 °C"),
    ("temperature_min: 600 °C for 1 s", "600 °C is outside the physical range"),
    ("voltage_max: 5 kV", "5000 V is outside the physical range of a voltage, 0 V to 2000 V"),
    ("voltage_min: -1 V", "-1 V is outside the physical range of a voltage"),
    ("current_max: 1e9 A", "1000000000 A is outside the physical range of a current"),
])
def test_bad_limits_name_line_and_field(text: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        limits(f"  {text}\n")
    error = caught.value
    assert (error.file, error.line, error.field) == ("plan.yaml", 3, f"limits.{text.split(':')[0]}")
    assert message in error.message


def test_min_above_max_is_caught_when_both_are_of_one_kind() -> None:
    with pytest.raises(PlanError, match="limits.voltage_min: must be below voltage_max"):
        limits("  voltage_max: battery - 0.1 V\n  voltage_min: battery + 0.1 V\n")
    assert limits("  voltage_max: battery\n  voltage_min: 5 V\n").voltage_min == Limit(Value(5))


def test_limits_on_device_signals_say_which_way_they_bound() -> None:
    parsed = limits("  voltage_max: 4.3 V\n"
                    "  bms.cell_max_v: {max: 4.25 V, for: 1 s}\n"
                    "  bms.temp_max: {max: 55 °C}\n"
                    "  bms.cell_min_v: {min: 2600 mV}\n"
                    "  logger.pressure_kpa: {min: 90, max: 110}\n")
    assert parsed.voltage_max == Limit(Value(4.3))
    assert parsed.signals == (
        SignalLimit(Signal("bms.cell_max_v", Dimension.VOLTAGE), maximum=Value(4.25),
                    delay_s=1.0),
        SignalLimit(Signal("bms.temp_max", Dimension.TEMPERATURE), maximum=Value(55)),
        SignalLimit(Signal("bms.cell_min_v", Dimension.VOLTAGE), minimum=Value(2.6)),
        SignalLimit(Signal("logger.pressure_kpa", Dimension.COUNT), maximum=Value(110),
                    minimum=Value(90)))
    assert [limit.line for limit in parsed.signals] == [4, 5, 6, 7]
    plan = parse_plan("name: t\nlimits:\n  bms.cell_max_v: {max: 4.25 V, for: 1 s}\n"
                      "  logger.pressure_kpa: {min: 90, max: 110}\nsteps: [Rest for 1 s]\n")
    assert parse_plan(dump_plan(plan)).limits == plan.limits
    assert ("limits: bms.cell_max_v max 4.25 V for 1 s, logger.pressure_kpa max 110 min 90"
            in show_plan(plan))


@pytest.mark.parametrize(("text", "line", "field", "message"), [
    ("bms.cell_max_v: 4.25 V", 3, "limits.bms.cell_max_v",
     "expected a mapping like {max: 4.25 V, for: 1 s} or {min: 2.6 V}: a signal's limit says "
     "which way it bounds it"),
    ("bms.cell_max_v: {for: 1 s}", 3, "limits.bms.cell_max_v", "give 'max', 'min' or both"),
    ("bms.cell_max_v: {max: 4 V, above: 1 V}", 3, "limits.bms.cell_max_v.above",
     "unknown key 'above'"),
    ("bms.cell_max_v: {max: 4 V, min: 4.1 V}", 3, "limits.bms.cell_max_v.min",
     "must be below max"),
    ("bms.cell_max_v: {max: 4 V, min: 3000}", 3, "limits.bms.cell_max_v.max",
     "write 'max' and 'min' in one kind of unit (here voltage and count)"),
    ("bms.cell_max_v: {max: =v_max}", 3, "limits.bms.cell_max_v.max",
     "bms.cell_max_v: a signal is limited by a written value (its unit is the device's), not "
     "an expression"),
    ("bms.cell_max_v: {max: 4.2 V, for: soon}", 3, "limits.bms.cell_max_v.for",
     "expected a duration"),
    ("bms.current: {max: 2C}", 3, "limits.bms.current.max", "a C-rate needs a battery"),
    ("BMS.cell: {max: 1}", 3, "limits.BMS.cell", "'BMS.cell' is not a signal name"),
    ("bms.cell_max_v: {max: lots}", 3, "limits.bms.cell_max_v.max", "bms.cell_max_v: "),
])
def test_bad_signal_limits_name_line_and_field(text: str, line: int, field: str,
                                               message: str) -> None:
    with pytest.raises(PlanError) as caught:
        limits(f"  {text}\n")
    error = caught.value
    assert (error.file, error.line, error.field) == ("plan.yaml", line, field)
    assert message in error.message
