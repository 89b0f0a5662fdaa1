"""The bulk channel runs a step up to the sample at which its own end conditions or limits
hold, in one measure, and reports what the plain channel reports there."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from cellbench_sdk import EndCondition, EndQuantity, Step, StepLimits, StepMode, VirtualClock
from cellbench_sim.bulk import BulkSimChannel, BulkSimSettings
from cellbench_sim.channel import SimChannels, SimChannelSettings

NOMINAL = {"capacity_spread": 0.0, "resistance_spread": 0.0}
DISCHARGE = Step(StepMode.CC, current_a=-2.5,
                 ends=((EndCondition(EndQuantity.VOLTAGE, False, 3.0),),
                       (EndCondition(EndQuantity.STEP_TIME, True, 7200.0),)))


async def _bulk(step: Step, period_s: float) -> list[tuple[float, float, float]]:
    clock = VirtualClock()
    channel = BulkSimChannel(BulkSimSettings(period_s=period_s, **NOMINAL))
    await channel.open(clock)
    await channel.apply(0, step)
    batch = await channel.measure()
    assert clock.now() == batch.time_s[-1]  # the channel moved the clock to its last sample
    return list(zip(batch.time_s, batch.voltage_v, batch.current_a, strict=True))


async def _plain(step: Step, period_s: float, stop_v: float) -> tuple[float, float]:
    """Time and voltage of the first sample of the plain channel at or below ``stop_v``."""
    clock = VirtualClock()
    channel = SimChannels(SimChannelSettings(count=1, **NOMINAL))
    await channel.open(clock)
    await channel.apply(0, step)
    while True:
        await clock.sleep_until(clock.now() + period_s)
        batch = await channel.measure()
        if batch.voltage_v[0] <= stop_v:
            return float(batch.time_s[0]), float(batch.voltage_v[0])


def test_a_cc_step_ends_on_the_sample_the_plain_channel_ends_it() -> None:
    samples = asyncio.run(_bulk(DISCHARGE, 5.0))
    t, v = asyncio.run(_plain(DISCHARGE, 5.0, 3.0))
    (t_before, v_before, i_mean), (t_end, v_end, i_end) = samples
    assert (t_before, t_end) == (t - 5.0, t)
    assert v_end == pytest.approx(v, abs=0.01) and v_end <= 3.0 < v_before
    assert i_mean == pytest.approx(-2.5) and i_end == pytest.approx(-2.5)


def test_a_limit_ends_the_run_ahead_too() -> None:
    limited = Step(StepMode.CC, current_a=-2.5, limits=StepLimits(voltage_min_v=3.2),
                   ends=DISCHARGE.ends)
    *_, (t_end, v_end, _) = asyncio.run(_bulk(limited, 5.0))
    assert v_end < 3.2
    assert t_end < asyncio.run(_bulk(DISCHARGE, 5.0))[-1][0]


def test_a_step_without_ends_takes_one_period() -> None:
    samples = asyncio.run(_bulk(Step(StepMode.CC, current_a=-2.5), 5.0))
    assert [t for t, _, _ in samples] == [5.0]


def test_the_bulk_channel_is_one_channel() -> None:
    with pytest.raises(ValidationError):
        BulkSimSettings(count=2)
