"""Plans run by the station's runner on emulated instruments whose cells run faster than the
wall clock (the station on a virtual clock of the same pace, as only emulators may)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from cellbench_core.runner import ChannelRef, Runner, TestRequest
from cellbench_core.storage import SampleWriter, open_database
from cellbench_scpi.emulator import TEMPERATURE_QUERY, Emulator
from cellbench_sdk import RealClock, Step, StepLimits, StepMode, TestStatus, VirtualClock
from cellbench_sdk.cell import CellParameters

from .conftest import RunPlan, driver_for

ROOT = Path(__file__).resolve().parents[3]


def _cell(**values: float) -> CellParameters:
    return CellParameters.model_validate({"capacity_spread": 0.0, "resistance_spread": 0.0,
                                          **values})


CCCV = """\
name: cccv
capacity: 0.5 Ah
limits:
  voltage_max: 4.25 V
  voltage_min: 2.5 V
  current_max: 1 A
steps:
  - Charge at 1C to 3.9 V until C/10
"""


def test_cccv_current_decays_on_the_emulated_cell(run_plan: RunPlan) -> None:
    speed = 1000.0

    async def run() -> dict[str, np.ndarray]:
        async with Emulator.create("smu", speed=speed, params=_cell(capacity_ah=0.5)) as emu:
            driver = driver_for(emu, "smu", paced_speed=speed)
            clock = VirtualClock(speed)
            await driver.open(clock)
            try:
                result = await run_plan(CCCV, driver, clock, sample_period_s=5.0)
            finally:
                await driver.close()
            assert result.outcome.status is TestStatus.FINISHED, result.outcome.reason
            return result.samples()

    samples = asyncio.run(run())
    v, i = samples["voltage_v"], samples["current_a"]
    cv = np.flatnonzero(v >= 3.899)
    assert cv.size > 5, "the cell never reached the voltage"
    assert np.allclose(i[: cv[0] - 1], 0.5, atol=1e-3)  # constant current first
    tail = i[cv[0] + 1:]
    assert (np.diff(tail) <= 1e-4).all(), "the current does not decay at constant voltage"
    assert tail[0] > 0.3 and 0.0 < tail[-1] <= 0.051  # it ends at C/10


OVERCHARGE = """\
name: overcharge
limits:
  voltage_max: 3.9 V
  voltage_min: 2.5 V
  current_max: 1 A
steps:
  - mode: cc
    direction: charge
    current: 0.5 A
    for: 2 hours
