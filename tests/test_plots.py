"""``cellbench plot``: every option draws an image, the fade plot draws the ``cycles`` view,
decimation keeps every peak, cycle labels stay off the curves, a running test shows the step
it is in; and ``cellbench demo --cycles`` ends with a fade plot of ageing cells."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.axes._secondary_axes import SecondaryAxis
from matplotlib.figure import Figure
from typer.testing import CliRunner

from cellbench_core.cli import app
from cellbench_core.events import TestStatus
from cellbench_core.plots import (
    MAX_TOP_LABELS,
    PlotError,
    cycle_series,
    cycles_figure,
    signal_series,
    signals_figure,
)
from cellbench_core.storage import (
    Database,
    PositionRow,
    SampleRows,
    SampleWriter,
    StepRow,
    TestEnd,
    TestStart,
    open_database,
)

runner = CliRunner()

THREE_CYCLES = """\
name: three cycles
capacity: 2.5 Ah
steps:
  - repeat: 3
    steps:
      - Charge at 1C to 4.2 V until C/10
      - Rest for 10 minutes
      - Discharge at 1C until 2.5 V
      - Rest for 10 minutes
"""
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Database]]:
    """A database holding tests 1 and 2: three 1C cycles each on a simulated station whose
    OSI device ``logger`` records aux signals for both channels (10 s samples)."""
    folder = tmp_path_factory.mktemp("plots")
    url = f"sqlite:///{folder / 'lab.db'}"
    station = folder / "station.toml"
    station.write_text(f"""\
