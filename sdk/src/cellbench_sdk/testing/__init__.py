"""The conformance kit: contract checks for plugin authors, run in their own test suites without
hardware.

The contract test classes (:mod:`cellbench_sdk.testing.contracts`) are the short way: subclass the
one of your plugin's kind, name your plugin module and descriptor, and pytest runs every check of
that kind against the device your descriptor builds::

    from cellbench_sdk.testing import ChannelDriverContract

    class TestMyCycler(ChannelDriverContract):
        plugin = "cellbench_mycycler.plugin"
        name = "mycycler"

Each ``check_*`` function is the longer way: it drives a device (or a plugin module) through the
contract the core relies on and raises :class:`AssertionError` on the first deviation, with a
message that states the rule and what the device did. :func:`expected_protocol` checks the exact
bytes a driver sends and reads.
"""

from cellbench_sdk.peer import (
    HANG_UP,
    HangUp,
    ScriptedPeer,
    connect_when_listening,
    free_port,
)
from cellbench_sdk.testing.channel import check_channel_driver
from cellbench_sdk.testing.contracts import (
    ChannelDriverContract,
    ClimateChamberContract,
    Contract,
    DeviceContract,
    InterfaceContract,
    NotifierContract,
    OsiDeviceContract,
    SyncTargetContract,
)
from cellbench_sdk.testing.devices import (
    check_climate_chamber,
    check_device,
    check_failed_open,
    check_osi_device,
)
from cellbench_sdk.testing.http import HttpReceiver
from cellbench_sdk.testing.plugin import check_plugin
from cellbench_sdk.testing.protocol import Conversation, MemoryStream, expected_protocol
from cellbench_sdk.testing.services import (
    EVENTS,
    NotifierStation,
    check_notifier,
    check_sync_target,
)
from cellbench_sdk.testing.station import check_interface, station_control

__all__ = [
    "EVENTS",
    "HANG_UP",
    "ChannelDriverContract",
    "ClimateChamberContract",
    "Contract",
    "Conversation",
    "DeviceContract",
    "HangUp",
    "HttpReceiver",
    "InterfaceContract",
    "MemoryStream",
    "NotifierContract",
    "NotifierStation",
    "OsiDeviceContract",
    "ScriptedPeer",
    "SyncTargetContract",
    "check_channel_driver",
    "check_climate_chamber",
    "check_device",
    "check_failed_open",
    "check_interface",
    "check_notifier",
    "check_osi_device",
    "check_plugin",
    "check_sync_target",
    "connect_when_listening",
    "expected_protocol",
    "free_port",
    "station_control",
]
