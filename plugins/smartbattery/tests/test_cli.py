"""``cellbench smartbattery read`` and a bridge that is not there."""

from __future__ import annotations

import asyncio

import typer
from typer.testing import CliRunner

from cellbench_sdk.testing import check_failed_open
from cellbench_smartbattery.battery import smart_battery
from cellbench_smartbattery.cli import register
from cellbench_smartbattery.settings import SmartBatterySettings


def invoke(*arguments: str) -> tuple[int, str]:
    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)  # two commands: typer keeps "smartbattery" as a group
    result = CliRunner().invoke(app, ["smartbattery", "read", *arguments],
                                env={"COLUMNS": "120"})
    return result.exit_code, result.output


def test_read_prints_the_identity_and_every_signal() -> None:
    code, output = invoke("--bus", "emulated")
    assert code == 0, output
    lines = [line.split() for line in output.splitlines()]
    assert ["chemistry", "LION"] in lines
    assert any(line[:1] == ["cell4_voltage"] and line[-1] == "V" for line in lines)
    assert any(line[:1] == ["relative_soc"] and line[-1] == "%" for line in lines)


def test_bad_options_and_a_missing_adapter_are_errors() -> None:
    code, output = invoke("--bus", "i2c", "--address", "0x99")
    assert code == 2
    assert "--bus: Input should be 'smbus2', 'cp2112' or 'emulated'" in output
    assert "--address: Input should be less than or equal to 119" in output
    code, output = invoke("--address", "eleven")
    assert code == 2 and "'eleven' is not a number such as 0x0B" in output
    code, output = invoke("--i2c-bus", "/dev/i2c-nothing")
    assert code == 1
    assert "/dev/i2c-nothing: cannot open the I2C adapter" in output


def test_a_bridge_that_is_not_there_fails_to_open() -> None:
    # Without libusb, or with libusb and no such bridge: a connection error either way.
    battery = smart_battery(SmartBatterySettings(bus="cp2112", cp2112_serial="NOT-THERE"))
    asyncio.run(check_failed_open(battery))
