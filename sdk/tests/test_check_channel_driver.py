"""check_channel_driver passes the simulated channels and catches each kind of broken driver."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pytest

from cellbench_sdk import (
    REST,
    ChannelInfo,
    DeviceConnectionError,
    DeviceError,
    NotSupported,
    RealClock,
    SampleBatch,
    Step,
    StepMode,
    VirtualClock,
)
from cellbench_sdk.testing import check_channel_driver, check_device
from cellbench_sim.channel import SimChannels, SimChannelSettings


def check(driver: SimChannels, settle_s: float = 1.0,
          timeout_s: float = 5.0) -> frozenset[StepMode]:
    return asyncio.run(check_channel_driver(driver, settle_s=settle_s, timeout_s=timeout_s))


def test_simulated_channels_pass_and_accept_every_mode() -> None:
    assert check(SimChannels()) == set(StepMode)
    settings = SimChannelSettings(count=1, chemistry="lfp", voltage_min_v=-1.0, power_max_w=5.0)
    assert check(SimChannels(settings), settle_s=3600.0) == set(StepMode)
    check_device(SimChannels(SimChannelSettings(count=3)))


class CcOnly(SimChannels):
    """A driver whose hardware only does constant current: other modes are NotSupported."""

    async def apply(self, channel: int, step: Step) -> None:
        if step.mode is not StepMode.CC:
            self._clock.get()
            raise NotSupported(self.name, f"no {step.mode.value} mode")
        await super().apply(channel, step)

    async def output_off(self, channel: int) -> None:
        await super().apply(channel, REST)


def test_modes_refused_with_not_supported_are_left_out() -> None:
    assert check(CcOnly()) == {StepMode.CC}


def test_real_hardware_is_not_checked_on_a_virtual_clock() -> None:
    class Real(SimChannels):
        virtual_time_ok = False

    with pytest.raises(ValueError, match="real hardware"):
        check_device(Real(), VirtualClock())
    assert asyncio.run(check_channel_driver(Real(), RealClock(), settle_s=0.001))


def test_a_failure_states_the_contract_and_what_the_driver_did() -> None:
    class IgnoresUnknownChannels(SimChannels):
        async def apply(self, channel: int, step: Step) -> None:
            if channel < self.settings.count:
                await super().apply(channel, step)

    with pytest.raises(AssertionError) as failure:
        check(IgnoresUnknownChannels(SimChannelSettings(count=2)))
    assert str(failure.value) == (
        "IgnoresUnknownChannels 'sim': apply(2, Step(StepMode.CC, current_a=1))\n"
        "  contract: a channel index outside 0..1 is refused with OutOfRange (negative indices "
        "do not count from the end)\n"
        "  got:      returned without an error")


# Each broken driver below violates one rule; the check must name it.


class MismatchedLengths(SimChannels):
    async def measure(self) -> SampleBatch:
        batch = await super().measure()
        return dataclasses.replace(batch, voltage_v=batch.voltage_v[:-1])


class ForgetsLastChannel(SimChannels):
    async def measure(self) -> SampleBatch:
        b = await super().measure()
        keep = slice(0, -1)
        return SampleBatch(b.channel[keep], b.time_s[keep], b.voltage_v[keep],
                           b.current_a[keep], b.temperature_c[keep])


class ChannelsOffByOne(SimChannels):
    async def measure(self) -> SampleBatch:
        return dataclasses.replace(await super().measure(), channel=np.arange(1, 9))


class Int32Channels(SimChannels):
    async def measure(self) -> SampleBatch:
        batch = await super().measure()
        return dataclasses.replace(batch, channel=batch.channel.astype(np.int32))


class ListColumn(SimChannels):
    async def measure(self) -> SampleBatch:
        batch = await super().measure()
        return dataclasses.replace(batch, current_a=list(batch.current_a))  # type: ignore[arg-type]


class ShortAuxColumn(SimChannels):
    async def measure(self) -> SampleBatch:
        batch = await super().measure()
        return dataclasses.replace(batch, aux={"cell_2_v": np.zeros(3)})


class NotABatch(SimChannels):
    async def measure(self) -> SampleBatch:
        return [await super().measure()]  # type: ignore[return-value]


class StampsTheFuture(SimChannels):
    async def measure(self) -> SampleBatch:
        batch = await super().measure()
        return dataclasses.replace(batch, time_s=batch.time_s + 1.0)


class StampsNaN(SimChannels):
    async def measure(self) -> SampleBatch:
        batch = await super().measure()
        return dataclasses.replace(batch, time_s=np.full(len(batch), math.nan))


class TimeRunsBackAcrossCalls(SimChannels):
    calls = 0

    async def measure(self) -> SampleBatch:
        batch = await super().measure()
        self.calls += 1
        return dataclasses.replace(batch, time_s=batch.time_s - 10.0 * self.calls)


class TimeRunsBackWithinBatch(SimChannels):
    async def measure(self) -> SampleBatch:
        b = await super().measure()
        extra = [0]  # a second, earlier sample of channel 0 after the first
        return SampleBatch(np.r_[b.channel, b.channel[extra]], np.r_[b.time_s, b.time_s[extra] - 1],
                           np.r_[b.voltage_v, b.voltage_v[extra]],
                           np.r_[b.current_a, b.current_a[extra]],
                           np.r_[b.temperature_c, b.temperature_c[extra]])


class OutputOffDoesNothing(SimChannels):
    async def output_off(self, channel: int) -> None:
        self._clock.get()
        self._check_channel(channel)


class NegativeIndexCountsFromTheEnd(SimChannels):
    def _check_channel(self, channel: int) -> int:
        return super()._check_channel(channel + self.settings.count if channel < 0 else channel)


class AcceptsAnyCurrent(SimChannels):
    def _check_step(self, c: int, step: Step) -> None:
        pass


class RefusesConstantPower(SimChannels):
    async def apply(self, channel: int, step: Step) -> None:
        if step.mode is StepMode.CP:
            raise DeviceError(self.name, "CP failed")
        await super().apply(channel, step)


class RestOnly(SimChannels):
    async def apply(self, channel: int, step: Step) -> None:
        if step.mode is not StepMode.REST:
            raise NotSupported(self.name, "rest only")
        await super().apply(channel, step)


class UntypedErrorWhenNotOpen(SimChannels):
    async def measure(self) -> SampleBatch:
        if not self._clock.is_open:
            raise RuntimeError("no connection")
        return await super().measure()


class WorksAfterClose(SimChannels):
    async def close(self) -> None:
        clock = self._clock.get() if self._clock.is_open else None
        await super().close()
        if clock is not None:
            self._clock.set(clock)


class CloseTwiceFails(SimChannels):
    async def close(self) -> None:
        if not self._clock.is_open:
            raise DeviceConnectionError(self.name, "already closed")
        await super().close()


class NoChannels(SimChannels):
    @property
    def channels(self) -> Sequence[ChannelInfo]:
        return ()


class BackwardsRange(SimChannels):
    @property
    def channels(self) -> Sequence[ChannelInfo]:
        return [ChannelInfo(f"c{i}", 5.0, 0.0, 10.0) for i in range(8)]


class SameNames(SimChannels):
    @property
    def channels(self) -> Sequence[ChannelInfo]:
        return [ChannelInfo("c", 0.0, 5.0, 10.0) for _ in range(8)]


class HangsInMeasure(SimChannels):
    async def measure(self) -> SampleBatch:
        if self._clock.is_open:
            await asyncio.Event().wait()
        return await super().measure()


BROKEN: list[tuple[type[SimChannels], list[str]]] = [
    (MismatchedLengths, ["equal lengths", "voltage_v: 7"]),
    (ForgetsLastChannel, ["latest sample of every channel", "no sample of channel 7"]),
    (ChannelsOffByOne, ["indices 0..7", "channel index 8"]),
    (Int32Channels, ["channel holds int64", "channel is a 1-D array of int32"]),
    (ListColumn, ["1-D numpy array", "current_a is a list"]),
    (ShortAuxColumn, ["equal lengths", "aux['cell_2_v']: 3"]),
    (NotABatch, ["returns a SampleBatch", "returned [SampleBatch("]),
    (StampsTheFuture, ["never later than the clock's now()",
                       "time_s 1 s while the clock read 0 s"]),
    (StampsNaN, ["time_s is finite", "nan"]),
    (TimeRunsBackAcrossCalls, ["from one measure() to the next",
                               "channel 0 returned -19 s after -10 s"]),
    (TimeRunsBackWithinBatch, ["rows of one channel are in time order", "from 0 s to -1 s"]),
    (OutputOffDoesNothing, ["after output_off(0)", "|current| <= 0.01 A", "measured 1 A"]),
    (NegativeIndexCountsFromTheEnd, ["apply(-1, Step(StepMode.CC, current_a=1))",
                                     "returned without an error"]),
    (AcceptsAnyCurrent, ["apply(0, Step(StepMode.CV, current_a=1, voltage_v=10))",
                         "beyond the channel's ranges (0..5 V, ±10 A, ±50 W)"]),
    (RefusesConstantPower, ["apply(0, Step(StepMode.CP, power_w=5))", "NotSupported if the "
                            "hardware lacks its mode", "raised DeviceError: sim: CP failed"]),
    (RestOnly, ["at least one mode that drives current", "accepted only rest"]),
    (UntypedErrorWhenNotOpen, ["measure() before open()", "raise DeviceConnectionError",
                               "raised RuntimeError: no connection"]),
    (WorksAfterClose, ["measure() after close()", "returned without an error"]),
    (CloseTwiceFails, ["close() before open()", "idempotent", "DeviceConnectionError"]),
    (NoChannels, ["at least one channel", "()"]),
    (BackwardsRange, ["voltage_min_v < voltage_max_v", "channels[0] has voltage range 5.0..0.0"]),
    (SameNames, ["channel names are unique", "['c'] appear more than once"]),
    (HangsInMeasure, ["measure()", "returns or raises within its timeout", "within 0.5 s"]),
]


@pytest.mark.parametrize(("broken", "fragments"), BROKEN, ids=[b.__name__ for b, _ in BROKEN])
def test_each_violation_is_caught_with_a_clear_message(broken: type[SimChannels],
                                                       fragments: list[str]) -> None:
    # Each call of a simulator takes microseconds; only the hanging one reaches the timeout.
    with pytest.raises(AssertionError) as failure:
        check(broken(), timeout_s=0.5)
    message = str(failure.value)
    assert message.startswith(f"{broken.__name__} 'sim': ")
    for fragment in fragments:
        assert fragment in message
