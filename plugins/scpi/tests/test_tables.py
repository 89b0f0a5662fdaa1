"""Command sets, resource strings and settings: checked where they enter."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cellbench_scpi.commands import (
    ACTIONS,
    COMMAND_SETS,
    KEITHLEY_2450,
    CommandSet,
    Kind,
    identify,
    parse_numbers,
)
from cellbench_scpi.resources import parse_resource
from cellbench_scpi.settings import PairSettings, SmuSettings


@pytest.mark.parametrize("name", list(COMMAND_SETS))
def test_every_family_identifies_itself_and_can_switch_off_measure_and_report_errors(
        name: str) -> None:
    family = COMMAND_SETS[name]
    assert identify(family.example_idn, family.kind) is family
    for action in ("output_on", "output_off", "measure", "error"):
        assert family.can(action), action
    assert set(family.commands) <= set(ACTIONS)
    assert family.ranges or family.can("nominal_voltage")


def test_identify_without_a_kind_only_names_known_models() -> None:
    assert identify(COMMAND_SETS["scpi-load"].example_idn) is None
    assert identify("KEITHLEY INSTRUMENTS INC.,MODEL 2410,1,C") is COMMAND_SETS["keithley-2400"]


def test_the_2450_takes_protection_as_a_named_level() -> None:
    assert KEITHLEY_2450.command("over_voltage", 4.25) == ":SOUR:VOLT:PROT PROT5"
    assert KEITHLEY_2450.command("over_voltage", 500) == ":SOUR:VOLT:PROT NONE"
    assert KEITHLEY_2450.command("current", 1e-5) == ":SOUR:CURR 1e-05"


def test_a_table_with_an_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match=r"command set acme: unknown actions \['beep'\]"):
        CommandSet("acme", Kind.SUPPLY, "ACME", r"ACME", {"beep": "BEEP"})


def test_numbers_in_replies() -> None:
    assert parse_numbers("12.00 V, -1.50 A, -18.0 W") == [12.0, -1.5, -18.0]
    assert parse_numbers("+3.7E+00;1e-3") == [3.7, 0.001]
    with pytest.raises(ValueError, match="'OVER' is not a number"):
        parse_numbers("3.7,OVER")


@pytest.mark.parametrize(("text", "bus", "address"), [
    ("TCPIP::10.0.0.5::5025::SOCKET", "tcpip", "10.0.0.5:5025"),
    ("TCPIP0::lab-smu.local::5025::SOCKET", "tcpip", "lab-smu.local:5025"),
    ("ASRL/dev/ttyUSB0::INSTR", "serial", "/dev/ttyUSB0"),
    ("ASRLCOM3::INSTR", "serial", "COM3"),
    ("USB0::0x2184::0x0044::GEQ123456::INSTR", "usb", "0x2184:0x0044/GEQ123456"),
])
def test_resource_strings(text: str, bus: str, address: str) -> None:
    resource = parse_resource(text)
    assert (resource.bus, resource.address) == (bus, address)


@pytest.mark.parametrize(("settings", "message"), [
    ({"resource": "10.0.0.5:5025"}, "resource '10.0.0.5:5025' is not one of the forms"),
    ({"resource": "TCPIP::10.0.0.5::99999::SOCKET"}, "port 99999 is not 1..65535"),
    ({"resource": "TCPIP::10.0.0.5::5025::INSTR"}, "is not one of the forms"),
    ({"command_set": "keithley-9999"}, "unknown command set 'keithley-9999'"),
    ({"command_set": "ea-psb"}, "scpi-smu: command set 'ea-psb' is for a bidirectional, not a "
                                "smu"),
    ({"timeout_s": 0}, "greater than 0"),
    ({"protection_margin_v": float("nan")}, "finite number"),
    ({"temperature_query": "MEAS:TEMP"}, "String should match pattern"),
    ({"tempreature_query": "MEAS:TEMP?"}, "Extra inputs are not permitted"),
])
def test_bad_smu_settings_name_the_field(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        SmuSettings.model_validate(settings)
    assert message in str(refused.value)
    assert next(iter(settings)) in str(refused.value)


@pytest.mark.parametrize(("settings", "message"), [
    ({"supply": None, "load": None}, "scpi-pair needs a supply, a load or both"),
    ({"supply": {"resource": "TCPIP::h::1::SOCKET"}, "load": {"resource": "TCPIP::h::1::SOCKET"}},
     "supply and load are the same resource"),
    ({"load": {"command_set": "scpi-supply"}}, "load: command set 'scpi-supply' is for a supply"),
])
def test_bad_pair_settings(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PairSettings.model_validate(settings)
