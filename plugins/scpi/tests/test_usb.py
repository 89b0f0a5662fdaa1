"""USBTMC resources: the driver over pyvisa-py's USBTMC protocol and pyusb, with only the USB
bus faked (``usb_bus.py``, in a process of its own); and a USB resource that cannot be
opened."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cellbench_scpi.driver import smu_channel
from cellbench_scpi.settings import SmuSettings
from cellbench_sdk import DeviceConnectionError, RealClock

BUS = Path(__file__).with_name("usb_bus.py")


def test_an_smu_over_usbtmc() -> None:
    ran = subprocess.run([sys.executable, str(BUS)], capture_output=True, text=True,
                         timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["idn"].startswith("KEITHLEY INSTRUMENTS,MODEL 2450")
    assert seen["on"] and seen["off_after_close"]
    assert seen["current_a"] == pytest.approx(0.25)
    assert ":SOUR:CURR 0.25" in seen["commands"]
    assert seen["commands"][-2:] == [":OUTP OFF", ":SYST:ERR?"]


def test_a_usb_instrument_that_is_not_there_cannot_be_opened() -> None:
    resource = "USB0::0x05E6::0x2450::NOSUCH::INSTR"

    async def run() -> str:
        driver = smu_channel(SmuSettings(resource=resource))
        with pytest.raises(DeviceConnectionError) as failed:
            await driver.open(RealClock())
        await driver.close()
        return str(failed.value)

    assert f"cannot open {resource}" in asyncio.run(run())
