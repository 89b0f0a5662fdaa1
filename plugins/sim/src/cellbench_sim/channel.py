"""A bank of simulated cycler channels, each with one equivalent-circuit cell on its output."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from functools import cached_property
from typing import Annotated, Self

import numpy as np
from pydantic import Field, model_validator

from cellbench_sdk import (
    REST,
    ChannelDriver,
    ChannelInfo,
    Clock,
    OutOfRange,
    Profile,
    ProfileQuantity,
    SampleBatch,
    Step,
    StepMode,
    WhileOpen,
    step_beyond,
)
from cellbench_sdk.cell import (
    CellBank,
    CellOutputs,
    CellParameters,
    FloatArray,
    Mode,
    OutputRange,
    Setpoints,
)

_MODES = {
    StepMode.REST: Mode.REST,
    StepMode.CC: Mode.CC,
    StepMode.CV: Mode.CV,
    StepMode.CCCV: Mode.CCCV,
    StepMode.CP: Mode.CP,
    StepMode.CR: Mode.CR,
}
# The cell-model mode a profile runs in, and the setpoint array it moves.
_PROFILE_MODES = {
    ProfileQuantity.CURRENT: (Mode.CC, "current_a"),
    ProfileQuantity.POWER: (Mode.CP, "power_w"),
    ProfileQuantity.VOLTAGE: (Mode.CV, "voltage_v"),
}


class SimChannelSettings(CellParameters):
    """Settings of a simulated channel bank: its channels' output ranges and their cells."""

    count: Annotated[int, Field(ge=1, le=100_000)] = 8
    """Number of channels, each with one cell."""
    voltage_min_v: float = 0.0
    """Lowest output voltage of a channel (V)."""
    voltage_max_v: float = 5.0
    """Highest output voltage of a channel (V)."""
    current_max_a: Annotated[float, Field(gt=0)] = 10.0
    """Largest current a channel drives in either direction (A)."""
    power_max_w: Annotated[float, Field(gt=0)] = 50.0
    """Largest power a channel delivers or absorbs (W)."""

    @model_validator(mode="after")
    def _voltage_range(self) -> Self:
        if self.voltage_min_v >= self.voltage_max_v:
            raise ValueError(
                f"voltage_min_v ({self.voltage_min_v} V) must be below "
                f"voltage_max_v ({self.voltage_max_v} V)"
            )
        return self


