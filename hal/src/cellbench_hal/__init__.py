"""cellbench hardware abstraction layer: device contracts, value types, clocks, errors, timeouts.

This package imports nothing else of cellbench; drivers and the core both build on it.
"""

from cellbench_hal.clock import Clock, RealClock, VirtualClock
from cellbench_hal.contracts import ChannelDriver, ClimateChamber, Device, OsiDevice
from cellbench_hal.errors import (
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    NotSupported,
    OutOfRange,
)
from cellbench_hal.timeouts import DeviceWorker, call_with_timeout
from cellbench_hal.types import (
    REST,
    ChamberState,
    ChannelInfo,
    Profile,
    ProfileQuantity,
    Reading,
    SampleBatch,
    SignalInfo,
    Step,
    StepMode,
)

__all__ = [
    "REST",
    "ChamberState",
    "ChannelDriver",
    "ChannelInfo",
    "ClimateChamber",
    "Clock",
    "Device",
    "DeviceConnectionError",
    "DeviceError",
    "DeviceTimeout",
    "DeviceWorker",
    "NotSupported",
    "OsiDevice",
    "OutOfRange",
    "Profile",
    "ProfileQuantity",
    "Reading",
    "RealClock",
    "SampleBatch",
    "SignalInfo",
    "Step",
    "StepMode",
    "VirtualClock",
    "call_with_timeout",
]
