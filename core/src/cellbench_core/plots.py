"""What ``cellbench plot`` draws: the series of a stored test, then the figure.

Each figure is made in two parts: a function that reads what will be drawn from the database
(:func:`cycle_series`, :func:`signal_series`), and one that draws it (:func:`draw_cycles`,
:func:`draw_signals`), so what a plot shows can be checked against the database.

Signals over time are decimated in the database: the samples are grouped into at most
``max_points / 2`` buckets of consecutive ``seq`` and each bucket's minimum, maximum and mean
come back from one aggregate query, so a test of ten million samples costs one scan of its
rows and a few thousand rows to Python, and every peak still shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from cellbench_core.events import TestStatus
from cellbench_core.storage import Database, TestRecord, schema
from cellbench_core.storage.reading import aux_names

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axes._secondary_axes import SecondaryAxis
    from matplotlib.figure import Figure

#: Short names of the sample columns a plot shows; ``--signals`` takes these, column names and
#: aux signal names.
SIGNAL_ALIASES = {"U": "voltage_v", "I": "current_a", "T": "temperature_c", "P": "power_w",
                  "Ah": "ah", "Wh": "wh"}
#: Axis label of each plottable sample column.
COLUMN_LABELS = {"voltage_v": "Voltage [V]", "current_a": "Current [A]",
                 "temperature_c": "Temperature [°C]", "power_w": "Power [W]",
                 "ah": "Charge [Ah]", "wh": "Energy [Wh]", "step_time_s": "Step time [s]"}
DEFAULT_SIGNALS = ("U", "I", "T")
#: Points drawn per signal at most (two per bucket): about two per pixel of a figure's width.
MAX_POINTS = 4000
#: At most this many labels along the top of a signal plot; more would overlap each other.
MAX_TOP_LABELS = 16
#: Above this many steps only cycle boundaries are drawn; step lines would hide the data.
MAX_STEP_LINES = 400


class PlotError(LookupError):
    """What was asked cannot be plotted from this database (no such test, cycle or signal)."""


# --- Per-cycle results -------------------------------------------------------------------------


@dataclass(frozen=True)
class CycleSeries:
    """A test's counted cycles (1, 2, ...; the steps before a plan's first loop, cycle 0, are
    left out) as arrays, one entry per cycle, from the ``cycles`` view. Efficiencies in %."""

    test: TestRecord
    cycle: np.ndarray
    charge_ah: np.ndarray
    discharge_ah: np.ndarray
    coulombic_efficiency_pct: np.ndarray
    energy_efficiency_pct: np.ndarray

    @property
    def fade_pct(self) -> float:
        """Discharge capacity of the last cycle against the first, in % (negative: faded)."""
        first, last = self.discharge_ah[0], self.discharge_ah[-1]
        return float(100.0 * (last - first) / first) if first > 0 else math.nan


def _test(db: Database, test_id: int) -> TestRecord:
    test = db.test(test_id)
    if test is None:
        raise PlotError(f"no test {test_id} in {db.url}")
    return test


def cycle_series(db: Database, test_id: int) -> CycleSeries:
    """The per-cycle results of ``test_id`` that the fade plot draws; PlotError for an unknown
    test or one whose plan counts no cycles."""
    test = _test(db, test_id)
    cycles = [c for c in db.cycles(test_id) if c.cycle > 0]
    if not cycles:
        raise PlotError(f"test {test_id} has no finished cycle yet (or its plan has no counting "
                        "loop); plot its signals without --cycles")
    return CycleSeries(
        test,
        np.array([c.cycle for c in cycles], dtype=np.int64),
        np.array([c.charge_ah for c in cycles]),
        np.array([c.discharge_ah for c in cycles]),
        100.0 * np.array([c.coulombic_efficiency for c in cycles]),
        100.0 * np.array([c.energy_efficiency for c in cycles]),
    )


# --- Signals over time -------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """A labelled instant on a signal plot: a cycle's or step's start (s from the plot's zero)."""

    time_s: float
    label: str


@dataclass(frozen=True)
class SignalSeries:
    """Signals of one test over time, decimated for drawing.

    ``time_s`` counts from ``zero_s`` of the test's time (0, or the start of the cycle shown);
    ``values`` holds one array per signal, aligned with ``time_s`` (NaN where a signal has no
    value). ``marks`` are the cycle starts (a whole test) or step starts (one cycle);
    ``step_starts_s`` every step start; ``running`` the step running now, for a running test.
    """

    test: TestRecord
    signals: tuple[str, ...]
    time_s: np.ndarray
    values: dict[str, np.ndarray]
    zero_s: float = 0.0
    cycle: int | None = None
    marks: tuple[Mark, ...] = ()
    step_starts_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    running: Mark | None = None
    samples: int = 0
    """How many samples the drawn points stand for."""


def resolve_signals(db: Database, test_id: int, names: Sequence[str]) -> tuple[str, ...]:
    """The sample columns and aux signals ``names`` mean (U, I, T, P, Ah, Wh, a column name or
    an aux signal's name); PlotError naming the first unknown one and what the test has."""
    aux = aux_names(db, test_id)
    resolved = []
    for name in names:
        column = SIGNAL_ALIASES.get(name, name)
        if column not in COLUMN_LABELS and column not in aux:
            known = ", ".join([*SIGNAL_ALIASES, *aux])
            raise PlotError(f"--signals: test {test_id} has no signal {name!r}; it has {known}")
        resolved.append(column)
    return tuple(dict.fromkeys(resolved))


def signal_series(db: Database, test_id: int, signals: Sequence[str] = DEFAULT_SIGNALS,
                  cycle: int | None = None, max_points: int = MAX_POINTS) -> SignalSeries:
    """The signals of ``test_id`` (all of it, or only cycle ``cycle``) as drawn: at most
    ``max_points`` points per signal, each bucket of samples kept as its minimum and maximum."""
    test = _test(db, test_id)
    columns = resolve_signals(db, test_id, signals)
    steps = db.steps(test_id)
    position = db.position(test_id) if test.status is TestStatus.RUNNING else None
    running_cycle = None if position is None else int(position.state.get("cycle", -1))
    first_seq, last_seq = _seq_range(db, test_id)
    running_start = None if position is None else _sample_time(db, test_id, position.start_seq)
    zero = 0.0
    if cycle is not None:
        steps = [s for s in steps if s.cycle == cycle]
        if steps:
            first_seq, zero = steps[0].start_seq, steps[0].start_test_time_s
        elif position is not None and running_cycle == cycle:  # its first step is running
            first_seq, zero = position.start_seq, running_start or 0.0
        else:
            known = {s.cycle for s in db.steps(test_id)} | (
                set() if running_cycle is None else {running_cycle})
            has = f"cycles {min(known)}..{max(known)}" if known else "no finished step yet"
            raise PlotError(f"--cycle: test {test_id} has no cycle {cycle} (it has {has})")
        if running_cycle != cycle:
            last_seq = steps[-1].end_seq
    nothing = PlotError(f"test {test_id} has no samples"
                        f"{'' if cycle is None else f' in cycle {cycle}'} yet")
    if last_seq < first_seq:
        raise nothing
    if last_seq - first_seq < max_points:
        time_s, values, samples = _every_sample(db, test_id, columns, first_seq, last_seq)
    else:
        bucket = math.ceil((last_seq - first_seq + 1) / max(1, max_points // 2))
        time_s, values, samples = _decimated(db, test_id, columns, first_seq, last_seq, bucket)
    if not samples:  # seq numbers without samples: none committed in the range yet
        raise nothing
    if cycle is None:
        marks = [Mark(s.start_test_time_s, f"{s.cycle}") for n, s in enumerate(steps)
                 if s.cycle > 0 and (n == 0 or steps[n - 1].cycle != s.cycle)]
    else:
        marks = [Mark(s.start_test_time_s - zero, f"S{s.step_no}") for s in steps]
    running = None
    if (position is not None and running_start is not None
            and (cycle is None or running_cycle == cycle)):
        running = Mark(running_start - zero, f"step {position.step_no} running")
    return SignalSeries(test, columns, time_s - zero, values, zero, cycle, tuple(marks),
                        np.array([s.start_test_time_s - zero for s in steps]), running,
                        samples)


def _seq_range(db: Database, test_id: int) -> tuple[int, int]:
    """The first and last ``seq`` of the test's committed samples ((1, 0) when none), each
    from one end of the primary key's index (SQLite reads the whole index for a query that
    asks for both at once)."""
    s = schema.samples
    mine = s.c.test_id == int(test_id)
    with db.engine.connect() as connection:
        low = connection.execute(sa.select(sa.func.min(s.c.seq)).where(mine)).scalar()
        high = connection.execute(sa.select(sa.func.max(s.c.seq)).where(mine)).scalar()
    return (1, 0) if low is None or high is None else (int(low), int(high))


def _sample_time(db: Database, test_id: int, seq: int) -> float | None:
    """Test time of the first committed sample at or after ``seq`` (None: none yet)."""
    s = schema.samples
    query = (sa.select(s.c.test_time_s).where(s.c.test_id == int(test_id), s.c.seq >= seq)
             .order_by(s.c.seq).limit(1))
    with db.engine.connect() as connection:
        value = connection.execute(query).scalar()
    return None if value is None else float(value)


def _every_sample(db: Database, test_id: int, columns: Sequence[str], first_seq: int,
                  last_seq: int) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Time and each column's values of samples ``first_seq..last_seq``, and their number."""
    s, aux = schema.samples, schema.sample_aux
    base = [c for c in columns if c in COLUMN_LABELS]
    query = (sa.select(s.c.seq, s.c.test_time_s, *(s.c[c] for c in base))
             .where(s.c.test_id == int(test_id), s.c.seq.between(first_seq, last_seq))
             .order_by(s.c.seq))
    values: dict[str, np.ndarray] = {}
    with db.engine.connect() as connection:
        rows = np.array(connection.execute(query).all(), dtype=np.float64).reshape(
            -1, 2 + len(base))
        for n, column in enumerate(base):
            values[column] = rows[:, 2 + n]
        for name in (c for c in columns if c not in COLUMN_LABELS):
            query = sa.select(aux.c.seq, aux.c.value).where(
                aux.c.test_id == int(test_id), aux.c.name == name,
                aux.c.seq.between(first_seq, last_seq))
            found = np.array(connection.execute(query).all(), dtype=np.float64).reshape(-1, 2)
            values[name] = np.full(len(rows), np.nan)
            values[name][np.searchsorted(rows[:, 0], found[:, 0])] = found[:, 1]
    return rows[:, 1], {c: values[c] for c in columns}, len(rows)


def _decimated(db: Database, test_id: int, columns: Sequence[str], first_seq: int,
               last_seq: int, bucket: int) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Time and each column's values over samples ``first_seq..last_seq``, ``bucket``
    consecutive samples folded into two points (their minimum and maximum, in the order the
    signal moves); and how many samples there were.

    One aggregate query per bucket, each a range of the primary key: a single ``GROUP BY``
    over the whole range would have the database sort every row by bucket first, which takes
    SQLite twice as long.
    """
    s, aux = schema.samples, schema.sample_aux
    base = [c for c in columns if c in COLUMN_LABELS]
    others = [c for c in columns if c not in COLUMN_LABELS]
    low, high = sa.bindparam("low", type_=sa.BigInteger), sa.bindparam("high", type_=sa.BigInteger)
    query = sa.select(
        sa.func.count(), sa.func.min(s.c.test_time_s), sa.func.max(s.c.test_time_s),
        *(aggregate(s.c[c]) for c in base for aggregate in (sa.func.min, sa.func.max)),
    ).where(s.c.test_id == int(test_id), s.c.seq.between(low, high))
    aux_query = sa.select(sa.func.min(aux.c.value), sa.func.max(aux.c.value)).where(
        aux.c.test_id == int(test_id), aux.c.name == sa.bindparam("name"),
        aux.c.seq.between(low, high))
    starts = range(first_seq, last_seq + 1, bucket)
    rows = np.full((len(starts), 3 + 2 * len(columns)), np.nan)
    with db.engine.connect() as connection:
        for n, start in enumerate(starts):
            bounds = {"low": start, "high": start + bucket - 1}
            rows[n, :3 + 2 * len(base)] = connection.execute(query, bounds).one()
            for k, name in enumerate(others):
                rows[n, 3 + 2 * (len(base) + k):5 + 2 * (len(base) + k)] = connection.execute(
                    aux_query, {**bounds, "name": name}).one()
    rows = rows[rows[:, 0] > 0]  # a bucket can be empty when samples are missing
    # Two points a bucket, at its first and last time: the minimum first where the signal
    # rises (the middle of its range climbs from the bucket before to the one after), the
    # maximum first where it falls.
    time_s = np.column_stack([rows[:, 1], rows[:, 2]]).ravel()
    values = {}
    for n, column in enumerate([*base, *others]):
        smallest, largest = rows[:, 3 + 2 * n], rows[:, 4 + 2 * n]
        middle = 0.5 * (smallest + largest)
        before = np.concatenate((middle[:1], middle[:-1]))
        after = np.concatenate((middle[1:], middle[-1:]))
        falling = after < before
        values[column] = np.column_stack([np.where(falling, largest, smallest),
                                          np.where(falling, smallest, largest)]).ravel()
    return time_s, {c: values[c] for c in columns}, int(rows[:, 0].sum())


# --- Drawing -----------------------------------------------------------------------------------


def _pyplot() -> Any:  # matplotlib.pyplot, whose functions are untyped
    # Imported on first use: matplotlib takes longer to import than most commands take to run.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _describe(test: TestRecord) -> str:
    battery = f", {test.battery}" if test.battery else ""
    return f"test {test.id} (channel {test.channel}{battery})"


def _title(tests: Sequence[TestRecord], what: str) -> str:
    if len(tests) == 1:
        test = tests[0]
        ended = f" ({test.end_reason})" if test.end_reason else ""
        return (f"Test {test.id}: {test.name} — channel {test.channel}, "
                f"{test.status.value}{ended}{what}")
    return f"Tests {', '.join(str(t.id) for t in tests)}{what}"


def draw_cycles(series: Sequence[CycleSeries], output: Path) -> None:
    """Save :func:`cycles_figure` of ``series`` to ``output``."""
    _save(cycles_figure(series), output)


def draw_signals(series: Sequence[SignalSeries], output: Path) -> None:
    """Save :func:`signals_figure` of ``series`` to ``output``."""
    _save(signals_figure(series), output)


def _save(fig: Figure, output: Path) -> None:
    try:
        fig.savefig(output, dpi=110)
    finally:
        _pyplot().close(fig)


def cycles_figure(series: Sequence[CycleSeries]) -> Figure:
    """The fade plot: discharge (and charge) capacity per cycle above, coulombic and energy
    efficiency below, one colour per test."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (capacity, efficiency) = plt.subplots(2, 1, sharex=True, figsize=(11, 7),
                                               constrained_layout=True)
    single = len(series) == 1
    for n, s in enumerate(series):
        colour = f"C{n}"
        marker = "o" if len(s.cycle) <= 60 else None
        capacity.plot(s.cycle, s.discharge_ah, color=colour, marker=marker, markersize=3,
                      linewidth=1.2, label="discharge" if single else _describe(s.test))
        capacity.plot(s.cycle, s.charge_ah, color=colour, linestyle=":", linewidth=0.9,
                      label="charge" if single else None)
        efficiency.plot(s.cycle, s.coulombic_efficiency_pct, color=colour, linewidth=1.2,
                        label="coulombic" if single else _describe(s.test))
        efficiency.plot(s.cycle, s.energy_efficiency_pct, color=colour, linestyle="--",
                        linewidth=1.0, label="energy" if single else None)
    if single:
        capacity.set_ylabel("Capacity [Ah]")
        efficiency.set_ylabel("Efficiency [%]")
    else:  # the colours are the tests; the line styles say which quantity
        capacity.set_ylabel("Capacity [Ah]\n(— discharge, ··· charge)")
        efficiency.set_ylabel("Efficiency [%]\n(— coulombic, - - energy)")
    efficiency.set_xlabel("Cycle")
    efficiency.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (capacity, efficiency):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    # A first cycle that started from a part-charged cell has an efficiency far from the
    # rest; the axis follows the bulk of the cycles so the trend stays readable.
    bulk = np.concatenate([s.coulombic_efficiency_pct[1:] if len(s.cycle) > 2 else
                           s.coulombic_efficiency_pct for s in series]
                          + [s.energy_efficiency_pct[1:] if len(s.cycle) > 2 else
                             s.energy_efficiency_pct for s in series])
    bulk = bulk[np.isfinite(bulk)]
    if len(bulk):
        low, high = float(bulk.min()), float(bulk.max())
        pad = max(0.5, 0.1 * (high - low))
        efficiency.set_ylim(low - pad, high + pad)
    fades = "" if not single or len(series[0].cycle) < 2 else (
        f"; discharge capacity {series[0].discharge_ah[0]:.3f} → "
        f"{series[0].discharge_ah[-1]:.3f} Ah ({series[0].fade_pct:+.1f} % over "
        f"{len(series[0].cycle)} cycles)")
    capacity.set_title(_title([s.test for s in series], fades), fontsize=10)
    figure: Figure = fig
    return figure


def _time_unit(span_s: float) -> tuple[float, str]:
    """Seconds per unit and the unit's name for a time axis spanning ``span_s``."""
    if span_s <= 2 * 3600:
        return 60.0, "min"
    if span_s <= 72 * 3600:
        return 3600.0, "h"
    return 86_400.0, "d"


def _thinned(marks: Sequence[Mark]) -> list[Mark]:
    """Every k-th mark, k from 1, 2, 5, 10, 20, 50..., so that at most MAX_TOP_LABELS remain."""
    step = 1
    while len(marks) > MAX_TOP_LABELS * step:
        step = step * 5 // 2 if str(step).startswith("2") else step * 2
    return list(marks[::step])


def top_labels(ax: Axes, marks: Sequence[Mark], unit_s: float, title: str) -> SecondaryAxis:
    """Label ``marks`` along a second x axis above ``ax``: outside the plotting area, so that
    no label sits on a curve. Return that axis."""
    shown = marks
    top = ax.secondary_xaxis("top")
    top.set_xticks([m.time_s / unit_s for m in shown], [m.label for m in shown], fontsize=7)
    top.set_xlabel(title, fontsize=8)
    return top


def signals_figure(series: Sequence[SignalSeries]) -> Figure:
    """One panel per signal over time, one colour per test; for a single test its steps as
    thin lines, cycle (or step) starts labelled above the top panel, and the running step of a
    running test marked."""
    plt = _pyplot()
    signals = list(dict.fromkeys(name for s in series for name in s.signals))
    span = max(float(s.time_s[-1] - s.time_s[0]) for s in series if len(s.time_s))
    unit_s, unit = _time_unit(span)
    fig, axes = plt.subplots(len(signals), 1, sharex=True, squeeze=False,
                             figsize=(11, 1.2 + 2.1 * len(signals)), constrained_layout=True)
    single = len(series) == 1
    for n, s in enumerate(series):
        for ax, name in zip(axes[:, 0], signals, strict=True):
            if name in s.values:
                ax.plot(s.time_s / unit_s, s.values[name],
                        color=f"C{n}" if not single else _SIGNAL_COLOURS.get(name, "C0"),
                        linewidth=0.8, label=_describe(s.test))
    for ax, name in zip(axes[:, 0], signals, strict=True):
        ax.set_ylabel(COLUMN_LABELS.get(name, name))
        ax.grid(True, alpha=0.3)
    if single:
        _mark_steps(axes[:, 0], series[0], unit_s)
    else:
        axes[0, 0].legend(fontsize=8, loc="best")
    first = series[0]
    if first.cycle is None:
        axes[-1, 0].set_xlabel(f"Test time [{unit}]")
        what = ""
    else:
        axes[-1, 0].set_xlabel(f"Time since the start of cycle {first.cycle} [{unit}]")
        what = f" — cycle {first.cycle}"
    fig.suptitle(_title([s.test for s in series], what), fontsize=10)
    figure: Figure = fig
    return figure


_SIGNAL_COLOURS = {"voltage_v": "tab:blue", "current_a": "tab:red",
                   "temperature_c": "tab:orange", "power_w": "tab:purple"}


def _mark_steps(axes: Sequence[Axes], s: SignalSeries, unit_s: float) -> None:
    for ax in axes:
        if len(s.step_starts_s) <= MAX_STEP_LINES:
            for start in s.step_starts_s:
                ax.axvline(start / unit_s, color="0.8", linewidth=0.5, zorder=0)
        for mark in s.marks:
            ax.axvline(mark.time_s / unit_s, color="0.35", linewidth=0.8, linestyle="--",
                       zorder=0)
        if s.running is not None:
            ax.axvline(s.running.time_s / unit_s, color="tab:green", linewidth=1.2,
                       linestyle="-.", zorder=0)
    shown = _thinned(s.marks)
    if s.running is not None:
        # The running step's label wins over the cycle or step labels next to it.
        room = 0.06 * max(float(s.time_s[-1] - s.time_s[0]), 1.0)
        shown = [m for m in shown if abs(m.time_s - s.running.time_s) > room] + [s.running]
    if shown:
        top_labels(axes[0], shown, unit_s, "cycle" if s.cycle is None else "step")
