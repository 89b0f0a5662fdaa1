"""cellbench hardware abstraction layer: device contracts, value types, clocks, errors, timeouts,
transports.

This package imports nothing else of cellbench; drivers and the core both build on it.
"""

from cellbench_hal.clock import Clock, RealClock, VirtualClock
from cellbench_hal.contracts import ChannelDriver, ClimateChamber, Device, OsiDevice
from cellbench_hal.errors import (
    BadReply,
    DeviceClosed,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    NotSupported,
    OutOfRange,
)
from cellbench_hal.guard import WhileOpen
from cellbench_hal.timeouts import DeviceWorker, call_with_timeout
from cellbench_hal.transports import (
    LineTransport,
    Link,
    SerialLineTransport,
    TcpLineTransport,
    TransportOptions,
    UsbTransport,
    open_transport,
    transport_from_url,
)
from cellbench_hal.types import (
    REST,
    ChamberState,
    ChannelInfo,
    EndCondition,
    EndQuantity,
    OutputRanges,
    Profile,
    ProfileQuantity,
    Reading,
    SampleBatch,
    SignalInfo,
    Step,
    StepLimits,
    StepMode,
    step_beyond,
)

__all__ = [
    "REST",
    "BadReply",
    "ChamberState",
    "ChannelDriver",
    "ChannelInfo",
    "ClimateChamber",
    "Clock",
    "Device",
    "DeviceClosed",
    "DeviceConnectionError",
    "DeviceError",
    "DeviceTimeout",
    "DeviceWorker",
    "EndCondition",
    "EndQuantity",
    "LineTransport",
    "Link",
    "NotSupported",
    "OsiDevice",
    "OutOfRange",
    "OutputRanges",
    "Profile",
    "ProfileQuantity",
    "Reading",
    "RealClock",
    "SampleBatch",
    "SerialLineTransport",
    "SignalInfo",
    "Step",
    "StepLimits",
    "StepMode",
    "TcpLineTransport",
    "TransportOptions",
    "UsbTransport",
    "VirtualClock",
    "WhileOpen",
    "call_with_timeout",
    "open_transport",
    "step_beyond",
    "transport_from_url",
]