"""


def test_the_software_limit_trips_before_the_instruments_protection(run_plan: RunPlan) -> None:
    # Close to the limit already, at a pace where a delayed tick cannot carry the cell the
    # 0.05 V to the compliance.
    speed = 200.0
    cell = _cell(capacity_ah=0.5, initial_soc=0.62)

    async def run() -> tuple[str, float, bool, str]:
        async with Emulator.create("smu", speed=speed, params=cell) as emu:
            driver = driver_for(emu, "smu", paced_speed=speed)
            clock = VirtualClock(speed)
            await driver.open(clock)
            try:
                result = await run_plan(OVERCHARGE, driver, clock, sample_period_s=2.0)
            finally:
                await driver.close()
            smu = emu.instruments[0]
            highest = float(result.samples()["voltage_v"].max())
            return result.outcome.reason, highest, smu.in_compliance, smu.tripped

    reason, highest, in_compliance, tripped = asyncio.run(run())
    assert reason.startswith("safety limit voltage_max 3.9 V: measured 3.9")
    assert highest < 3.95  # the compliance voltage: the limit and the margin
    assert not in_compliance and tripped == ""


def test_the_instruments_compliance_holds_the_cell_when_the_station_does_not() -> None:
    """The backstop alone: the limits programmed, nobody watching the voltage."""
    async def run() -> tuple[float, bool]:
        async with Emulator.create("smu", speed=2000.0, params=_cell(capacity_ah=0.1)) as emu:
            driver = driver_for(emu, "smu")
            await driver.open(RealClock())
            try:
                limits = StepLimits(voltage_max_v=3.9, voltage_min_v=2.5,
                                    charge_current_max_a=1.0, discharge_current_max_a=1.0)
                await driver.apply(0, Step(StepMode.CC, current_a=0.5, limits=limits))
                await asyncio.sleep(0.6)  # 20 minutes of the cell: far beyond 3.9 V at 5C
                batch = await driver.measure()
            finally:
                await driver.close()
            return float(batch.voltage_v[0]), emu.instruments[0].in_compliance

    volts, in_compliance = asyncio.run(run())
    assert volts == pytest.approx(3.95, abs=1e-3)
    assert in_compliance


def test_an_emulator_gone_mid_step_ends_the_test_with_an_alarm_and_the_output_off(
        tmp_path: Path) -> None:
    plan_text = "name: long charge\nsteps:\n  - Charge at 0.2 A for 1 hour\n"

    async def run() -> tuple[TestStatus, str, bool, bool]:
        from cellbench_core.plan import parse_plan

        emu = Emulator.create("smu")
        async with emu:
            driver = driver_for(emu, "smu", timeout_s=0.3)
            clock = RealClock()
            await driver.open(clock)
            db = open_database(f"sqlite:///{tmp_path / 'gone.db'}")
            writer = SampleWriter(db)
            runner = Runner(db, writer, clock, sample_period_s=0.02)
            request = TestRequest(ChannelRef(1, driver, "scpi-smu", 0),
                                  parse_plan(plan_text, "plan.yaml"), None)
            running = asyncio.create_task(runner.run([request]))
            smu = emu.instruments[0]
            while sum(line.startswith(":READ?") for line in smu.received) < 5:
                await asyncio.sleep(0.01)
            on_before = smu.output_on
            await emu.stop()  # the instrument's connections are gone, its output still on
            outcome = (await running)[0]
            await emu.start(ports=emu.ports)  # it is back
            await driver.close()  # station shutdown: connects again to switch the output off
            await asyncio.to_thread(writer.close)
            return outcome.status, outcome.reason, on_before, smu.output_on

    status, reason, on_before, on_after = asyncio.run(run())
    assert status is TestStatus.FAILED
    assert reason.startswith("device error: scpi-smu@TCPIP::127.0.0.1::")
    assert "connection lost: the instrument closed it during ':READ?'" in reason
    assert on_before and not on_after


def test_the_watchdog_switches_the_output_off_when_the_station_goes_silent() -> None:
    async def run() -> tuple[bool, bool, bool]:
        async with Emulator.create("bidirectional") as emu:
            driver = driver_for(emu, "bidirectional", watchdog_s=0.2)
            await driver.open(RealClock())
            try:
                await driver.apply(0, Step(StepMode.CC, current_a=1.0))
                unit = emu.instruments[0]
                on = unit.output_on
                for _ in range(6):  # talking: the watchdog stays quiet
                    await asyncio.sleep(0.05)
                    await driver.measure()
                still_on = unit.output_on
                await asyncio.sleep(0.4)  # silence, twice the watchdog's time
                return on, still_on, unit.output_on
            finally:
                await driver.close()

    on, still_on, on_after_silence = asyncio.run(run())
    assert on and still_on and not on_after_silence


def test_capacity_check_on_the_emulator_is_within_one_percent_of_the_sim_driver(
        run_plan: RunPlan) -> None:
    """plans/capacity-check.yaml up to its C/5 discharge (about 8 hours of cell time), on the
    emulated bidirectional supply at 8000x and on the sim driver with the same cell: the
    capacity (the charge of the C/5 discharge) agrees within 1 %.

    At 8000x a sample period of 60 s is 7.5 ms of the wall clock, and a loaded machine makes
    some ticks late; a late tick at the end of the discharge lets the cell run on to the
    instrument's regulation voltage (the limit less the margin), where the safety limit stops
    the test. The capacity differs by the little charge below 2.5 V.
    """
    from cellbench_sim.channel import SimChannels, SimChannelSettings

    plan = ROOT / "plans" / "capacity-check.yaml"
    speed, period, after_discharge = 8000.0, 60.0, 4

    async def run() -> list[float]:
        params = _cell()
        async with Emulator.create("bidirectional", speed=speed, params=params) as emu:
            driver = driver_for(emu, "bidirectional", paced_speed=speed,
                                temperature_query=TEMPERATURE_QUERY, watchdog_s=0)
            clock = VirtualClock(speed)
            await driver.open(clock)
            try:
                emulated = await run_plan(plan, driver, clock, sample_period_s=period,
                                          stop_at_step=after_discharge)
            finally:
                await driver.close()
        sim = SimChannels(SimChannelSettings(count=1, **params.model_dump(exclude={"seed"})))
        virtual = VirtualClock()
        await sim.open(virtual)
        try:
            simulated = await run_plan(plan, sim, virtual, sample_period_s=period, name="sim",
                                       stop_at_step=after_discharge)
        finally:
            await sim.close()
        capacities = []
        for result in (emulated, simulated):
            reason = result.outcome.reason
            assert (reason == f"reached step {after_discharge}"
                    or reason.startswith("safety limit voltage_min 2.45 V")), reason
            # The first discharge is the C/5 one (discharge-c5).
            step = next(s for s in result.db.steps(result.outcome.test_id)
                        if s.mode == "cc" and s.ah < 0)
            capacities.append(-step.ah)
        return capacities

    emulated, simulated = asyncio.run(run())
    assert emulated == pytest.approx(simulated, rel=0.01)
