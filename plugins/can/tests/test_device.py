"""The CAN device against a BMS node on a python-can virtual bus in this process: decoding with
the database's units and scales, multiplexed and extended frames, timeouts, frames of the wrong
length, periodic and on-demand sending, the values sent on close, one bus for several devices."""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import can
import cantools
import pytest

from cellbench_can.database import load
from cellbench_can.device import CanDevice
from cellbench_can.emulator import BMS_DBC, BmsNode
from cellbench_sdk import (
    DeviceClosed,
    DeviceConnectionError,
    NotSupported,
    OutOfRange,
    Reading,
    RealClock,
)

CONTROL = {"STATION_Heartbeat": {"counter": "AliveCounter"},
           "STATION_ChargeControl": {"period_s": 0.05}}
Wait = Callable[..., Awaitable[Any]]
Make = Callable[..., CanDevice]


async def readings_where(wait: Wait, bms: CanDevice, what: str,
                         check: Callable[[Mapping[str, Reading]], bool]) -> Mapping[str, Reading]:
    """The device's readings once ``check`` accepts them."""
    return await wait(bms.read, what, check=check, timeout=10.0)  # type: ignore[no-any-return]


def test_signals_carry_the_database_units_and_decode_every_kind_of_frame(
        make_device: Make, node: BmsNode, wait_until_async: Wait) -> None:
    async def body() -> None:
        bms = make_device()
        infos = {info.name: info for info in bms.signals}
        assert infos["PackVoltage"].unit == "V" and infos["CellTempMax"].unit == "°C"
        assert "CellGroup" not in infos  # a multiplexer's selector is not a measurement
        assert "CellGroup 1" in infos["Cell4_V"].description
        await bms.open(RealClock())
        assert bms.info == {"bus": f"virtual:{bms.settings.bus.channel}", "database": "bms.dbc",
                            "database_sha256": hashlib.sha256(BMS_DBC.read_bytes()).hexdigest(
                            )[:16]}
        try:
            readings = await readings_where(wait_until_async, bms, "every signal decoded",
                                            lambda r: not math.isnan(r["CellTempMin"].value))
            pack = node.pack.values()
            # Scaled as the database says (0.001 V per bit, 0.01 V per bit), both multiplexer
            # groups of one message, and the extended id 0x18FF50E5.
            for name in ("Cell1_V", "Cell3_V", "Cell4_V", "Cell6_V", "CellVoltageMax"):
                assert readings[name].value == pytest.approx(pack[name], abs=0.0011)
            assert readings["PackVoltage"].value == pytest.approx(pack["PackVoltage"], abs=0.011)
            assert readings["StateOfCharge"].value == pytest.approx(50.5, abs=0.5)
            assert readings["CellTempMax"].value == 25.0
            assert readings["alarm"].value == 0.0 and readings["bad_frames"].value == 0.0
        finally:
            await bms.close()

    asyncio.run(body())


@pytest.mark.parametrize("suffix", ["kcd", "sym"])
def test_kcd_and_sym_databases_decode_as_the_dbc(suffix: str, tmp_path: Path,
                                                 make_device: Make, node: BmsNode,
                                                 wait_until_async: Wait) -> None:
    """The bundled DBC written as KCD and SYM by cantools: the same signals, decoded alike."""
    converted = tmp_path / f"bms.{suffix}"
    cantools.database.dump_file(load(BMS_DBC), converted)
    # SYM files have no nodes: the station's messages are named as sent instead.
    bms = make_device(database=str(converted), node=None,
                      transmit={"STATION_Heartbeat": {}, "STATION_ChargeControl": {}})

    async def body() -> None:
        await bms.open(RealClock())
        try:
            readings = await readings_where(
                wait_until_async, bms, "every message decoded",
                lambda r: not any(math.isnan(r[n].value) for n in ("Cell6_V", "CellTempMin",
                                                                    "PackVoltage")))
            pack = node.pack.values()
            assert readings["Cell6_V"].value == pytest.approx(pack["Cell6_V"], abs=0.0011)
            assert readings["CellTempMin"].value == 25.0
            assert readings["alarm"].value == 0.0
        finally:
            await bms.close()

    asyncio.run(body())


