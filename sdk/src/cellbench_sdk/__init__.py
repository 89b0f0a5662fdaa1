"""What a driver-plugin author imports: the hook marker, descriptors, device contracts and types.

A plugin is a module with ``@hookimpl`` functions, named by one entry point in the
``cellbench.plugins`` group of its distribution::

    from cellbench_sdk import Descriptor, Kind, hookimpl

    @hookimpl
    def cellbench_channel_drivers() -> list[Descriptor]:
        return [Descriptor(Kind.CHANNEL_DRIVER, "mycycler", "my_pkg.driver:MyCycler",
                           "My cycler over TCP", MySettings)]

``cellbench_sdk.testing`` checks a driver against the contract without hardware.
"""

from cellbench_core.descriptors import Descriptor, Kind, NoSettings
from cellbench_core.events import Alarm, StepChanged, TestFinished, TestStarted, TestStatus
from cellbench_core.hookspecs import hookimpl
from cellbench_hal import (
    REST,
    BadReply,
    ChamberState,
    ChannelDriver,
    ChannelInfo,
    ClimateChamber,
    Clock,
    Device,
    DeviceClosed,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    DeviceWorker,
    LineTransport,
    Link,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Profile,
    ProfileQuantity,
    Reading,
    RealClock,
    SampleBatch,
    SerialLineTransport,
    SignalInfo,
    Step,
    StepMode,
    TcpLineTransport,
    TransportOptions,
    UsbTransport,
    VirtualClock,
    WhileOpen,
    call_with_timeout,
    open_transport,
    transport_from_url,
)

__all__ = [
    "REST",
    "Alarm",
    "BadReply",
    "ChamberState",
    "ChannelDriver",
    "ChannelInfo",
    "ClimateChamber",
    "Clock",
    "Descriptor",
    "Device",
    "DeviceClosed",
    "DeviceConnectionError",
    "DeviceError",
    "DeviceTimeout",
    "DeviceWorker",
    "Kind",
    "LineTransport",
    "Link",
    "NoSettings",
    "NotSupported",
    "OsiDevice",
    "OutOfRange",
    "Profile",
    "ProfileQuantity",
    "Reading",
    "RealClock",
    "SampleBatch",
    "SerialLineTransport",
    "SignalInfo",
    "Step",
    "StepChanged",
    "StepMode",
    "TcpLineTransport",
    "TestFinished",
    "TestStarted",
    "TestStatus",
    "TransportOptions",
    "UsbTransport",
    "VirtualClock",
    "WhileOpen",
    "call_with_timeout",
    "hookimpl",
    "open_transport",
    "transport_from_url",
]
