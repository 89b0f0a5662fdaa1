"""Byte-exact configuration conversations, with the SDK's ``expected_protocol``."""

from __future__ import annotations

import asyncio

import pytest

from cellbench_scpi.commands import EA_PSB, KEITHLEY_2400
from cellbench_scpi.driver import bidirectional_channel, smu_channel
from cellbench_scpi.settings import BidirectionalSettings, SmuSettings
from cellbench_sdk import DeviceError, RealClock, Step, StepLimits, StepMode
from cellbench_sdk.testing import expected_protocol

OK = b'0,"No error"\n'
LIMITS = StepLimits(voltage_max_v=4.2, voltage_min_v=2.5, charge_current_max_a=1.0,
                    discharge_current_max_a=1.0)


def _checked(*commands: bytes) -> list[tuple[bytes, bytes]]:
    """Each command, then the error query that confirms it."""
    pairs = []
    for command in commands:
        pairs += [(command + b"\n", b""), (b":SYST:ERR?\n", OK)]
    return pairs


K2400_OPEN = [
    (b"*IDN?\n", KEITHLEY_2400.example_idn.encode() + b"\n"),
    *_checked(b"*RST", b"*CLS", b":SOUR:CLE:AUTO OFF", b":SENS:FUNC:CONC ON",
              b":FORM:ELEM VOLT,CURR", b":SOUR:CURR:RANG:AUTO OFF", b":SOUR:VOLT:RANG:AUTO OFF"),
    (b":OUTP OFF\n", b""),
]
K2400_CLOSE = [(b":OUTP OFF\n", b""), (b":SYST:ERR?\n", OK)]


def test_smu_configures_protection_then_the_setpoint_then_the_output() -> None:
    pairs = [
        *K2400_OPEN,
        (b":READ?\n", b"+3.700000E+00,+0.000000E+00\n"),  # where the cell is, before a step
        *_checked(b":SOUR:FUNC CURR",
                  b":SOUR:VOLT:PROT 4.3",  # over-voltage: the limit and twice the margin
                  b":SOUR:CURR:RANG 1.05",  # 0.5 A does not fit the 0.105 A range
                  b":SENS:VOLT:PROT 4.25",  # compliance: the limit and the margin
                  b":SOUR:CURR:LEV 0.5", b":OUTP ON"),
        (b":READ?\n", b"+3.712000E+00,+5.000000E-01\n"),
        *K2400_CLOSE,
    ]

    async def run() -> tuple[float, float]:
        async with expected_protocol(pairs) as smu:
            driver = smu_channel(SmuSettings(resource=f"TCPIP::{smu.host}::{smu.port}::SOCKET"))
            await driver.open(RealClock())
            await driver.apply(0, Step(StepMode.CC, current_a=0.5, limits=LIMITS))
            batch = await driver.measure()
            await driver.close()
        return float(batch.voltage_v[0]), float(batch.current_a[0])

    assert asyncio.run(run()) == (3.712, 0.5)


def test_a_refused_command_names_itself_and_leaves_the_output_off() -> None:
    pairs = [
        *K2400_OPEN,
        (b":READ?\n", b"+3.700000E+00,+0.000000E+00\n"),
        *_checked(b":SOUR:FUNC CURR", b":SOUR:VOLT:PROT 4.3", b":SOUR:CURR:RANG 1.05",
                  b":SENS:VOLT:PROT 4.25"),
        (b":SOUR:CURR:LEV 0.5\n", b""),
        (b":SYST:ERR?\n", b'-222,"Data out of range"\n'),
        (b":SYST:ERR?\n", OK),
        (b":OUTP OFF\n", b""),  # the safe state, at once
        (b":SYST:ERR?\n", OK),
        *K2400_CLOSE,
    ]

    async def run() -> str:
        async with expected_protocol(pairs) as smu:
            driver = smu_channel(SmuSettings(resource=f"TCPIP::{smu.host}::{smu.port}::SOCKET"))
            await driver.open(RealClock())
            with pytest.raises(DeviceError) as refused:
                await driver.apply(0, Step(StepMode.CC, current_a=0.5, limits=LIMITS))
            await driver.close()
        return str(refused.value)

    assert asyncio.run(run()).endswith(
        """':SOUR:CURR:LEV 0.5' refused: -222,"Data out of range\"""")


def test_bidirectional_arms_its_watchdog_and_reads_its_ratings() -> None:
    ok = b'0,"No error"\n'
    pairs = [
        (b"*IDN?\n", EA_PSB.example_idn.encode() + b"\n"),
        (b"*RST\n", b""), (b"SYST:ERR?\n", ok),
        (b"*CLS\n", b""), (b"SYST:ERR?\n", ok),
        (b"SYST:LOCK ON\n", b""), (b"SYST:ERR?\n", ok),
        (b"OUTP OFF\n", b""),
        (b"SYST:COMM:WATC:TIM 2\n", b""), (b"SYST:ERR?\n", ok),
        (b"SYST:COMM:WATC ON\n", b""), (b"SYST:ERR?\n", ok),
        (b"SYST:NOM:VOLT?\n", b"80.00 V\n"),
        (b"SYST:NOM:CURR?\n", b"60.00 A\n"),
        (b"SYST:NOM:POW?\n", b"1500 W\n"),
        (b"MEAS:ARR?\n", b"3.71 V, -0.00 A, -0.00 W\n"),
        (b"OUTP OFF\n", b""), (b"SYST:ERR?\n", ok),
        (b"SYST:COMM:WATC OFF\n", b""),
    ]

    async def run() -> tuple[float, float, float, float]:
        async with expected_protocol(pairs) as psb:
            driver = bidirectional_channel(BidirectionalSettings(
                resource=f"TCPIP::{psb.host}::{psb.port}::SOCKET", watchdog_s=2.0))
            await driver.open(RealClock())
            info = driver.channels[0]
            batch = await driver.measure()
            await driver.close()
        return (info.voltage_max_v, info.current_max_a, info.power_max_w,
                float(batch.voltage_v[0]))

    assert asyncio.run(run()) == (80.0, 60.0, 1500.0, 3.71)
