"""What the CAN tests share: a BMS node on a python-can virtual bus of its own, and devices on
that bus."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import can
import pytest

from cellbench_can.database import load
from cellbench_can.device import CanDevice
from cellbench_can.emulator import BMS_DBC, BmsNode
from cellbench_can.settings import CanSettings


@pytest.fixture
def channel() -> str:
    """A virtual bus channel no other test uses."""
    return f"cellbench-test-{uuid.uuid4().hex}"


@pytest.fixture
def make_device(channel: str) -> Callable[..., CanDevice]:
    """``make_device(**settings)``: a CAN device on ``channel`` with the bundled database and
    ``settings`` over the defaults."""
    def make(**settings: Any) -> CanDevice:
        base = {"bus": {"interface": "virtual", "channel": channel}, "database": str(BMS_DBC),
                "node": "STATION"}
        return CanDevice(CanSettings.model_validate({**base, **settings}))

    return make


@pytest.fixture
def node(channel: str) -> Iterator[BmsNode]:
    """A started BMS node with the bundled database on ``channel``."""
    bus = can.Bus(interface="virtual", channel=channel)
    bms = BmsNode(bus, load(BMS_DBC))
    bms.start()
    yield bms
    bms.stop()
    bus.shutdown()
