"""A vendor library's channel bank: channels with ranges that hold a step, switch off and are
measured, through the library."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from cellbench_native.handle import Handle, Library
from cellbench_native.library import ChannelSpec, StepSpec
from cellbench_native.settings import NativeSettings
from cellbench_sdk import (
    BadReply,
    ChannelDriver,
    ChannelInfo,
    Clock,
    OutOfRange,
    SampleBatch,
    Step,
    WhileOpen,
    step_beyond,
)

_SAMPLE_FIELDS = {"channel": np.int32, "age_s": np.float64, "voltage_v": np.float64,
                  "current_a": np.float64, "temperature_c": np.float64}


class NativeChannels(ChannelDriver):
    """The channels ``cb_describe_channel`` lists. Steps are checked against their ranges before
    ``cb_apply``; ``cb_measure``'s samples are checked (channel, age) and stamped with the
    station clock; every output is switched off before the library is closed."""

    def __init__(self, settings: NativeSettings) -> None:
        self.settings = settings
        self.name = settings.device_name
        self.handle = Handle(settings, "bank", self.name)
        self._clock = WhileOpen[Clock](self)
        self._channels: tuple[ChannelInfo, ...] = ()
        self._sample = np.dtype([])
        self._last = np.zeros(0)

    @property
    def channels(self) -> Sequence[ChannelInfo]:
        self._clock.get()  # refuses unless open: the library describes them when it opens
        return self._channels

    async def open(self, clock: Clock) -> None:
        async def describe(library: Library
                           ) -> tuple[list[ChannelSpec], tuple[int, dict[str, int]]]:
            return await library.channels(), await library.sample_layout()

        specs, (size, offsets) = await self.handle.open(describe)
        self._channels = tuple(ChannelInfo(s.name, s.voltage_min_v, s.voltage_max_v,
                                           s.current_max_a, s.power_max_w) for s in specs)
        # cb_sample as the library's process lays it out, to read cb_measure's bytes in place.
        self._sample = np.dtype({"names": list(_SAMPLE_FIELDS),
                                 "formats": list(_SAMPLE_FIELDS.values()),
                                 "offsets": [offsets[name] for name in _SAMPLE_FIELDS],
                                 "itemsize": size})
        self._last = np.full(len(specs), -math.inf)
        self._clock.set(clock)

    async def close(self) -> None:
        self._clock.clear()
        await self.handle.close(channels_off=len(self._channels))

    async def apply(self, channel: int, step: Step) -> None:
        self._clock.get()
        c = self._check_channel(channel)
        problem = step_beyond(step, self._channels[c])
        if problem:
            raise OutOfRange(self.name, f"channel {c}, {step.mode.value} step: {problem}")
        spec = _step_spec(step)
        await self.handle.call(lambda library: library.apply(c, spec))

    async def output_off(self, channel: int) -> None:
        self._clock.get()
        c = self._check_channel(channel)
        await self.handle.call(lambda library: library.output_off(c))

    async def measure(self) -> SampleBatch:
        clock = self._clock.get()
        raw = await self.handle.call(lambda library: library.measure())
        now = clock.now()
        if len(raw) % self._sample.itemsize:
            raise BadReply(self.name, f"cb_measure gave {len(raw)} bytes, not a whole number "
                           f"of {self._sample.itemsize}-byte samples")
        samples = np.frombuffer(raw, self._sample)
        channel = samples["channel"].astype(np.int64)
        age = samples["age_s"]
        once = self._check_samples(channel, age)
        # Each row is stamped with the station clock; a row stamped before the channel's latest
        # one of the previous call (the reply's transit time varies) is moved up to it.
        time_s = np.maximum(now - age, self._last[channel])
        if once:  # the usual case: one sample per channel
            self._last[channel] = time_s
        else:
            np.maximum.at(self._last, channel, time_s)
        return SampleBatch(channel, time_s, samples["voltage_v"].copy(),
                           samples["current_a"].copy(), samples["temperature_c"].copy())

    def _check_samples(self, channel: npt.NDArray[np.int64], age: npt.NDArray[np.float64]
                       ) -> bool:
        """Refuse samples of unknown channels, bad ages, channels missing or out of time
        order; whether every channel has exactly one sample."""
        count = len(self._channels)
        outside = channel[(channel < 0) | (channel >= count)]
        if outside.size:
            raise BadReply(self.name, f"cb_measure gave a sample of channel {outside[0]}; the "
                           f"channels are 0..{count - 1}")
        bad_age = age[~(np.isfinite(age) & (age >= 0))]
        if bad_age.size:
            raise BadReply(self.name, f"cb_measure gave a sample aged {float(bad_age[0])!r} "
                           "s; ages are finite and not negative")
        per_channel = np.bincount(channel, minlength=count)
        missing = np.flatnonzero(per_channel == 0)
        if missing.size:
            raise BadReply(self.name, f"cb_measure gave no sample of channel {missing[0]}; "
                           "every call returns at least the latest of every channel")
        if len(channel) == count:
            return True
        order = np.argsort(channel, kind="stable")
        same = channel[order][1:] == channel[order][:-1]
        younger_first = same & (age[order][1:] > age[order][:-1])
        if younger_first.any():
            c = channel[order][1:][younger_first][0]
            raise BadReply(self.name, f"cb_measure gave the samples of channel {c} out of time "
                           "order")
        return False

    def _check_channel(self, channel: int) -> int:
        c = operator.index(channel)
        if not 0 <= c < len(self._channels):
            raise OutOfRange(self.name, f"no channel {channel} (channels are "
                             f"0..{len(self._channels) - 1})")
        return c


def _step_spec(step: Step) -> StepSpec:
    """``step`` as ``cb_step`` carries it."""
    def value(v: float | None) -> float:
        return math.nan if v is None else v

    profile = step.profile
    return StepSpec(
        step.mode.name, value(step.current_a), value(step.voltage_v), value(step.power_w),
        value(step.resistance_ohm),
        profile.quantity.name if profile is not None else "CURRENT",
        profile.hold if profile is not None else False,
        profile.time_s if profile is not None else (),
        profile.value if profile is not None else ())
