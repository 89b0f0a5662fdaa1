"""Ageing of the simulated cells: capacity fade and resistance growth against the model's
closed form (square root of time, linear in throughput, Arrhenius), zero ageing, settings."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from pydantic import ValidationError

from cellbench_sdk import REST, Step, StepMode, VirtualClock
from cellbench_sdk.ageing import CHEMISTRY_AGEING, AgeingSettings, fade_at
from cellbench_sdk.cell import CellBank, CellParameters, Mode, OutputRange, Setpoints
from cellbench_sim.channel import SimChannels, SimChannelSettings

CHANNEL = OutputRange(voltage_min_v=0.0, voltage_max_v=5.0, current_max_a=10.0)
YEAR_S = 365 * 86_400.0
NMC = CHEMISTRY_AGEING["nmc"]
#: Heat leaves the cell so fast that it stays at its ambient: ageing at a known temperature.
ISOTHERMAL = 1e6


def bank(count: int = 1, **overrides: object) -> CellBank:
    """Nominal cells without spread, held at their ambient temperature."""
    values: dict[str, object] = {"capacity_spread": 0.0, "resistance_spread": 0.0,
                                 "heat_transfer_w_per_k": ISOTHERMAL}
    return CellBank(count, CellParameters.model_validate(values | overrides))


def arrhenius_by_hand(celsius: float, activation_j_per_mol: float) -> float:
    return math.exp(activation_j_per_mol / 8.314462618 * (1 / 298.15 - 1 / (celsius + 273.15)))


@pytest.mark.parametrize("celsius", [25.0, 45.0, 5.0])
def test_calendar_fade_grows_with_the_square_root_of_time(celsius: float) -> None:
    cells = bank(ambient_c=celsius)
    rest = Setpoints.rest(1)
    speed = arrhenius_by_hand(celsius, 50_000.0)
    for day in range(1, 366):
        cells.advance(86_400.0, rest, CHANNEL)
        if day in (1, 30, 100, 365):
            years = math.sqrt(day / 365)
            assert cells.capacity_ah[0] == pytest.approx(
                2.5 * (1 - 0.04 * speed * years), rel=1e-12)
            assert cells.ageing is not None
            assert cells.ageing.resistance_factor[0] == pytest.approx(
                1 + 0.06 * speed * years, rel=1e-12)
    # A year in one update ages exactly as a year of days: the state sums a(T)²·dt.
    once = bank(ambient_c=celsius)
    once.advance(YEAR_S, rest, CHANNEL)
    assert once.capacity_ah[0] == pytest.approx(cells.capacity_ah[0], rel=1e-12)


def test_warmer_cells_age_faster_by_arrhenius() -> None:
    cold, warm = bank(ambient_c=25.0), bank(ambient_c=35.0)
    for cells in (cold, warm):
        cells.advance(YEAR_S, Setpoints.rest(1), CHANNEL)
    ratio = (2.5 - warm.capacity_ah[0]) / (2.5 - cold.capacity_ah[0])
    assert ratio == pytest.approx(arrhenius_by_hand(35.0, 50_000.0), rel=1e-12)
    assert 1.8 < ratio < 2.0  # about twice as fast per 10 K, as commercial cells


def test_a_temperature_change_continues_the_fade_where_it_stands() -> None:
    # Half a year at 45 °C, then at 25 °C: the fade reached is worth a longer time at 25 °C,
    # and the square-root law goes on from there.
    cells = bank(ambient_c=45.0)
    rest = Setpoints.rest(1)
    cells.advance(YEAR_S / 2, rest, CHANNEL)
    cells.ambient_c[:] = 25.0
    cells.temperature_c[:] = 25.0
    cells.advance(YEAR_S / 2, rest, CHANNEL)
    equivalent_years = arrhenius_by_hand(45.0, 50_000.0) ** 2 / 2 + 1 / 2
    assert cells.capacity_ah[0] == pytest.approx(
        2.5 * (1 - 0.04 * math.sqrt(equivalent_years)), rel=1e-12)


def test_cycle_fade_is_linear_in_the_charge_passed() -> None:
    calendar_off = AgeingSettings(calendar_fade_first_year=0.0, calendar_growth_first_year=0.0)
    cells = bank(ambient_c=35.0, ageing=calendar_off)
    passed_as = 0.0
    sp = Setpoints.rest(1)
    sp.mode[:] = Mode.CC
    for half_cycle in range(200):
        sp.current_a[:] = 2.5 if half_cycle % 2 else -2.5
        for _ in range(30):  # 15 minutes at 1C: SOC 0.5 -> 0.25 -> 0.5
            out = cells.advance(30.0, sp, CHANNEL)
            passed_as += abs(float(out.current_a[0])) * 30.0
    efc = passed_as / (2 * 3600 * 2.5)
    assert efc == pytest.approx(200 * 0.625 / 5.0, rel=1e-9)  # 200 half-cycles of 0.625 Ah
    # The cells stay within 1e-6 K of the ambient (the Joule heat over h·A), hence rel=1e-9.
    speed = arrhenius_by_hand(35.0, 30_000.0)
    assert cells.capacity_ah[0] == pytest.approx(2.5 * (1 - 0.15 * speed * efc / 1000),
                                                 rel=1e-9)
    assert cells.ageing is not None
    assert cells.ageing.resistance_factor[0] == pytest.approx(1 + 0.25 * speed * efc / 1000,
                                                              rel=1e-9)


def test_the_channel_on_the_virtual_clock_matches_the_closed_form() -> None:
    """A month of C/2 cycling of three cells at three temperatures, sampled every 10 minutes."""
    driver = SimChannels(SimChannelSettings(
        count=3, capacity_spread=0.0, resistance_spread=0.0, heat_transfer_w_per_k=ISOTHERMAL,
        initial_soc=0.5))
    temperatures = [15.0, 25.0, 40.0]
    passed_as = np.zeros(3)

    async def cycle() -> None:
        clock = VirtualClock()
        await driver.open(clock)
        for channel, celsius in enumerate(temperatures):
            driver.set_ambient(channel, celsius)
            driver.cells.temperature_c[channel] = celsius
        for half_cycle in range(2 * 24 * 30):  # 30 minutes each way: 0.25 EFC a cycle
            current = -1.25 if half_cycle % 2 == 0 else 1.25
            for channel in range(3):
                await driver.apply(channel, Step(StepMode.CC, current_a=current))
            for _ in range(3):
                await clock.sleep_until(clock.now() + 600.0)
                batch = await driver.measure()
                passed_as[:] += np.abs(batch.current_a) * 600.0
        for channel in range(3):
            await driver.apply(channel, REST)
        await driver.close()
        assert clock.now() == 30 * 86_400.0

    asyncio.run(cycle())
    for channel, celsius in enumerate(temperatures):
        efc = passed_as[channel] / (2 * 3600 * 2.5)
        assert efc == pytest.approx(180.0, rel=1e-9)
        capacity, resistance = fade_at(NMC, 30 * 86_400.0, efc, celsius)
        assert driver.cells.capacity_ah[channel] == pytest.approx(2.5 * capacity, rel=1e-9)
        assert driver.cells.ageing is not None
        assert driver.cells.ageing.resistance_factor[channel] == pytest.approx(resistance,
                                                                             rel=1e-9)
    fades = 1 - driver.cells.capacity_ah / 2.5
    assert 0.02 < fades[1] < 0.04 and fades[0] < fades[1] < fades[2]


def test_aged_resistance_shows_in_the_terminal_voltage() -> None:
    fresh, aged = bank(ageing="none"), bank()
    aged.advance(10 * YEAR_S, Setpoints.rest(1), CHANNEL)
    aged.soc[:] = fresh.soc[:] = 0.5
    pulse = Setpoints.rest(1)
    pulse.mode[:] = Mode.CC
    pulse.current_a[:] = -5.0
    ocv = 3.72  # NMC at SOC 0.5
    # After 10 ms the drop is the R0 one: the OCV and the RC pair have hardly moved.
    drops = [ocv - float(cells.advance(0.01, pulse, CHANNEL).voltage_v[0])
             for cells in (fresh, aged)]
    assert drops[0] == pytest.approx(5.0 * 0.030, rel=1e-2)
    assert aged.ageing is not None
    assert drops[1] / drops[0] == pytest.approx(aged.ageing.resistance_factor[0], rel=1e-3)


def test_zero_ageing_keeps_capacity_and_resistance() -> None:
    cells = bank(ageing="none")
    assert cells.ageing is None
    sp = Setpoints.rest(1)
    sp.mode[:] = Mode.CC
    for half_cycle in range(100):
        sp.current_a[:] = -2.5 if half_cycle % 2 == 0 else 2.5
        cells.advance(1800.0, sp, CHANNEL)
    cells.advance(YEAR_S, Setpoints.rest(1), CHANNEL)
    assert cells.capacity_ah[0] == 2.5
    assert cells.r0_ohm[0] == 0.030


def test_ageing_settings_per_chemistry_and_per_parameter() -> None:
    lfp = bank(chemistry="lfp")
    nmc = bank(chemistry="nmc")
    for cells in (lfp, nmc):
        cells.advance(YEAR_S, Setpoints.rest(1), CHANNEL)
    assert lfp.capacity_ah[0] == pytest.approx(2.5 * 0.97)
    assert nmc.capacity_ah[0] == pytest.approx(2.5 * 0.96)
    # From a station file: a table changes some parameters, the rest stay the chemistry's.
    settings = SimChannelSettings.model_validate(
        {"chemistry": "lfp", "ageing": {"calendar_fade_first_year": 0.1}})
    driver = SimChannels(settings)
    assert driver.cells.ageing is not None
    assert driver.cells.ageing.params == CHEMISTRY_AGEING["lfp"].model_copy(
        update={"calendar_fade_first_year": 0.1})
    assert SimChannels(SimChannelSettings(ageing="none")).cells.ageing is None


@pytest.mark.parametrize(("ageing", "where"), [
    ("some", "ageing"),
    ({"cycle_fade": 0.1}, "cycle_fade"),
    ({"cycle_fade_per_1000_efc": 1.5}, "cycle_fade_per_1000_efc"),
    ({"calendar_activation_j_per_mol": -1.0}, "calendar_activation_j_per_mol"),
])
def test_bad_ageing_settings_are_refused_naming_the_key(ageing: object, where: str) -> None:
    with pytest.raises(ValidationError) as raised:
        SimChannelSettings.model_validate({"ageing": ageing})
    assert where in str(raised.value)