def test_a_silent_message_reads_nan_and_raises_the_alarm_until_it_is_back(
        make_device: Make, node: BmsNode, wait_until_async: Wait) -> None:
    async def body() -> None:
        bms = make_device(timeouts={"BMS_Pack": 0.3})
        await bms.open(RealClock())
        try:
            await readings_where(wait_until_async, bms, "the pack decoded",
                                 lambda r: not math.isnan(r["PackVoltage"].value))
            node.silence("BMS_Pack")
            silent = await readings_where(wait_until_async, bms, "the pack missing",
                                          lambda r: math.isnan(r["PackVoltage"].value))
            assert silent["alarm"].value == 1.0
            # Only the silent message's signals are missing, never held at their last value.
            assert all(math.isnan(silent[name].value) for name in
                       ("PackCurrent", "StateOfCharge", "ContactorClosed", "PackCounter"))
            assert not math.isnan(silent["Cell1_V"].value)
            node.resume()
            back = await readings_where(wait_until_async, bms, "the pack back",
                                        lambda r: not math.isnan(r["PackVoltage"].value))
            assert back["alarm"].value == 0.0
            assert back["PackVoltage"].time_s >= silent["PackVoltage"].time_s
        finally:
            await bms.close()

    asyncio.run(body())


def test_a_multiplexed_group_that_stops_goes_missing_alone(
        channel: str, make_device: Make, wait_until_async: Wait) -> None:
    """One multiplexer value's signals time out on their own: the others keep arriving in the
    same message."""
    async def body() -> None:
        sender = can.Bus(interface="virtual", channel=channel)
        bms = make_device(timeouts={"BMS_CellVoltages": 0.3})
        message = bms.layout.readable["Cell1_V"].message
        await bms.open(RealClock())
        try:
            group0 = message.encode({"CellGroup": 0, "Cell1_V": 3.6, "Cell2_V": 3.61,
                                     "Cell3_V": 3.62})
            group1 = message.encode({"CellGroup": 1, "Cell4_V": 3.7, "Cell5_V": 3.71,
                                     "Cell6_V": 3.72})
            for data in (group0, group1):
                sender.send(can.Message(arbitration_id=0x101, is_extended_id=False, data=data))
            await readings_where(wait_until_async, bms, "both groups",
                                 lambda r: not math.isnan(r["Cell1_V"].value + r["Cell4_V"].value))

            def only_group1(readings: Mapping[str, Reading]) -> bool:
                sender.send(can.Message(arbitration_id=0x101, is_extended_id=False, data=group1))
                return math.isnan(readings["Cell1_V"].value)

            readings = await readings_where(wait_until_async, bms, "group 0 missing",
                                            only_group1)
            assert readings["Cell4_V"].value == pytest.approx(3.7)
            assert readings["Cell6_V"].value == pytest.approx(3.72)
        finally:
            await bms.close()
            sender.shutdown()

    asyncio.run(body())


def test_frames_of_the_wrong_length_are_counted_not_decoded(
        channel: str, make_device: Make, wait_until_async: Wait) -> None:
    async def body() -> None:
        sender = can.Bus(interface="virtual", channel=channel)
        bms = make_device()
        await bms.open(RealClock())
        try:
            # BMS_Pack is 8 bytes: frames of 4 and of 0 bytes are refused.
            for data in (bytes(4), b""):
                sender.send(can.Message(arbitration_id=0x100, is_extended_id=False, data=data))
            # The extended BMS_CellSummary id sent as a standard frame is another message.
            sender.send(can.Message(arbitration_id=0x50E5, is_extended_id=False, data=bytes(8)))
            readings = await readings_where(wait_until_async, bms, "two bad frames",
                                            lambda r: r["bad_frames"].value == 2.0)
            assert math.isnan(readings["PackVoltage"].value)
            assert math.isnan(readings["CellVoltageMax"].value)
        finally:
            await bms.close()
            sender.shutdown()

    asyncio.run(body())


def test_the_station_sends_a_counting_heartbeat_and_writes_at_once(
        make_device: Make, node: BmsNode, wait_until_async: Wait) -> None:
    async def body() -> None:
        bms = make_device(transmit=CONTROL, on_close={"ChargeEnable": 0})
        infos = {info.name: info for info in bms.signals}
        assert infos["ChargeEnable"].writable and not infos["PackVoltage"].writable
        assert "AliveCounter" not in infos  # the device counts it itself
        await bms.open(RealClock())
        try:
            counts: set[float] = set()

            def counted() -> int:
                heartbeat = node.received.get("STATION_Heartbeat")
                if heartbeat is not None:
                    counts.add(heartbeat["AliveCounter"])
                return len(counts)

            await wait_until_async(counted, "the alive counter counting",
                                   check=lambda n: n >= 3)
            await bms.write("ContactorRequest", 1)
            await bms.write("ChargeCurrentLimit", 2.5)
            await bms.write("ChargeEnable", 1)
            readings = await readings_where(wait_until_async, bms, "the BMS charging",
                                            lambda r: r["PackCurrent"].value == 2.5)
            assert readings["ContactorClosed"].value == 1.0
            assert readings["ChargeEnable"].value == 1.0  # what is sent reads back
            assert node.received["STATION_ChargeControl"] == {
                "ChargeEnable": 1.0, "ContactorRequest": 1.0, "ChargeCurrentLimit": 2.5}
        finally:
            await bms.close()
        # Closing sent the on_close value once, and stopped the heartbeat: the BMS opens its
        # contactor.
        assert node.received["STATION_ChargeControl"]["ChargeEnable"] == 0.0
        assert node.contactor_closed()
        await wait_until_async(node.contactor_closed, "the contactor open",
                               check=lambda closed: not closed)

    asyncio.run(body())