class SimChannels(ChannelDriver):
    """Simulated channels: every :meth:`measure` advances all cells in one vectorised update.

    A step applied between two measurements takes effect at the clock time of :meth:`apply`.
    A profile step holds its table: before each update the channel's setpoint becomes the
    profile's mean over the update (a current or power, so the charge passed is exact) or its
    value at the end of it (a voltage, which CV reaches at the end of the update).
    """

    virtual_time_ok = True
    name = "sim"

    def __init__(self, settings: SimChannelSettings | None = None) -> None:
        self.settings = settings or SimChannelSettings()
        s = self.settings
        self.cells = CellBank(s.count, s)
        self._range = OutputRange(s.voltage_min_v, s.voltage_max_v, s.current_max_a, s.power_max_w)
        self._setpoints = Setpoints.rest(s.count)
        # Shared by every batch; read-only so that no consumer can change another's rows.
        self._channel_index = np.arange(s.count, dtype=np.int64)
        self._channel_index.flags.writeable = False
        self._clock = WhileOpen[Clock](self)
        self._t = 0.0  # clock time the whole bank has been advanced to
        # Channels already advanced past ``_t`` because a step was applied to them, and the
        # time each has reached.
        self._ahead: dict[int, float] = {}
        # Channels following a profile, grouped by profile (channels of one plan share it),
        # and the clock time each channel's profile began.
        self._profiles: dict[int, tuple[Profile, dict[int, None]]] = {}
        self._profile_of: dict[int, int] = {}
        self._profile_t0 = np.zeros(s.count)

    @cached_property
    def channels(self) -> Sequence[ChannelInfo]:
        r = self._range
        return tuple(
            ChannelInfo(
                f"{self.name}/{i}", r.voltage_min_v, r.voltage_max_v, r.current_max_a, r.power_max_w
            )
            for i in range(self.settings.count)
        )

    async def open(self, clock: Clock) -> None:
        self._clock.set(clock)
        self._t = clock.now()
        self._ahead.clear()

    async def close(self) -> None:
        clock = self._clock.clear()
        if clock is not None:
            self._advance(clock.now())
        self._setpoints.mode[:] = Mode.REST

    async def apply(self, channel: int, step: Step) -> None:
        clock = self._clock.get()
        c = self._check_channel(channel)
        self._check_step(c, step)
        self._catch_up(c, clock.now())
        sp = self._setpoints
        self._leave_profile(c)
        # CV without a current limit may use the channel's whole current range.
        sp.current_a[c] = self._range.current_max_a if step.current_a is None else step.current_a
        sp.voltage_v[c] = step.voltage_v or 0.0
        sp.power_w[c] = step.power_w or 0.0
        sp.resistance_ohm[c] = step.resistance_ohm if step.mode is StepMode.CR else 1.0
        if step.profile is None:
            sp.mode[c] = _MODES[step.mode]
            return
        profile = step.profile
        sp.mode[c] = _PROFILE_MODES[profile.quantity][0]
        self._profiles.setdefault(id(profile), (profile, {}))[1][c] = None
        self._profile_of[c] = id(profile)
        self._profile_t0[c] = clock.now()
        self._follow_profiles(np.full(self.settings.count, clock.now()), clock.now(), c)

    async def apply_bank(self, steps: Sequence[tuple[int, Step]]) -> None:
        """Apply many channels' steps as one array update per distinct step (a thousand
        channels starting one plan share their first step); all are checked before any
        changes. Profile steps go one channel at a time."""
        now = self._clock.get().now()
        checked: set[int] = set()
        by_step: dict[int, tuple[Step, list[int]]] = {}
        for channel, step in steps:
            c = self._check_channel(channel)
            if id(step) not in checked:  # a step's range check holds for the whole bank
                self._check_step(c, step)
                checked.add(id(step))
            by_step.setdefault(id(step), (step, []))[1].append(c)
        for step, channels in by_step.values():
            if step.profile is not None:
                for c in channels:
                    await self.apply(c, step)
                continue
            self._catch_up_many(channels, now)
            for c in self._profile_of.keys() & set(channels):
                self._leave_profile(c)
            sp, index = self._setpoints, np.array(channels, dtype=np.int64)
            current = self._range.current_max_a if step.current_a is None else step.current_a
            sp.current_a[index] = current
            sp.voltage_v[index] = step.voltage_v or 0.0
            sp.power_w[index] = step.power_w or 0.0
            sp.resistance_ohm[index] = step.resistance_ohm if step.mode is StepMode.CR else 1.0
            sp.mode[index] = _MODES[step.mode]

    async def output_off(self, channel: int) -> None:
        await self.apply(channel, REST)

    async def output_off_bank(self, channels: Sequence[int]) -> None:
        await self.apply_bank([(channel, REST) for channel in channels])

    async def measure(self) -> SampleBatch:
        now = self._clock.get().now()
        v, i, t = self._advance(now)
        return SampleBatch(self._channel_index, np.full(self.settings.count, now), v, i, t)

    def set_ambient(self, channel: int, celsius: float) -> None:
        """Set the ambient temperature (°C) of ``channel``'s cell, for example from a chamber."""
        c = self._check_channel(channel)
        if not (math.isfinite(celsius) and -80.0 <= celsius <= 200.0):
            raise OutOfRange(
                self.name, f"ambient of channel {c} must be -80..200 °C, not {celsius!r}"
            )
        self.cells.ambient_c[c] = celsius

    def _leave_profile(self, c: int) -> None:
        key = self._profile_of.pop(c, None)
        if key is not None:
            channels = self._profiles[key][1]
            del channels[c]
            if not channels:
                del self._profiles[key]

    def _follow_profiles(self, since: FloatArray, now: float, only: int | None = None) -> None:
        """Set the setpoint of each channel on a profile (or of ``only``) for its update from
        ``since[channel]`` to ``now``."""
        for profile, members in self._profiles.values():
            if only is not None:
                if only not in members:
                    continue
                channels = np.array([only])
            else:
                channels = np.fromiter(members, np.int64, len(members))
            t0 = self._profile_t0[channels]
            target = getattr(self._setpoints, _PROFILE_MODES[profile.quantity][1])
            if profile.quantity is ProfileQuantity.VOLTAGE:
                target[channels] = profile.at(now - t0)
            else:
                target[channels] = profile.mean(since[channels] - t0, now - t0)

    def _advance(self, now: float) -> CellOutputs:
        """Advance every cell to ``now``; return the state of every cell at ``now``."""
        dt = now - self._t
        cells = self.cells
        if self._ahead:
            dts = np.full(self.settings.count, dt)
            ahead = np.fromiter(self._ahead.keys(), np.int64, len(self._ahead))
            dts[ahead] = now - np.fromiter(self._ahead.values(), np.float64, len(self._ahead))
            self._ahead.clear()
            if self._profiles:
                self._follow_profiles(now - dts, now)
            out = cells.advance(dts, self._setpoints, self._range)
        elif dt > 0.0:
            if self._profiles:
                self._follow_profiles(np.full(self.settings.count, self._t), now)
            out = cells.advance(dt, self._setpoints, self._range)
        else:
            out = CellOutputs(
                cells.voltage_v.copy(), cells.current_a.copy(), cells.temperature_c.copy()
            )
        self._t = max(self._t, now)
        return out

    def _catch_up(self, c: int, now: float) -> None:
        """Advance channel ``c`` alone to ``now`` under its present step."""
        t = self._ahead.get(c, self._t)
        if now > t:
            if c in self._profile_of:
                self._follow_profiles(np.full(self.settings.count, t), now, c)
            self.cells.advance(now - t, self._setpoints, self._range, slice(c, c + 1))
            self._ahead[c] = now

    def _catch_up_many(self, channels: Sequence[int], now: float) -> None:
        """:meth:`_catch_up` each of ``channels``; those at the bank's time in runs of
        neighbours, one slice each."""
        alone = [c for c in channels if c in self._ahead or c in self._profile_of]
        for c in alone:
            self._catch_up(c, now)
        if now <= self._t:
            return
        together = np.unique(np.setdiff1d(np.asarray(channels, dtype=np.int64), alone))
        breaks = np.flatnonzero(np.diff(together) != 1) + 1
        for run in np.split(together, breaks):
            if len(run):
                first, last = int(run[0]), int(run[-1])
                self.cells.advance(now - self._t, self._setpoints, self._range,
                                   slice(first, last + 1))
        self._ahead.update(dict.fromkeys(together.tolist(), now))

    def _check_channel(self, channel: int) -> int:
        c = operator.index(channel)
        if not 0 <= c < self.settings.count:
            raise OutOfRange(
                self.name, f"no channel {channel} (channels are 0..{self.settings.count - 1})"
            )
        return c

    def _check_step(self, c: int, step: Step) -> None:
        """Raise :class:`OutOfRange` unless ``step`` lies inside the channel's output range."""
        problem = step_beyond(step, self._range)
        if problem:
            raise OutOfRange(self.name, f"channel {c}, {step.mode.value} step: {problem}")