[station]
name = "plots"
database = "{url}"
sample_period = "10 s"
[[channels]]
driver = "sim"
settings = {{ count = 2, initial_soc = 0.0 }}
[[devices]]
kind = "sim"
name = "logger"
channels = "1-2"
""", encoding="utf-8")
    plan = folder / "three.yaml"
    plan.write_text(THREE_CYCLES, encoding="utf-8")
    result = runner.invoke(app, ["run", str(plan), "--station", str(station), "--speed", "max"])
    assert result.exit_code == 0, result.output
    db = open_database(url)
    yield url, db
    db.close()


def plot(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["plot", *args, "--db", url])
    return result.exit_code, result.output


def assert_image(path: Path, width: int, height: int) -> np.ndarray:
    """``path`` is a PNG of ``width`` x ``height`` pixels with something drawn on it."""
    assert path.read_bytes().startswith(PNG)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0.05  # not a blank canvas
    return pixels


@pytest.mark.parametrize(("args", "size"), [
    (["1"], (1210, 825)),
    (["1", "--cycles"], (1210, 770)),
    (["1", "2", "--cycles"], (1210, 770)),
    (["2", "--cycle", "2"], (1210, 825)),
    (["1", "2", "--cycle", "3"], (1210, 825)),
    (["1", "--signals", "U,I,T,logger.temperature_c,logger.pressure_kpa"], (1210, 1287)),
    (["1", "2", "--signals", "U,logger.heater_power_w"], (1210, 594)),
])
def test_every_option_draws_an_image(lab: tuple[str, Database], tmp_path: Path,
                                     args: list[str], size: tuple[int, int]) -> None:
    url, _ = lab
    image = tmp_path / "figure.png"
    code, output = plot(url, *args, "-o", str(image))
    assert code == 0, output
    assert f"wrote {image}" in output
    assert_image(image, *size)


def test_default_file_names_say_what_is_drawn(lab: tuple[str, Database], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = lab
    monkeypatch.chdir(tmp_path)
    for args, name in ((["1"], "test-1.png"), (["1", "--cycles"], "test-1-cycles.png"),
                       (["1", "2", "--cycle", "2"], "tests-1-2-cycle-2.png")):
        code, output = plot(url, *args)
        assert code == 0 and f"wrote {name}" in output, output
        assert (tmp_path / name).read_bytes().startswith(PNG)
    code, output = plot(url, "1", "--cycles", "-o", str(tmp_path / "fade.svg"))
    assert code == 0, output
    assert b"<svg" in (tmp_path / "fade.svg").read_bytes()[:500]


def test_the_fade_plot_draws_the_cycles_view(lab: tuple[str, Database]) -> None:
    _, db = lab
    cycles = [c for c in db.cycles(1) if c.cycle > 0]
    series = cycle_series(db, 1)
    assert series.cycle.tolist() == [1, 2, 3] == [c.cycle for c in cycles]
    assert series.discharge_ah.tolist() == [c.discharge_ah for c in cycles]
    assert series.charge_ah.tolist() == [c.charge_ah for c in cycles]
    assert series.coulombic_efficiency_pct.tolist() == [
        100 * c.coulombic_efficiency for c in cycles]
    assert series.energy_efficiency_pct.tolist() == [100 * c.energy_efficiency for c in cycles]
    assert all(2.2 < ah < 2.5 for ah in series.discharge_ah)  # the 2.5 Ah cell at 1C
    fig = cycles_figure([series, cycle_series(db, 2)])
    capacity, efficiency = fig.axes
    # Per test: discharge and charge above, coulombic and energy efficiency below
    drawn = [line.get_ydata() for line in capacity.lines]
    assert np.array_equal(drawn[0], series.discharge_ah)
    assert np.array_equal(drawn[1], series.charge_ah)
    assert np.array_equal(drawn[2], cycle_series(db, 2).discharge_ah)
    assert np.array_equal(efficiency.lines[0].get_ydata(), series.coulombic_efficiency_pct)
    assert np.array_equal(efficiency.lines[1].get_ydata(), series.energy_efficiency_pct)
    assert np.array_equal(capacity.lines[0].get_xdata(), [1, 2, 3])
    legend = capacity.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == [
        "test 1 (channel 1)", "test 2 (channel 2)"]


def test_signals_undecimated_are_the_samples(lab: tuple[str, Database]) -> None:
    _, db = lab
    raw = db.samples(1, ["test_time_s", "voltage_v", "logger.pressure_kpa"])
    series = signal_series(db, 1, ["U", "logger.pressure_kpa"], max_points=10 * len(
        raw["test_time_s"]))
    assert series.signals == ("voltage_v", "logger.pressure_kpa")
    assert np.array_equal(series.time_s, raw["test_time_s"])
    assert np.array_equal(series.values["voltage_v"], raw["voltage_v"])
    assert np.array_equal(series.values["logger.pressure_kpa"], raw["logger.pressure_kpa"],
                          equal_nan=True)
    assert series.samples == len(raw["test_time_s"])
    # The cycles begin where their first steps begin, labelled by number
    starts = {c.cycle: c.start_test_time_s for c in db.cycles(1) if c.cycle > 0}
    assert [(m.time_s, m.label) for m in series.marks] == [
        (starts[n], str(n)) for n in (1, 2, 3)]


def test_decimation_keeps_every_peak_and_bounds_the_points(lab: tuple[str, Database]) -> None:
    _, db = lab
    raw = db.samples(1, ["seq", "test_time_s", "current_a", "logger.temperature_c"])
    series = signal_series(db, 1, ["I", "logger.temperature_c"], max_points=200)
    assert len(raw["seq"]) > 2000 and len(series.time_s) <= 200
    assert series.samples == len(raw["seq"])
    for name in ("current_a", "logger.temperature_c"):
        drawn, measured = series.values[name], raw[name]
        assert np.nanmax(drawn) == np.nanmax(measured)
        assert np.nanmin(drawn) == np.nanmin(measured)
        # every drawn value is one that was measured, at a time of its bucket
        assert np.isin(drawn, measured).all()
    assert np.all(np.diff(series.time_s) >= 0)
    assert series.time_s[0] == raw["test_time_s"][0]
    assert series.time_s[-1] == raw["test_time_s"][-1]


def test_every_database_decimates_alike(database_url: str) -> None:
    """The buckets are aggregated in SQL: SQLite, PostgreSQL and MariaDB return the same."""
    db = open_database(database_url)
    test_id = write_test(db, cycles=60, steps_per_cycle=2, running=False)
    raw = db.samples(test_id, ["test_time_s", "voltage_v", "probe_c"])
    series = signal_series(db, test_id, ["U", "probe_c"], max_points=100)
    assert len(raw["test_time_s"]) == 1200 and len(series.time_s) == 100
    for name, signal in (("voltage_v", "voltage_v"), ("probe_c", "probe_c")):
        assert np.nanmax(series.values[signal]) == pytest.approx(np.nanmax(raw[name]))
        assert np.nanmin(series.values[signal]) == pytest.approx(np.nanmin(raw[name]))
    # Bucket k holds seq 24k+1..24k+24 (times 24k..24k+23): its first and last time are drawn
    assert series.time_s[:4].tolist() == [0.0, 23.0, 24.0, 47.0]
    db.close()


def test_one_cycle_counts_from_its_start(lab: tuple[str, Database]) -> None:
    _, db = lab
    steps = [s for s in db.steps(2) if s.cycle == 2]
    series = signal_series(db, 2, ["U", "I"], cycle=2, max_points=100_000)
    raw = db.samples(2, ["seq", "test_time_s", "voltage_v"])
    rows = (raw["seq"] >= steps[0].start_seq) & (raw["seq"] <= steps[-1].end_seq)
    assert np.array_equal(series.time_s + series.zero_s, raw["test_time_s"][rows])
    assert np.array_equal(series.values["voltage_v"], raw["voltage_v"][rows])
    assert series.zero_s == steps[0].start_test_time_s
    assert [(m.time_s, m.label) for m in series.marks] == [
        (s.start_test_time_s - series.zero_s, f"S{s.step_no}") for s in steps]


def top_axis_labels(fig: Figure) -> tuple[list[str], list[object], object]:
    """The texts and window extents of the labels above the top panel, and that panel's."""
    fig.canvas.draw()
    top = fig.axes[0]
    [secondary] = [child for child in top.get_children() if isinstance(child, SecondaryAxis)]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    labels = [t for t in secondary.get_xticklabels() if t.get_text()]
    return ([t.get_text() for t in labels], [t.get_window_extent(renderer) for t in labels],
            top.get_window_extent(renderer))


