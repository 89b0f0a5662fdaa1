"""Contract test classes: a plugin's conformance tests in a few lines.

Subclass the class of your capability's kind under a name pytest collects (``Test...``), name
the module your entry point names and your descriptor, and pytest runs that kind's checks against
what your descriptor builds, once per settings case::

    from cellbench_sdk.testing import ChannelDriverContract

    class TestMyCycler(ChannelDriverContract):
        plugin = "cellbench_mycycler.plugin"      # the module the entry point names
        name = "mycycler"                         # the descriptor's name
        cases = {"one channel": {"count": 1}, "eight": {"count": 8}}

The ``settings`` fixture of each test is one of :attr:`Contract.cases`, parametrised by the
kit's pytest plugin (the ``pytest11`` entry point ``cellbench`` of cellbench-sdk); override the
fixture for settings a test must make, such as a file in ``tmp_path``. A device that talks to an
instrument overrides :meth:`Contract.peer` to run an emulator of it while it is checked.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from importlib import metadata
from types import ModuleType
from typing import Any, ClassVar

import pytest

from cellbench_core.descriptors import Descriptor, Kind
from cellbench_hal import StepMode
from cellbench_sdk.control import StationControl
from cellbench_sdk.testing.channel import check_channel_driver
from cellbench_sdk.testing.devices import (
    check_climate_chamber,
    check_failed_open,
    check_osi_device,
)
from cellbench_sdk.testing.plugin import check_plugin
from cellbench_sdk.testing.services import check_notifier, check_sync_target
from cellbench_sdk.testing.station import check_interface, station_control

Settings = Mapping[str, Any]


class Contract:
    """What every contract test class shares: the plugin check and building the capability.

    Set :attr:`plugin` and :attr:`name`; :attr:`cases` and :attr:`entry_point` are optional.
    """

    #: The kind of capability this class checks (set by each kind's class).
    kind: ClassVar[Kind]
    #: The plugin module, or its import name: the module the ``cellbench.plugins`` entry point
    #: names.
    plugin: ClassVar[str | ModuleType]
    #: The name of the descriptor under test (what station files write).
    name: ClassVar[str]
    #: Settings to check the capability with, by a name that shows in the test ids. The kit's
    #: pytest plugin runs every check once per case.
    cases: ClassVar[Mapping[str, Settings]] = {"defaults": {}}
    #: The entry point's name, to check that the installed distribution declares it; None leaves
    #: that out (for code not installed, e.g. a new plugin run from its source folder).
    entry_point: ClassVar[str | None] = None
    #: Wall-clock seconds every call of the capability may take.
    timeout_s: ClassVar[float] = 5.0

    @pytest.fixture
    def settings(self, cellbench_case: Settings) -> Settings:
        """The settings under test: one of :attr:`cases`. Override this fixture for settings
        that a test has to make (a file in ``tmp_path``)."""
        return cellbench_case

    def plugin_module(self) -> ModuleType:
        """The plugin module, imported."""
        if isinstance(self.plugin, ModuleType):
            return self.plugin
        return importlib.import_module(self.plugin)

    def descriptor(self, settings: Settings) -> Descriptor:
        """The descriptor under test, from a plugin that passes :func:`check_plugin` with
        ``settings`` (which refuses a plugin that does not offer it)."""
        under_test = (self.kind, self.name)
        found = check_plugin(self.plugin_module(), {under_test: settings}, only=under_test)
        return next(d for d in found if (d.kind, d.name) == under_test)

    def build(self, settings: Settings) -> Any:
        """The capability, built by its descriptor's factory from ``settings``."""
        return self.descriptor(settings).create(dict(settings))

    @asynccontextmanager
    async def peer(self, settings: Settings) -> AsyncIterator[Settings]:
        """Run what the capability talks to while it is checked, and yield the settings that
        reach it. Override it to start an emulator of your instrument (or a server) on loopback
        and yield ``{**settings, "port": emulator.port}``; by default nothing runs and
        ``settings`` are used as they are."""
        yield settings

    async def check(self, make: Callable[[], Any]) -> None:
        """Run the kind's check on what ``make`` builds."""
        raise NotImplementedError

    def test_contract(self, settings: Settings) -> None:
        """What the descriptor builds keeps its kind's contract, against its peer."""
        async def run() -> None:
            async with self.peer(settings) as reachable:
                await self.check(lambda: self.build(reachable))

        asyncio.run(run())

    def test_plugin(self, settings: Settings) -> None:
        """The plugin loads as a station would load it and offers the descriptor under test;
        the installed distribution's entry point names the plugin module."""
        self.descriptor(settings)
        if self.entry_point is None:
            return
        module = self.plugin_module().__name__
        found = {e.name: e.value for e in metadata.entry_points(group="cellbench.plugins")}
        assert found.get(self.entry_point) == module, (
            f"no entry point {self.entry_point!r} = {module!r} in the group cellbench.plugins; "
            f"installed: {found}")


