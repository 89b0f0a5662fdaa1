"""What a driver-plugin author imports: the hook marker, descriptors, device contracts and types.

A plugin is a module with ``@hookimpl`` functions, named by one entry point in the
``cellbench.plugins`` group of its distribution::

    from cellbench_sdk import Descriptor, Kind, hookimpl

    @hookimpl
    def cellbench_channel_drivers() -> list[Descriptor]:
        return [Descriptor(Kind.CHANNEL_DRIVER, "mycycler", "my_pkg.driver:MyCycler",
                           "My cycler over TCP", MySettings)]

The rest of the plugin surface, one module per kind of plugin:

- :mod:`cellbench_sdk.storage`: the station's database: tests, steps, events, samples in chunks
  (exporters, importers);
- :mod:`cellbench_sdk.export`: the file formats a test can be downloaded in (export plugins
  offer them, the web interface streams them);
- :mod:`cellbench_sdk.sync`: the sync-target contract, the change feed and the shared writing;
- :mod:`cellbench_sdk.control`: the station-control API interfaces are handed;
- :mod:`cellbench_sdk.access`: the loopback rule and token files of network interfaces;
- :mod:`cellbench_sdk.notify`: the notifier base classes (one with an outbox: ordered, retried,
  rate-limited delivery to a peer);
- :mod:`cellbench_sdk.cli`: consoles, errors and ``--db``/``--station`` for plugin commands;
- :mod:`cellbench_sdk.units`: quantities with units as people write them;
- :mod:`cellbench_sdk.cell`: the equivalent-circuit cell model (simulators, emulators), which
  ages as :mod:`cellbench_sdk.ageing` describes;
- :mod:`cellbench_sdk.testing`: checks a plugin against its contract without hardware.

A plugin imports these (and :mod:`cellbench_hal`), never ``cellbench_core``: a lint rule
(ruff's banned-api, TID251) refuses such an import under ``plugins/*/src``.
"""

from cellbench_core.descriptors import Descriptor, Kind, NoSettings
from cellbench_core.events import (
    Alarm,
    PlanMessage,
    StepChanged,
    TestFinished,
    TestStarted,
    TestStatus,
)
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
    EndCondition,
    EndQuantity,
    LineTransport,
    Link,
    NotSupported,
    OsiDevice,
    OutOfRange,
    OutputRanges,
    Profile,
    ProfileQuantity,
    Reading,
    RealClock,
    SampleBatch,
    SerialLineTransport,
    SignalInfo,
    Step,
    StepLimits,
    StepMode,
    TcpLineTransport,
    TransportOptions,
    UsbTransport,
    VirtualClock,
    WhileOpen,
    call_with_timeout,
    open_transport,
    step_beyond,
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
    "EndCondition",
    "EndQuantity",
    "Kind",
    "LineTransport",
    "Link",
    "NoSettings",
    "NotSupported",
    "OsiDevice",
    "OutOfRange",
    "OutputRanges",
    "PlanMessage",
    "Profile",
    "ProfileQuantity",
    "Reading",
    "RealClock",
    "SampleBatch",
    "SerialLineTransport",
    "SignalInfo",
    "Step",
    "StepChanged",
    "StepLimits",
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
    "step_beyond",
    "transport_from_url",
]
