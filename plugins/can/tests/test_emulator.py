"""The BMS node's pack and frames, without a station."""

from __future__ import annotations

import can
import pytest

from cellbench_can.database import load
from cellbench_can.emulator import BMS_DBC, BmsNode, Pack


def test_a_charged_pack_fills_and_warms() -> None:
    pack = Pack(cells=4, capacity_ah=2.0, soc=0.2)
    pack.current_a = 4.0  # 2 C
    pack.advance(900.0)  # a quarter of an hour: half the capacity
    assert sum(pack.socs) / 4 == pytest.approx(0.7, abs=0.01)
    heat_rise = 4.0 ** 2 * pack.resistance_ohm * pack.kelvin_per_watt  # 3.2 K at the end
    assert 0.6 * heat_rise < pack.temps[0] - pack.ambient_c < heat_rise  # 1.5 time constants
    assert pack.temps[-1] > pack.temps[0]  # the extremes differ
    values = pack.values()
    assert values["CellVoltageMax"] == max(values[f"Cell{n}_V"] for n in range(1, 5))
    assert values["PackVoltage"] == pytest.approx(sum(pack.cell_voltages()))


def test_a_multiplexed_message_is_one_frame_per_group() -> None:
    database = load(BMS_DBC)
    bus = can.Bus(interface="virtual", channel="cellbench-test-frames")
    try:
        node = BmsNode(bus, database)
        cells = node.frames(database.get_message_by_name("BMS_CellVoltages"))
        assert [frame.data[0] for frame in cells] == [0, 1]  # CellGroup 0 and 1
        summary = node.frames(database.get_message_by_name("BMS_CellSummary"))
        assert summary[0].is_extended_id and summary[0].arbitration_id == 0x18FF50E5
        with pytest.raises(ValueError, match="does not send STATION_Heartbeat"):
            node.silence("STATION_Heartbeat")
        with pytest.raises(ValueError, match="no message sent by node 'NOBODY'"):
            BmsNode(bus, database, node="NOBODY")
    finally:
        bus.shutdown()