def test_cycle_labels_sit_above_the_curves_and_apart(tmp_path: Path) -> None:
    """A test of 60 short cycles: labels are thinned to a readable number, all of them in the
    margin above the top panel (where no curve is drawn) and none on another."""
    db = open_database(f"sqlite:///{tmp_path / 'many.db'}")
    test_id = write_test(db, cycles=60, steps_per_cycle=2, running=False)
    fig = signals_figure([signal_series(db, test_id)])
    texts, boxes, panel = top_axis_labels(fig)
    assert 5 <= len(texts) <= MAX_TOP_LABELS
    assert texts[:3] == ["1", "6", "11"]  # every 5th of 60
    for box in boxes:
        assert box.y0 >= panel.y1  # type: ignore[attr-defined]
    for left, right in itertools.pairwise(boxes):
        assert left.x1 < right.x0  # type: ignore[attr-defined]
    db.close()


def write_test(db: Database, cycles: int, steps_per_cycle: int, running: bool,
               step_samples: int = 10, first_cycle: int = 1) -> int:
    """A test stored as the runner stores one: samples (1 s apart), its finished steps and,
    when ``running``, a last step still running (its position saved, not yet a step row).
    Its cycles are numbered from ``first_cycle`` (0: a plan without a counting loop)."""
    [test_id] = db.start_tests([TestStart(
        name="written", channel="3", driver="sim", battery=None, plan_name="p",
        plan_source="p.yaml", plan_text="steps: []", sample_period_s=1.0, station="lab",
        start_unix_s=1.7e9)])
    writer = SampleWriter(db)
    seq = 1
    plan = [(cycle, index) for cycle in range(first_cycle, first_cycle + cycles)
            for index in range(steps_per_cycle)]
    for step_no, (cycle, index) in enumerate(plan, start=1):
        seqs = np.arange(seq, seq + step_samples, dtype=np.int64)
        t = (seqs - 1).astype(np.float64)
        current = np.full(step_samples, 1.0 if index == 0 else -1.0)
        ones = np.ones(step_samples, dtype=np.int64)
        writer.submit_positions([PositionRow(test_id, step_no, seq, 1.7e9 + t[0],
                                             {"cycle": cycle})])
        writer.submit(SampleRows(
            test_id=ones * test_id, seq=seqs, test_time_s=t, unix_time_s=1.7e9 + t,
            step_time_s=t - t[0], voltage_v=3.6 + 0.01 * current * (t - t[0]),
            current_a=current, power_w=current * 3.6, temperature_c=np.full(step_samples, 25.0),
            step_index=ones * index, plan_line=ones * (3 + index), cycle=ones * cycle,
            ah=current * (t - t[0]) / 3600, wh=3.6 * current * (t - t[0]) / 3600,
            aux={"probe_c": np.where(seqs % 2 == 0, 20.0 + np.sin(seqs / 5.0), np.nan)}))
        if not (running and step_no == len(plan)):
            writer.submit_step(StepRow(
                test_id=test_id, step_no=step_no, step_index=index, plan_line=3 + index,
                cycle=cycle, mode="cc", text="Charge" if index == 0 else "Discharge",
                start_seq=seq, end_seq=seq + step_samples - 1, start_test_time_s=t[0],
                end_test_time_s=t[-1] + 1.0, ah=float(current[0]) * step_samples / 3600,
                wh=float(current[0]) * 3.6 * step_samples / 3600,
                end_reason="step_time >= 10 s"))
        seq += step_samples
    writer.close()
    if not running:
        db.finish_tests([TestEnd(test_id, TestStatus.FINISHED.value, "plan complete",
                                 1.7e9 + seq)])
    return test_id


