"""Every plan mode on every driver, against the emulated instruments over real sockets (and a
pseudo-terminal), with the emulator's cell answering."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from cellbench_scpi.emulator import Emulator
from cellbench_sdk import (
    REST,
    Profile,
    ProfileQuantity,
    RealClock,
    Step,
    StepLimits,
    StepMode,
)

from .conftest import MODELS, driver_for

LIMITS = StepLimits(voltage_max_v=4.2, voltage_min_v=2.5, charge_current_max_a=2.0,
                    discharge_current_max_a=2.0)
PERIOD_S = 0.02


def _step(mode: StepMode, **values: object) -> Step:
    return Step(mode, limits=LIMITS, **values)  # type: ignore[arg-type]


def _hold(quantity: ProfileQuantity, first: float, second: float) -> Profile:
    return Profile(quantity, (0.0, 0.05), (first, second), hold=True)


#: A step of every mode, and what the samples taken while it runs must show: (volts, amps).
CASES: list[tuple[str, Step, Callable[[list[tuple[float, float]]], bool]]] = [
    ("cc charge", _step(StepMode.CC, current_a=1.0),
     lambda s: abs(s[-1][1] - 1.0) < 1e-3),
    ("cc discharge", _step(StepMode.CC, current_a=-0.5),
     lambda s: abs(s[-1][1] + 0.5) < 1e-3),
    ("cv above the cell: charges at its current limit", _step(StepMode.CV, voltage_v=4.1,
                                                              current_a=0.8),
     lambda s: abs(s[-1][1] - 0.8) < 1e-3),
    ("cccv below the cell: discharges at its current", _step(StepMode.CCCV, voltage_v=3.3,
                                                            current_a=-0.6),
     lambda s: abs(s[-1][1] + 0.6) < 1e-3),
    ("cp discharge", _step(StepMode.CP, power_w=-2.0),
     lambda s: abs(s[-1][0] * s[-1][1] + 2.0) < 0.05),
    ("cp charge", _step(StepMode.CP, power_w=1.5),
     lambda s: abs(s[-1][0] * s[-1][1] - 1.5) < 0.05),
    ("cr", _step(StepMode.CR, resistance_ohm=5.0),
     lambda s: abs(s[-1][1] + s[-1][0] / 5.0) < 0.02),
    ("current profile", _step(StepMode.PROFILE,
                              profile=_hold(ProfileQuantity.CURRENT, 0.7, -0.4)),
     lambda s: any(abs(i - 0.7) < 1e-3 for _, i in s) and abs(s[-1][1] + 0.4) < 1e-3),
    ("power profile", _step(StepMode.PROFILE, profile=_hold(ProfileQuantity.POWER, 1.0, -1.0)),
     lambda s: any(abs(v * i - 1.0) < 0.05 for v, i in s) and abs(s[-1][0] * s[-1][1] + 1.0)
     < 0.05),
    ("voltage profile", _step(StepMode.PROFILE, current_a=0.5,
                              profile=_hold(ProfileQuantity.VOLTAGE, 4.0, 3.4)),
     lambda s: any(abs(i - 0.5) < 1e-3 for _, i in s) and abs(s[-1][1] + 0.5) < 1e-3),
    ("rest", REST, lambda s: s[-1][1] == 0.0),
]


@pytest.mark.parametrize("model", MODELS)
def test_every_mode(model: str) -> None:
    async def run() -> list[str]:
        wrong = []
        async with Emulator.create(model, speed=20.0) as emulator:
            driver = driver_for(emulator, model)
            clock = RealClock()
            await driver.open(clock)
            try:
                for what, step, holds in CASES:
                    await driver.apply(0, step)
                    samples: list[tuple[float, float]] = []
                    since = clock.now()
                    # Past the profiles' change at 0.05 s by a few periods, however loaded.
                    while len(samples) < 5 or clock.now() - since < 0.13:
                        await asyncio.sleep(PERIOD_S)
                        batch = await driver.measure()
                        samples.append((float(batch.voltage_v[0]), float(batch.current_a[0])))
                    if not holds(samples):
                        wrong.append(f"{what}: {samples[-4:]}")
            finally:
                await driver.close()
            assert emulator.cell.both_on == 0, "supply and load were on at once"
            assert not any(i.output_on for i in emulator.instruments)
            assert not any(i.tripped for i in emulator.instruments)
        return wrong

    assert asyncio.run(run()) == []


def test_smu_over_a_serial_port() -> None:
    """The same driver over a pseudo-terminal: pyvisa's serial resource, the emulator on the
    other end."""
    async def run() -> list[float]:
        emulator = await Emulator.create("smu", speed=20.0).start_pty()
        async with emulator:
            driver = driver_for(emulator, "smu")
            await driver.open(RealClock())
            try:
                currents = []
                for step in (_step(StepMode.CC, current_a=0.3), _step(StepMode.CP, power_w=-1.0)):
                    await driver.apply(0, step)
                    for _ in range(5):
                        await asyncio.sleep(PERIOD_S)
                        batch = await driver.measure()
                    currents.append(float(batch.current_a[0] * (1.0 if step.power_w is None
                                                                else batch.voltage_v[0])))
            finally:
                await driver.close()
            assert emulator.resource().startswith("ASRL/dev/")
            assert not emulator.instruments[0].output_on
        return currents

    charge, power = asyncio.run(run())
    assert charge == pytest.approx(0.3, abs=1e-4)
    assert power == pytest.approx(-1.0, abs=0.03)


def test_a_slow_instrument_holds_up_no_other() -> None:
    """Each channel talks on its own worker thread: a measurement of a fast instrument
    completes while a slow one's is still waiting for its reply."""
    async def run() -> bool:
        async with Emulator.create("smu") as slow_emu, Emulator.create("smu") as fast_emu:
            slow, fast = driver_for(slow_emu, "smu"), driver_for(fast_emu, "smu")
            await slow.open(RealClock())
            await fast.open(RealClock())
            try:
                slow_emu.instruments[0].faults.slow_s = 0.3
                waiting = asyncio.create_task(slow.measure())
                await asyncio.sleep(0.05)  # the slow query is on its way
                quick = asyncio.create_task(fast.measure())
                done, _ = await asyncio.wait({waiting, quick},
                                             return_when=asyncio.FIRST_COMPLETED)
                await waiting
                return done == {quick}
            finally:
                await slow.close()
                await fast.close()

    assert asyncio.run(run())