def test_bad_writes_are_refused_and_change_nothing(make_device: Make, node: BmsNode) -> None:
    async def body() -> None:
        bms = make_device(transmit={"STATION_ChargeControl": {"period_s": 0}})
        with pytest.raises(DeviceClosed):
            await bms.write("ChargeEnable", 1)
        await bms.open(RealClock())
        try:
            with pytest.raises(OutOfRange, match="ChargeEnable = 2: .*smaller than or equal"):
                await bms.write("ChargeEnable", 2)
            with pytest.raises(OutOfRange, match="not a finite number"):
                await bms.write("ChargeCurrentLimit", math.inf)
            with pytest.raises(OutOfRange, match=r"no signal 'ChargeEnabled' \(did you mean "
                                                 r"'ChargeEnable'\?\)"):
                await bms.write("ChargeEnabled", 1)
            with pytest.raises(NotSupported, match="received, not sent"):
                await bms.write("PackVoltage", 20)
            with pytest.raises(NotSupported):
                await bms.write("alarm", 0)
            readings = await bms.read()
            assert readings["ChargeEnable"].value == 0.0
            assert "STATION_ChargeControl" not in node.received  # nothing was sent
        finally:
            await bms.close()

    asyncio.run(body())


def test_one_bus_serves_a_device_per_channel(make_device: Make, node: BmsNode,
                                             wait_until_async: Wait) -> None:
    """Two device sections (one per cycler channel) on one bus: one opened bus, each with its
    own cell's signals under the same names."""
    async def body() -> None:
        cell1 = make_device(signals={"cell_v": "Cell1_V", "temp": "CellTempMax"})
        cell4 = make_device(signals={"cell_v": "Cell4_V", "temp": "CellTempMax"})
        await cell1.open(RealClock())
        await cell4.open(RealClock())
        try:
            assert cell1._bus is cell4._bus
            first = await readings_where(wait_until_async, cell1, "cell 1",
                                         lambda r: not math.isnan(r["cell_v"].value))
            fourth = await readings_where(wait_until_async, cell4, "cell 4",
                                          lambda r: not math.isnan(r["cell_v"].value))
            assert set(first) == {"cell_v", "temp", "alarm", "bad_frames"}
            assert first["cell_v"].value < fourth["cell_v"].value  # the pack's spread
            await cell1.close()
            # The bus stays open for the other device.
            await readings_where(wait_until_async, cell4, "cell 4 after cell 1 closed",
                                 lambda r: r["cell_v"].time_s > fourth["cell_v"].time_s)
        finally:
            await cell1.close()
            await cell4.close()

    asyncio.run(body())


def test_devices_on_one_bus_must_agree_on_its_settings(channel: str, make_device: Make) -> None:
    async def body() -> None:
        first = make_device()
        other = make_device(bus={"interface": "virtual", "channel": channel, "bitrate": 250000})
        await first.open(RealClock())
        try:
            with pytest.raises(DeviceConnectionError, match="already open with other"):
                await other.open(RealClock())
        finally:
            await other.close()
            await first.close()

    asyncio.run(body())


def test_a_closed_device_opens_again(make_device: Make, node: BmsNode,
                                     wait_until_async: Wait) -> None:
    async def body() -> None:
        bms = make_device(transmit={"STATION_ChargeControl": {"period_s": 0}})
        for _ in range(2):
            await bms.open(RealClock())
            try:
                await readings_where(wait_until_async, bms, "the pack",
                                     lambda r: not math.isnan(r["PackVoltage"].value))
                await bms.write("ChargeEnable", 1)
            finally:
                await bms.close()
            with pytest.raises(DeviceClosed):
                await bms.read()

    asyncio.run(body())
