"""The emulated logger on its own: the SCPI it accepts and the errors it queues."""

from __future__ import annotations

import math

import pytest

from cellbench_scpi_logger.emulator import LoggerEmulator
from cellbench_scpi_logger.scpi import channel_list, configuration, parse_channel_list
from cellbench_scpi_logger.settings import LoggerChannel


def test_long_and_short_forms_configure_a_scan() -> None:
    emulator = LoggerEmulator(clock=lambda: 0.0)
    emulator.respond("CONFigure:TEMPerature TCouple,K,(@101:103)")
    emulator.respond("conf:volt:dc 10,(@201)")
    emulator.respond("ROUTe:SCAN (@101:103,201)")
    emulator.respond("FORMat:READing:UNIT ON")
    reply = emulator.respond("READ?")
    assert reply is not None
    value, unit = reply.split(",")[0].split(" ")
    assert unit == "C"
    # 25 °C, plus 0.5 per slot and 0.1 per channel, plus the drift at time 0
    assert float(value) == pytest.approx(25.6 + 0.2 * math.sin(1))
    assert reply.split(",")[3].endswith(" VDC")
    assert emulator.respond("SYST:ERR?") == '+0,"No error"'


def test_errors_are_queued_in_order_and_cleared() -> None:
    emulator = LoggerEmulator(cards={1: 20})
    assert emulator.respond("BOGUS") is None
    emulator.respond("ROUT:SCAN (@121)")
    emulator.respond("READ?")
    assert emulator.respond("SYST:ERR?") == '-113,"Undefined header"'
    assert emulator.respond("SYST:ERR?") == '-222,"Data out of range; channel 121"'
    assert emulator.respond("SYST:ERR?") == '-221,"Settings conflict; empty scan list"'
    emulator.push_error('-350,"Queue overflow"')
    emulator.respond("*CLS")
    assert emulator.respond("SYST:ERR?") == '+0,"No error"'


def test_channel_lists() -> None:
    assert parse_channel_list("(@101,103:105, 201)") == [101, 103, 104, 105, 201]
    assert channel_list([201, 101]) == "(@101,201)"
    with pytest.raises(ValueError, match="runs backwards"):
        parse_channel_list("(@105:101)")
    with pytest.raises(ValueError, match="not a channel list"):
        parse_channel_list("101,102")


def test_configuration_without_reset_groups_by_kind_and_range() -> None:
    channels = {"a": LoggerChannel(ch=103, kind="dcv"), "b": LoggerChannel(ch=101, kind="tc-k"),
                "c": LoggerChannel(ch=102, kind="dcv")}
    assert configuration(channels, reset=False) == [
        "*CLS", "CONF:VOLT:DC AUTO,(@102,103)", "CONF:TEMP TC,K,(@101)", "FORM:READ:CHAN ON",
        "FORM:READ:UNIT ON", "ROUT:SCAN (@101,102,103)"]
