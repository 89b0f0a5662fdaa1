"""The conformance checks of cellbench-sdk, run against the CAN device and a BMS node on a
python-can virtual bus."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import can

from cellbench_can.database import load
from cellbench_can.emulator import BMS_DBC, BmsNode
from cellbench_sdk.testing import OsiDeviceContract

DATABASE = str(BMS_DBC)


class TestCanDevice(OsiDeviceContract):
    """Every check of an OSI device: receiving only, and also sending (a heartbeat with a
    counter, a charge-control frame written on demand), against the node."""

    plugin = "cellbench_can.plugin"
    name = "can"
    entry_point = "can"
    cases: ClassVar[dict[str, dict[str, Any]]] = {
        "receive": {"bus": {"interface": "virtual", "channel": "x"}, "database": DATABASE,
                    "node": "STATION"},
        "send": {"bus": {"interface": "virtual", "channel": "x"}, "database": DATABASE,
                 "transmit": {"STATION_Heartbeat": {"counter": "AliveCounter"},
                              "STATION_ChargeControl": {"period_s": 0}},
                 "on_close": {"ChargeEnable": 0}},
        "chosen signals": {"bus": {"interface": "virtual", "channel": "x"},
                           "database": DATABASE,
                           "signals": {"cell_v": "Cell4_V", "temp_max": "CellTempMax",
                                       "charge_enable": "STATION_ChargeControl.ChargeEnable"},
                           "transmit": {"STATION_ChargeControl": {}}},
    }

    @asynccontextmanager
    async def peer(self, settings: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]:
        channel = f"cellbench-contract-{uuid.uuid4().hex}"
        bus = can.Bus(interface="virtual", channel=channel)
        node = BmsNode(bus, load(BMS_DBC))
        node.start()
        try:
            yield {**settings, "bus": {"interface": "virtual", "channel": channel}}
        finally:
            node.stop()
            bus.shutdown()

    def unreachable(self, port: int) -> Mapping[str, Any]:
        # An SLCAN adapter at a serial port that does not exist.
        return {"bus": {"interface": "slcan", "channel": f"/dev/cellbench-no-adapter-{port}",
                        "options": {"sleep_after_open": 0}}, "database": DATABASE}
