"""The CAN device through python-can's slcan interface to an emulated SLCAN adapter on a pty:
its serial protocol byte by byte, a BMS in this process, one in another process
(`cellbench can emulate`), and an adapter unplugged under the device."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import can
import pytest
import serial

import cellbench_can.device as device_module
from cellbench_can.database import load
from cellbench_can.device import CanDevice
from cellbench_can.emulator import BMS_DBC, BmsNode, SlcanAdapter
from cellbench_can.settings import CanSettings
from cellbench_sdk import DeviceConnectionError, DeviceTimeout, RealClock

Wait = Callable[..., Awaitable[Any]]
CONTROL = {"STATION_Heartbeat": {"counter": "AliveCounter"},
           "STATION_ChargeControl": {"period_s": 0.1}}


def slcan_device(path: str, **settings: Any) -> CanDevice:
    """A device on the SLCAN adapter at ``path`` (no pause after opening the port: a pty is
    ready at once)."""
    return CanDevice(CanSettings.model_validate({
        "bus": {"interface": "slcan", "channel": path, "bitrate": 500000,
                "options": {"sleep_after_open": 0}},
        "database": str(BMS_DBC), "node": "STATION", **settings}))


class Emulated(NamedTuple):
    """An SLCAN adapter on a pty and the BMS node on its CAN side."""

    adapter: SlcanAdapter
    node: BmsNode


@pytest.fixture
def emulated() -> Iterator[Emulated]:
    """A started SLCAN adapter with a started BMS node behind it."""
    inner = f"cellbench-slcan-test-{uuid.uuid4().hex}"
    adapter = SlcanAdapter(can.Bus(interface="virtual", channel=inner))
    adapter.start()
    node_bus = can.Bus(interface="virtual", channel=inner)
    node = BmsNode(node_bus, load(BMS_DBC))
    node.start()
    yield Emulated(adapter, node)
    node.stop()
    adapter.stop()
    adapter.bus.shutdown()
    node_bus.shutdown()


def test_the_adapter_speaks_lawicel(emulated: Emulated) -> None:
    adapter = emulated.adapter
    emulated.node.silence()  # only the replies come back
    with serial.Serial(adapter.path, timeout=10) as port:
        def ask(command: bytes) -> bytes:
            """The reply to ``command``: BEL alone, or a line ending in CR."""
            port.write(command + b"\r")
            first = bytes(port.read(1))
            return first if first in (b"\x07", b"\r", b"") else first + port.read_until(b"\r")

        assert ask(b"V") == b"V1013\r"
        assert ask(b"N") == b"NEMU1\r"
        assert ask(b"S9") == b"\x07"  # no such bit rate
        assert ask(b"S6") == b"\r"
        assert ask(b"t1001FF") == b"\x07"  # a frame before the channel is open
        assert ask(b"O") == b"\r"
        assert ask(b"O") == b"\x07"  # open twice
        assert ask(b"S6") == b"\x07"  # the bit rate is set while closed
        assert ask(b"t20023F") == b"\x07"  # DLC 2 with one data byte
        assert ask(b"t8001FF") == b"\x07"  # an 11-bit id beyond 0x7FF
        assert ask(b"t2002050A") == b"z\r"
        assert ask(b"T18FF50E5100") == b"Z\r"
        assert ask(b"C") == b"\r"
        assert ask(b"?") == b"\x07"
    assert adapter.commands[-3:] == ["T18FF50E5100", "C", "?"]


def test_a_bms_behind_the_adapter_in_this_process(emulated: Emulated,
                                                  wait_until_async: Wait) -> None:
    adapter = emulated.adapter

    async def body() -> None:
        bms = slcan_device(adapter.path, transmit=CONTROL)
        await bms.open(RealClock())
        try:
            readings = await wait_until_async(
                bms.read, "standard and extended frames over SLCAN",
                check=lambda r: not math.isnan(r["PackVoltage"].value + r["CellTempMax"].value))
            assert readings["Cell6_V"].value == pytest.approx(3.707, abs=0.002)
            await bms.write("ContactorRequest", 1)
            await bms.write("ChargeEnable", 1)
            await bms.write("ChargeCurrentLimit", 1.5)
            await wait_until_async(bms.read, "the BMS charging at the written limit",
                                   check=lambda r: r["PackCurrent"].value == 1.5)
            # python-can closes, sets 500 kbit/s (and an empty data bit rate), opens.
            assert adapter.commands[:4] == ["C", "S6", "", "O"]
        finally:
            await bms.close()
        await wait_until_async(lambda: adapter.commands[-1], "the channel closed",
                               check=lambda last: last == "C")

    asyncio.run(body())


def test_an_unplugged_adapter_is_a_device_error(emulated: Emulated,
                                                wait_until_async: Wait) -> None:
    adapter = emulated.adapter

    async def body() -> None:
        bms = slcan_device(adapter.path)
        await bms.open(RealClock())
        try:
            await wait_until_async(bms.read, "the pack",
                                   check=lambda r: not math.isnan(r["PackVoltage"].value))
            adapter.hang_up()
            with pytest.raises(DeviceConnectionError, match="the bus failed"):
                await wait_until_async(bms.read, "a failed read", check=lambda _: False)
        finally:
            await bms.close()

    asyncio.run(body())


def test_an_open_that_times_out_gives_the_bus_back(emulated: Emulated,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   wait_until_async: Wait) -> None:
    """An adapter slower to open than the device waits: the open fails with DeviceTimeout,
    and the bus, opened after all, is closed again (another device can open it its way)."""
    path = emulated.adapter.path

    async def body() -> None:
        monkeypatch.setattr(device_module, "OPEN_TIMEOUT_S", 0.1)
        slow = CanDevice(CanSettings.model_validate({
            "bus": {"interface": "slcan", "channel": path,
                    "options": {"sleep_after_open": 0.5}}, "database": str(BMS_DBC)}))
        with pytest.raises(DeviceTimeout, match="opening the bus did not answer"):
            await slow.open(RealClock())
        await slow.close()
        monkeypatch.setattr(device_module, "OPEN_TIMEOUT_S", 10.0)
        quick = slcan_device(path)

        async def opens() -> bool:
            try:
                await quick.open(RealClock())
            except DeviceConnectionError as error:
                assert "already open with other settings" in str(error)
                return False
            return True

        await wait_until_async(opens, "the late bus given back")
        await quick.close()

    asyncio.run(body())


def test_the_bms_in_another_process(wait_until_async: Wait) -> None:
    """`cellbench can emulate` runs the BMS behind an SLCAN pty in a process of its own; its
    standard input tells it to fall silent."""
    cellbench = Path(sys.executable).with_name("cellbench")
    process = subprocess.Popen([str(cellbench), "can", "emulate", "--cells", "6"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    assert process.stdin is not None and process.stdout is not None
    try:
        ready = process.stdout.readline()
        assert ready.startswith("BMS emulator: SLCAN adapter on /dev/"), ready
        path = ready.split(" on ", 1)[1].split(" ", 1)[0]

        async def body() -> None:
            bms = slcan_device(path, transmit=CONTROL, timeouts={"BMS_Pack": 0.3})
            await bms.open(RealClock())
            try:
                await wait_until_async(bms.read, "the pack from the other process",
                                       check=lambda r: not math.isnan(r["PackVoltage"].value),
                                       alive=process)
                await bms.write("ContactorRequest", 1)
                readings = await wait_until_async(
                    bms.read, "the contactor closed", alive=process,
                    check=lambda r: r["ContactorClosed"].value == 1.0)
                assert readings["alarm"].value == 0.0
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write("silence BMS_Pack\n")
                process.stdin.flush()
                assert process.stdout.readline() == "ok\n"
                readings = await wait_until_async(bms.read, "the pack missing", alive=process,
                                                  check=lambda r: r["alarm"].value == 1.0)
                assert math.isnan(readings["PackVoltage"].value)
                assert not math.isnan(readings["Cell1_V"].value)
                process.stdin.write("sing\n")
                process.stdin.flush()
                assert process.stdout.readline().startswith("error: unknown command 'sing'")
            finally:
                await bms.close()

        asyncio.run(body())
        process.stdin.write("quit\n")
        process.stdin.flush()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
