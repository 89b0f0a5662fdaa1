"""The equivalent-circuit cell model: OCV curves, modes, capacity, efficiency, heat, spread."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from cellbench_sdk.cell import (
    LFP,
    NMC,
    CellBank,
    CellOutputs,
    CellParameters,
    Mode,
    OcvCurve,
    OutputRange,
    Setpoints,
    SingleCell,
)

CAPACITY_AH = 2.5
CHANNEL = OutputRange(voltage_min_v=0.0, voltage_max_v=5.0, current_max_a=10.0)


def nominal(**overrides: float | str) -> CellParameters:
    """A nominal cell without spread."""
    values: dict[str, float | str] = {"capacity_spread": 0.0, "resistance_spread": 0.0}
    return CellParameters.model_validate(values | overrides)


def setpoint(mode: Mode, count: int = 1, **values: float) -> Setpoints:
    sp = Setpoints.rest(count)
    sp.mode[:] = mode
    for name, value in values.items():
        getattr(sp, name)[:] = value
    return sp


def run(
    bank: CellBank,
    sp: Setpoints,
    dt: float,
    until: Callable[[CellOutputs], bool],
    max_steps: int = 100_000,
) -> tuple[float, list[CellOutputs]]:
    """Advance ``bank`` until ``until`` holds; return the charge passed (Ah) and the history."""
    charge = 0.0
    history = []
    for _ in range(max_steps):
        out = bank.advance(dt, sp, CHANNEL)
        charge += float(out.current_a[0]) * dt / 3600.0
        history.append(out)
        if until(out):
            return charge, history
    raise AssertionError("the end condition was never met")


def discharge_capacity(rate_c: float, dt: float) -> float:
    bank = CellBank(1, nominal(initial_soc=1.0))
    sp = setpoint(Mode.CC, current_a=-rate_c * CAPACITY_AH)
    charge, _ = run(bank, sp, dt, lambda out: out.voltage_v[0] <= 2.5)
    return -charge


@pytest.mark.parametrize("curve", [NMC, LFP], ids=["nmc", "lfp"])
def test_ocv_rises_strictly_and_keeps_going_beyond_the_table(curve: OcvCurve) -> None:
    soc = np.linspace(-0.2, 1.2, 2001)
    ocv = curve(soc)
    assert np.all(np.diff(ocv) > 0)
    assert curve(np.array([-0.05]))[0] < 2.5 - 0.5
    assert curve(np.array([1.05]))[0] > curve(np.array([1.0]))[0] + 0.2


def test_ocv_ranges_and_the_lfp_plateau() -> None:
    ends = np.array([0.0, 1.0])
    assert NMC(ends) == pytest.approx([2.5, 4.2])
    assert LFP(ends) == pytest.approx([2.5, 3.65])
    plateau = LFP(np.linspace(0.2, 0.9, 50))
    assert plateau.max() - plateau.min() < 0.1
    assert NMC(np.array([0.5]))[0] - NMC(np.array([0.2]))[0] > 0.1


def test_ocv_table_must_rise() -> None:
    with pytest.raises(ValueError, match="rise strictly"):
        OcvCurve([(0.0, 3.0), (0.5, 2.9), (1.0, 4.0)], slope_below=10.0, slope_above=10.0)


def test_slow_discharge_gives_the_capacity_and_a_fast_one_less() -> None:
    slow = discharge_capacity(rate_c=0.1, dt=10.0)
    fast = discharge_capacity(rate_c=2.0, dt=1.0)
    assert slow == pytest.approx(CAPACITY_AH, rel=0.01)
    assert fast < 0.99 * slow


def test_cv_current_decays_monotonically_to_the_voltage() -> None:
    bank = CellBank(1, nominal(initial_soc=0.5))
    sp = setpoint(Mode.CV, voltage_v=4.0, current_a=5.0)
    _, history = run(bank, sp, 1.0, lambda out: out.current_a[0] < 0.05)
    current = np.array([out.current_a[0] for out in history])
    voltage = np.array([out.voltage_v[0] for out in history])
    assert current[0] == pytest.approx(5.0)  # limited at first
    assert np.all(np.diff(current) <= 1e-12)
    assert np.all(current > 0)
    held = current < 5.0
    assert voltage[held] == pytest.approx(4.0, abs=1e-3)


def test_cccv_switches_from_current_to_voltage() -> None:
    bank = CellBank(1, nominal(initial_soc=0.2))
    sp = setpoint(Mode.CCCV, current_a=2.5, voltage_v=4.2)
    _, history = run(bank, sp, 1.0, lambda out: out.current_a[0] < 0.125)
    current = np.array([out.current_a[0] for out in history])
    voltage = np.array([out.voltage_v[0] for out in history])
    cc = current == 2.5
    switch = int(np.argmin(cc))
    assert cc[:switch].all() and not cc[switch:].any()
    assert np.all(voltage[:switch] < 4.2 + 1e-9)
    assert voltage[switch:] == pytest.approx(4.2, abs=1e-3)
    assert np.all(np.diff(current[switch:]) <= 1e-12)


def test_cccv_discharge_holds_the_lower_voltage() -> None:
    bank = CellBank(1, nominal(initial_soc=0.5))
    sp = setpoint(Mode.CCCV, current_a=-2.5, voltage_v=3.5)
    _, history = run(bank, sp, 1.0, lambda out: out.current_a[0] > -0.125)
    assert history[0].current_a[0] == -2.5
    assert history[-1].voltage_v[0] == pytest.approx(3.5, abs=1e-3)


@pytest.mark.parametrize("power_w", [-5.0, 5.0])
def test_cp_delivers_the_power(power_w: float) -> None:
    bank = CellBank(1, nominal(initial_soc=0.5))
    sp = setpoint(Mode.CP, power_w=power_w)
    for _ in range(600):
        out = bank.advance(1.0, sp, CHANNEL)
        assert out.current_a[0] * out.voltage_v[0] == pytest.approx(power_w, rel=1e-3)


def test_cp_beyond_the_cells_reach_takes_the_maximum_power_current() -> None:
    bank = CellBank(1, nominal(initial_soc=0.5, r0_ohm=1.0))
    ocv = float(bank.ocv(bank.soc)[0])
    out = bank.advance(0.01, setpoint(Mode.CP, power_w=-100.0), CHANNEL)
    # Maximum power is drawn at half the source voltage.
    assert out.voltage_v[0] == pytest.approx(ocv / 2, rel=0.01)
    assert -out.current_a[0] * out.voltage_v[0] == pytest.approx(ocv**2 / 4.0, rel=0.01)


def test_cr_draws_voltage_over_resistance() -> None:
    bank = CellBank(1, nominal(initial_soc=0.8))
    sp = setpoint(Mode.CR, resistance_ohm=2.0)
    for _ in range(600):
        out = bank.advance(1.0, sp, CHANNEL)
        assert out.current_a[0] == pytest.approx(-out.voltage_v[0] / 2.0, rel=1e-3)


def test_charge_out_is_efficiency_times_charge_in_over_a_cycle() -> None:
    bank = CellBank(1, nominal(initial_soc=0.5, efficiency=0.98))
    rest = setpoint(Mode.REST)
    discharge = setpoint(Mode.CC, current_a=-1.25)
    charge = setpoint(Mode.CCCV, current_a=2.5, voltage_v=4.2)
    run(bank, discharge, 2.0, lambda out: out.voltage_v[0] <= 2.5)
    for _ in range(360):
        bank.advance(10.0, rest, CHANNEL)
    charge_in, _ = run(bank, charge, 2.0, lambda out: out.current_a[0] < 0.125)
    for _ in range(360):
        bank.advance(10.0, rest, CHANNEL)
    charge_out, _ = run(bank, discharge, 2.0, lambda out: out.voltage_v[0] <= 2.5)
    assert -charge_out == pytest.approx(0.98 * charge_in, rel=0.003)


def test_heats_under_load_and_relaxes_to_ambient() -> None:
    bank = CellBank(1, nominal(initial_soc=1.0))
    for _ in range(1200):
        out = bank.advance(1.0, setpoint(Mode.CC, current_a=-5.0), CHANNEL)
    assert out.temperature_c[0] > 25.0 + 5.0
    for _ in range(1080):
        out = bank.advance(10.0, setpoint(Mode.REST), CHANNEL)
    assert out.temperature_c[0] == pytest.approx(25.0, abs=0.1)
    bank.ambient_c[:] = 40.0
    for _ in range(1080):
        out = bank.advance(10.0, setpoint(Mode.REST), CHANNEL)
    assert out.temperature_c[0] == pytest.approx(40.0, abs=0.1)


def test_resistance_falls_when_warm() -> None:
    cold, warm = CellBank(1, nominal(ambient_c=0.0)), CellBank(1, nominal(ambient_c=45.0))
    sp = setpoint(Mode.CC, current_a=-5.0)
    drop_cold = cold.ocv(cold.soc)[0] - cold.advance(0.001, sp, CHANNEL).voltage_v[0]
    drop_warm = warm.ocv(warm.soc)[0] - warm.advance(0.001, sp, CHANNEL).voltage_v[0]
    assert drop_cold > 1.5 * drop_warm > 0


def test_spread_is_reproducible_per_seed() -> None:
    params = CellParameters(capacity_spread=0.01, resistance_spread=0.05, seed=7)
    bank, again = CellBank(10_000, params), CellBank(10_000, params)
    other = CellBank(10_000, params.model_copy(update={"seed": 8}))
    assert np.array_equal(bank.capacity_ah, again.capacity_ah)
    assert np.array_equal(bank.r0_ohm, again.r0_ohm)
    assert not np.array_equal(bank.capacity_ah, other.capacity_ah)
    assert len(np.unique(bank.capacity_ah)) == 10_000
    assert np.std(bank.capacity_ah) / 2.5 == pytest.approx(0.01, rel=0.05)
    assert np.std(bank.r0_ohm) / 0.03 == pytest.approx(0.05, rel=0.05)


def test_cells_in_a_bank_evolve_as_they_would_alone() -> None:
    modes = [Mode.REST, Mode.CC, Mode.CV, Mode.CCCV, Mode.CP, Mode.CR]
    values = {"current_a": 2.0, "voltage_v": 3.9, "power_w": -4.0, "resistance_ohm": 1.5}
    params = CellParameters(seed=3)
    bank = CellBank(len(modes), params)
    sp = Setpoints.rest(len(modes))
    sp.mode[:] = modes
    for name, value in values.items():
        getattr(sp, name)[:] = value
    for _ in range(100):
        together = bank.advance(5.0, sp, CHANNEL)
    for k, mode in enumerate(modes):
        alone = CellBank(len(modes), params)
        single = setpoint(mode, len(modes), **values)
        for _ in range(100):
            out = alone.advance(5.0, single, CHANNEL)
        assert together.voltage_v[k] == out.voltage_v[k]
        assert together.temperature_c[k] == out.temperature_c[k]


def test_current_stays_inside_the_channel_range() -> None:
    bank = CellBank(2, nominal(initial_soc=0.99))
    sp = Setpoints.rest(2)
    sp.mode[:] = [Mode.CV, Mode.CC]
    sp.voltage_v[0], sp.current_a[0] = 0.5, 100.0  # deep CV discharge: current range binds
    sp.current_a[1] = 8.0  # overcharge: the channel's 4.3 V compliance binds
    limits = OutputRange(voltage_min_v=0.0, voltage_max_v=4.3, current_max_a=6.0)
    for _ in range(600):
        out = bank.advance(1.0, sp, limits)
        assert np.all(np.abs(out.current_a) <= 6.0)
    assert out.current_a[0] == -6.0
    assert out.voltage_v[1] == pytest.approx(4.3, abs=1e-3)
    assert out.current_a[1] < 6.0


def test_power_range_limits_the_current() -> None:
    bank = CellBank(1, nominal(initial_soc=0.5))
    limits = OutputRange(voltage_min_v=0.0, voltage_max_v=5.0, current_max_a=10.0, power_max_w=8.0)
    out = bank.advance(1.0, setpoint(Mode.CC, current_a=-5.0), limits)
    assert -out.current_a[0] * out.voltage_v[0] < 8.0
    assert out.current_a[0] > -5.0


def test_parameters_are_validated() -> None:
    for bad in ({"capacity_ah": 0.0}, {"r0_ohm": float("nan")}, {"efficiency": 1.1}, {"x": 1}):
        with pytest.raises(ValueError):
            CellParameters.model_validate(bad)
    with pytest.raises(ValueError, match="at least one cell"):
        CellBank(0)


def test_a_single_cell_in_floats_follows_the_bank_to_rounding() -> None:
    """SingleCell (what the bulk channel computes with) is the bank's update for one cell:
    every mode, short and long steps, over-discharge and ageing."""
    rng = np.random.default_rng(1)
    params = CellParameters(initial_soc=0.3)
    bank, twin = CellBank(1, params), CellBank(1, params)
    one = SingleCell.of(twin)
    setpoints, limits = Setpoints.rest(1), OutputRange(0.0, 5.0, 10.0, 50.0)
    for _ in range(2000):
        mode = Mode(int(rng.integers(0, len(Mode))))
        setpoints.mode[:] = mode
        setpoints.current_a[:] = rng.uniform(-5, 5)
        setpoints.voltage_v[:] = rng.uniform(3.0, 4.2)
        setpoints.power_w[:] = rng.uniform(-10, 10)
        setpoints.resistance_ohm[:] = rng.uniform(0.5, 5)
        dt = float(rng.choice([0.5, 1.0, 10.0, 100.0, 1000.0]))
        expected = bank.advance(dt, setpoints, limits)
        got = one.advance(dt, mode, setpoints, limits)
        assert got == pytest.approx((expected.voltage_v[0], expected.current_a[0],
                                     expected.temperature_c[0]), rel=1e-12, abs=1e-12)
    one.store(*got[:2])
    assert twin.soc == pytest.approx(bank.soc, rel=1e-12)
    assert twin.ageing is not None and bank.ageing is not None
    assert twin.ageing.capacity_fraction == pytest.approx(bank.ageing.capacity_fraction,
                                                          rel=1e-12)
    saved = one.state()
    one.advance(60.0, Mode.CC, setpoints, limits)
    one.restore(saved)
    assert one.state() == saved