def test_a_running_test_shows_the_step_it_is_in(tmp_path: Path, database_url: str) -> None:
    db = open_database(database_url)
    test_id = write_test(db, cycles=3, steps_per_cycle=2, running=True)
    assert db.test(test_id).status is TestStatus.RUNNING  # type: ignore[union-attr]
    series = signal_series(db, test_id)
    # Step 6 (cycle 3's discharge) began at seq 51, 50 s in; it has no step row yet
    assert len(db.steps(test_id)) == 5
    assert series.running is not None
    assert (series.running.time_s, series.running.label) == (50.0, "step 6 running")
    assert series.time_s[-1] == 59.0  # every committed sample of it is drawn
    texts, boxes, panel = top_axis_labels(signals_figure([series]))
    assert texts[-1] == "step 6 running" and "1" in texts
    assert all(box.y0 >= panel.y1 for box in boxes)  # type: ignore[attr-defined]
    # Its running cycle alone: the marks are its finished step and the running one
    cycle = signal_series(db, test_id, cycle=3)
    assert [m.label for m in cycle.marks] == ["S5"]
    assert cycle.running is not None and cycle.running.time_s == 10.0
    assert cycle.time_s[-1] == 19.0
    code, output = plot(database_url, str(test_id), "--cycle", "3", "-o",
                        str(tmp_path / "now.png"))
    assert code == 0, output
    assert_image(tmp_path / "now.png", 1210, 825)
    db.close()


@pytest.mark.parametrize(("args", "message"), [
    (["9"], "no test 9 in sqlite:///"),
    (["1", "--cycle", "7"], "--cycle: test 1 has no cycle 7 (it has cycles 1..3)"),
    (["1", "--signals", "U,logger.humidity"],
     "--signals: test 1 has no signal 'logger.humidity'; it has U, I, T, P, Ah, Wh, "
     "logger.heater_power_w, logger.pressure_kpa, logger.temperature_c"),
    (["1", "--cycles", "--cycle", "2"], "--cycles and --cycle N are two different plots"),
    (["1", "--signals", " , "], "--signals: name at least one signal"),
    (["1", "9", "--cycles"], "no test 9 in sqlite:///"),
])
def test_what_cannot_be_drawn_is_an_error_saying_why(
        lab: tuple[str, Database], tmp_path: Path, args: list[str], message: str) -> None:
    url, _ = lab
    code, output = plot(url, *args, "-o", str(tmp_path / "x.png"))
    assert code == 2 and message in output.replace("\n", " "), output
    assert not (tmp_path / "x.png").exists()


def test_a_plan_without_a_loop_has_no_fade_plot(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'single.db'}")
    test_id = write_test(db, cycles=1, steps_per_cycle=3, running=False, first_cycle=0)
    assert [c.cycle for c in db.cycles(test_id)] == [0]
    with pytest.raises(PlotError, match="has no finished cycle yet"):
        cycle_series(db, test_id)
    series = signal_series(db, test_id)  # its signals draw, with no cycle to label
    assert series.marks == () and len(series.step_starts_s) == 3
    db.close()


def test_demo_cycles_ends_with_the_fade_plot_of_ageing_cells(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    result = runner.invoke(app, ["demo", "--cycles", "6", "--channels", "2", "--db", url])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == (
        "fade plot of tests 1 2: cellbench-demo-fade.png")
    assert_image(tmp_path / "cellbench-demo-fade.png", 1210, 770)
    db = open_database(url)
    for test_id in (1, 2):
        capacities = cycle_series(db, test_id).discharge_ah
        assert len(capacities) == 6
        assert np.all(np.diff(capacities) < 0)  # the cells age from cycle to cycle
        fade = 1 - capacities[-1] / capacities[0]
        assert 0.0005 < fade < 0.005 and not math.isnan(fade)
    db.close()


def test_a_test_that_has_just_started_has_nothing_to_draw_yet(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    db = open_database(url)
    test_id = write_test(db, cycles=0, steps_per_cycle=0, running=True)
    db.close()
    code, output = plot(url, str(test_id), "-o", str(tmp_path / "x.png"))
    assert code == 2 and f"test {test_id} has no samples yet" in output, output
    code, output = plot(url, str(test_id), "--cycles", "-o", str(tmp_path / "x.png"))
    assert code == 2 and "has no finished cycle yet" in output, output
    assert not (tmp_path / "x.png").exists()
