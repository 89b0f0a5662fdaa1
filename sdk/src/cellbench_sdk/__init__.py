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
    ChamberState,
    ChannelDriver,
    ChannelInfo,
    ClimateChamber,
    Clock,
    Device,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    DeviceWorker,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Profile,
    ProfileQuantity,
    Reading,
    RealClock,
    SampleBatch,
    SignalInfo,
    Step,
    StepMode,
    VirtualClock,
    call_with_timeout,
)

__all__ = [
    "REST",
    "Alarm",
    "ChamberState",
    "ChannelDriver",
    "ChannelInfo",
    "ClimateChamber",
    "Clock",
    "Descriptor",
    "Device",
    "DeviceConnectionError",
    "DeviceError",
    "DeviceTimeout",
    "DeviceWorker",
    "Kind",
    "NoSettings",
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
    "StepChanged",
    "StepMode",
    "TestFinished",
    "TestStarted",
    "TestStatus",
    "VirtualClock",
    "call_with_timeout",
    "hookimpl",
]
