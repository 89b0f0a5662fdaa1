"""Device contracts: what the core expects of channel drivers, OSI devices and climate chambers.

Every method is a coroutine; drivers around blocking libraries run those calls on a
:class:`~cellbench_hal.timeouts.DeviceWorker`. The core wraps each call in a timeout and turns a
:class:`~cellbench_hal.errors.DeviceError` into the safe state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

from cellbench_hal.clock import Clock
from cellbench_hal.errors import NotSupported
from cellbench_hal.types import ChamberState, ChannelInfo, Reading, SampleBatch, SignalInfo, Step


class Device(ABC):
    """Common lifecycle: ``open`` once, ``close`` idempotently (also after a failed ``open``)."""

    #: True for simulators, which may run on a virtual clock; real hardware needs the real one.
    virtual_time_ok: ClassVar[bool] = False

    #: Name used in errors and logs ("sim", "scpi@10.0.0.5", ...).
    name: str = "device"

    @abstractmethod
    async def open(self, clock: Clock) -> None:
        """Connect and get ready; ``clock`` is the station's clock for timestamps."""

    @abstractmethod
    async def close(self) -> None:
        """Leave the device safe (outputs off) and release it. Idempotent."""

    async def __aenter__(self) -> Device:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ChannelDriver(Device):
    """A bank of cycler channels behind one connection (one instrument, one DLL handle, ...).

    Step-level, like a real cycler: :meth:`apply` hands a channel a setpoint that it holds until
    the next one; :meth:`measure` returns the samples taken since the previous call.
    """

    @property
    @abstractmethod
    def channels(self) -> Sequence[ChannelInfo]:
        """The channels of this bank, indexed from 0."""

    @abstractmethod
    async def apply(self, channel: int, step: Step) -> None:
        """Start holding ``step`` on ``channel`` from now on. ``step.limits``, where the runner
        set them, are the test's safety limits, for an instrument with protection of its own
        to be given before the step starts (the runner checks them on every sample anyway)."""

    async def apply_bank(self, steps: Sequence[tuple[int, Step]]) -> None:
        """Start holding each ``(channel, step)`` of ``steps`` (each channel at most once), as
        :meth:`apply` would one at a time: what a station starting thousands of tests at once
        calls. This default does exactly that. A driver that can set many channels in one go
        (a simulator's arrays, an instrument's bank command) overrides it; the station then
        makes one call per bank under one timeout, and when that call fails with anything but
        a timeout, applies the bank's steps one channel at a time to learn which one refused."""
        for channel, step in steps:
            await self.apply(channel, step)

    @abstractmethod
    async def output_off(self, channel: int) -> None:
        """Switch the channel's output off (the safe state)."""

    async def output_off_bank(self, channels: Sequence[int]) -> None:
        """Switch the outputs of ``channels`` off, as :meth:`output_off` would one at a time:
        what a station stopping thousands of tests at once calls. This default does exactly
        that; a driver that can switch many channels in one go overrides it, as for
        :meth:`apply_bank` (one call per bank under one timeout, then one channel at a time
        if it fails with anything but a timeout)."""
        for channel in channels:
            await self.output_off(channel)

    @abstractmethod
    async def measure(self) -> SampleBatch:
        """Samples since the previous call: at least the latest one of every channel."""

    def set_ambient(self, channel: int, celsius: float) -> None:
        """The ambient temperature (°C) around ``channel``'s cell now, from the climate chamber
        it sits in; the station calls it every sample period for channels in a chamber. Real
        instruments ignore it (the default); simulators heat or cool their cells with it. It
        must not block."""


class OsiDevice(Device):
    """An external device with named signals to read (and some to write): CAN, SMBus, loggers."""

    @property
    @abstractmethod
    def signals(self) -> Sequence[SignalInfo]:
        """The signals this device offers."""

    @abstractmethod
    async def read(self) -> Mapping[str, Reading]:
        """The latest reading of every readable signal."""

    @abstractmethod
    async def write(self, signal: str, value: float) -> None:
        """Set a writable signal."""

    @property
    def info(self) -> Mapping[str, str]:
        """What the device says about itself once open (maker, model, serial number, firmware),
        as text by name; the station records it with every test the device serves. Empty for a
        device that says nothing."""
        return {}


class ClimateChamber(Device):
    """A climate chamber; one chamber may hold the cells of several channels."""

    #: True when the chamber controls humidity as well as temperature.
    has_humidity: ClassVar[bool] = False

    @abstractmethod
    async def set_temperature(self, celsius: float) -> None:
        """Set the temperature setpoint (°C)."""

    async def set_humidity(self, percent: float) -> None:
        """Set the relative-humidity setpoint (%); chambers without humidity refuse."""
        raise NotSupported(self.name, "this chamber has no humidity control")

    async def ramp_temperature(self, celsius: float, kelvin_per_s: float) -> None:
        """Move the temperature setpoint to ``celsius`` at ``kelvin_per_s`` in the controller.
        Chambers whose controllers cannot ramp refuse (the default), and the station ramps them
        itself, by setting a moving setpoint every sample period."""
        raise NotSupported(self.name, "this controller does not ramp its setpoint")

    @abstractmethod
    async def start(self) -> None:
        """Start conditioning."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop conditioning."""

    @abstractmethod
    async def read(self) -> ChamberState:
        """Current temperature, setpoints and state."""