class DeviceContract(Contract):
    """The checks every device kind shares: its contract, and a failed open."""

    async def check(self, make: Callable[[], Any]) -> None:
        await self.check_device(make())

    async def check_device(self, device: Any) -> None:
        """Run the kind's check on ``device`` (opened and closed by the check)."""
        raise NotImplementedError

    def unreachable(self, port: int) -> Settings | None:
        """Settings of a device that reaches nothing, for :meth:`test_failed_open`: override it
        for a device that connects to something, e.g. ``{"port": port}`` (``port`` is a loopback
        port nobody listens on). None (the default) skips that test."""
        return None

    def test_failed_open(self, unreachable_port: int) -> None:
        """A device that reaches nothing fails to open with a typed error and closes cleanly."""
        settings = self.unreachable(unreachable_port)
        if settings is None:
            pytest.skip("unreachable() gives no settings: a device that connects to nothing "
                        "cannot fail to connect")
        asyncio.run(check_failed_open(self.build(settings), timeout_s=self.timeout_s))


class ChannelDriverContract(DeviceContract):
    """The channel-driver checks (:func:`check_channel_driver`)."""

    kind = Kind.CHANNEL_DRIVER
    #: Clock seconds between setpoints and measurements (keep it small for real hardware, which
    #: is checked on the real clock).
    settle_s: ClassVar[float] = 1.0
    #: The step modes the driver accepts, checked when given.
    modes: ClassVar[frozenset[StepMode] | None] = None

    async def check_device(self, device: Any) -> None:
        accepted = await check_channel_driver(device, settle_s=self.settle_s,
                                              timeout_s=self.timeout_s)
        if self.modes is not None:
            assert accepted == self.modes, (
                f"the driver accepts {sorted(accepted)}, the test class expects "
                f"{sorted(self.modes)}")


class OsiDeviceContract(DeviceContract):
    """The OSI-device checks (:func:`check_osi_device`)."""

    kind = Kind.OSI_DEVICE
    #: Values to write per writable signal (by default each is written with the value it reads).
    values: ClassVar[Mapping[str, float] | None] = None

    async def check_device(self, device: Any) -> None:
        await check_osi_device(device, values=self.values, timeout_s=self.timeout_s)


class ClimateChamberContract(DeviceContract):
    """The climate-chamber checks (:func:`check_climate_chamber`)."""

    kind = Kind.CLIMATE_CHAMBER
    #: Setpoints the chamber accepts.
    setpoint_c: ClassVar[float] = 25.0
    humidity_pct: ClassVar[float] = 50.0

    async def check_device(self, device: Any) -> None:
        await check_climate_chamber(device, setpoint_c=self.setpoint_c,
                                    humidity_pct=self.humidity_pct, timeout_s=self.timeout_s)


class NotifierContract(Contract):
    """The notifier checks (:func:`check_notifier`). A :meth:`peer` that receives what the
    notifier sends (a mail server, a broker) can check on leaving what reached it."""

    kind = Kind.NOTIFIER
    #: Seconds an event hook may take (it runs on the station's event loop).
    event_budget_s: ClassVar[float] = 0.5

    async def check(self, make: Callable[[], Any]) -> None:
        await check_notifier(make(), event_budget_s=self.event_budget_s,
                             timeout_s=self.timeout_s)


class SyncTargetContract(Contract):
    """The sync-target checks (:func:`check_sync_target`): the ``settings`` fixture names a
    destination of the test's own (a folder or file in ``tmp_path``, a fresh server
    database)."""

    kind = Kind.SYNC_TARGET

    async def check(self, make: Callable[[], Any]) -> None:
        # sync_once blocks (database and file calls); the station runs it on a thread too.
        await asyncio.to_thread(check_sync_target, make)


class InterfaceContract(Contract):
    """The interface checks (:func:`check_interface`), against a small serving station of the
    kit (channels of resting cells). Override :meth:`exercise` to talk to the started interface
    the way its clients do."""

    kind = Kind.INTERFACE
    #: Channels of the station the interface serves.
    channels: ClassVar[int] = 2

    async def exercise(self, interface: Any, control: StationControl) -> None:
        """Talk to the started ``interface`` (connect, send a command, check the reply); by
        default nothing."""

    async def check(self, make: Callable[[], Any]) -> None:
        async with station_control(self.channels) as control:
            await check_interface(make(), control, exercise=self.exercise,
                                  timeout_s=self.timeout_s)
