"""HAL value types, clocks, timeouts and the per-handle worker thread."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from cellbench_hal import (
    DeviceTimeout,
    DeviceWorker,
    RealClock,
    Step,
    StepLimits,
    StepMode,
    VirtualClock,
    call_with_timeout,
)


@pytest.mark.parametrize(("mode", "kwargs"), [
    (StepMode.CC, {}),
    (StepMode.CV, {}),
    (StepMode.CCCV, {"current_a": 1.0}),
    (StepMode.CP, {}),
    (StepMode.CR, {}),
])
def test_step_needs_the_setpoints_of_its_mode(mode: StepMode, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=f"a {mode.value} step needs"):
        Step(mode, **kwargs)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_step_rejects_non_finite_values(bad: float) -> None:
    with pytest.raises(ValueError, match="must be a finite number"):
        Step(StepMode.CC, current_a=bad)


def test_step_rejects_non_positive_resistance_and_cv_limit() -> None:
    with pytest.raises(ValueError, match="resistance_ohm must be positive"):
        Step(StepMode.CR, resistance_ohm=0.0)
    with pytest.raises(ValueError, match="current limit of a cv step must be positive"):
        Step(StepMode.CV, voltage_v=4.2, current_a=-1.0)


def test_virtual_clock_as_fast_as_possible_jumps() -> None:
    clock = VirtualClock()

    async def run() -> tuple[float, float]:
        started = time.monotonic()
        await clock.sleep_until(7 * 24 * 3600.0)  # a week
        return clock.now(), time.monotonic() - started

    now, wall = asyncio.run(run())
    assert now == 7 * 24 * 3600.0
    assert wall < 60  # it did not wait for a week
    assert clock.unix(now) - clock.unix(0.0) == pytest.approx(now)
    assert clock.virtual


def test_paced_virtual_clock_runs_faster_than_the_wall() -> None:
    clock = VirtualClock(speed=1000.0)

    async def run() -> float:
        await clock.sleep_until(clock.now() + 50.0)
        return clock.now()

    assert asyncio.run(run()) >= 50.0
    with pytest.raises(ValueError, match="positive finite"):
        VirtualClock(speed=0)


def test_real_clock_is_monotonic_and_maps_to_unix_time() -> None:
    clock = RealClock()
    assert not clock.virtual
    assert abs(clock.unix(clock.now()) - time.time()) < 1.0


def test_a_clock_continues_after_the_last_stored_time_stamp() -> None:
    clock = VirtualClock()
    ahead = clock.unix(clock.now()) + 3600.0  # a previous run's virtual time ran ahead
    clock.continue_after(ahead)
    assert clock.unix(clock.now()) == pytest.approx(ahead)
    clock.continue_after(ahead - 7200.0)  # an earlier one changes nothing
    assert clock.unix(clock.now()) == pytest.approx(ahead)


def test_call_with_timeout_names_device_and_call() -> None:
    async def hang() -> None:
        await asyncio.sleep(10)

    with pytest.raises(DeviceTimeout, match=r"chamber@COM3: read did not answer within 0\.05 s"):
        asyncio.run(call_with_timeout(hang(), 0.05, "chamber@COM3", "read"))


def test_worker_serialises_calls_on_one_thread_and_times_out() -> None:
    worker = DeviceWorker("usb-logger", timeout=0.2)
    seen: list[str] = []
    release = threading.Event()

    def record(tag: str) -> str:
        seen.append(threading.current_thread().name)
        return tag

    def stuck() -> None:
        release.wait(5)

    async def run() -> tuple[str, str]:
        first = await worker.call(record, "a")
        second = await worker.call(record, tag="b")
        with pytest.raises(DeviceTimeout, match="usb-logger: stuck did not answer"):
            await worker.call(stuck)
        return first, second

    try:
        assert asyncio.run(run()) == ("a", "b")
    finally:
        release.set()
        worker.close()
        worker.close()  # idempotent
    assert len(set(seen)) == 1
    assert seen[0].startswith("cellbench-usb-logger")


def test_step_limits_default_to_none_and_refuse_nan_and_negative_currents() -> None:
    assert StepLimits() == StepLimits(math.inf, -math.inf, math.inf, math.inf)
    with pytest.raises(ValueError, match="voltage_max_v must be a number or inf, not nan"):
        StepLimits(voltage_max_v=math.nan)
    with pytest.raises(ValueError, match="current limits are magnitudes"):
        StepLimits(charge_current_max_a=-1.0)
