"""``cellbench plot``: a stored test's signals over time, one cycle of it, or its per-cycle
capacity and efficiency (the fade plot); several tests in one figure to compare cells."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellbench_core.cli.app import app
from cellbench_core.cli.console import console, fail
from cellbench_core.plots import (
    DEFAULT_SIGNALS,
    PlotError,
    cycle_series,
    draw_cycles,
    draw_signals,
    signal_series,
)
from cellbench_core.station import StationError, load_station
from cellbench_core.storage import Database, open_database


def plot_tests(db: Database, test_ids: list[int], output: Path, *, cycles: bool = False,
               cycle: int | None = None, signals: tuple[str, ...] = DEFAULT_SIGNALS) -> None:
    """Draw ``test_ids`` into ``output`` (PNG, SVG or PDF by its suffix): per-cycle results
    with ``cycles``, else ``signals`` over time (of cycle ``cycle`` only, if given).
    PlotError if a test, cycle or signal is not there."""
    if cycles:
        draw_cycles([cycle_series(db, test_id) for test_id in test_ids], output)
    else:
        draw_signals([signal_series(db, test_id, signals, cycle) for test_id in test_ids],
                     output)


def default_output(test_ids: list[int], cycles: bool, cycle: int | None) -> Path:
    """``test-3.png``, ``test-3-cycles.png``, ``test-3-cycle-7.png``, ``tests-3-7-9.png``..."""
    name = ("test-" if len(test_ids) == 1 else "tests-") + "-".join(map(str, test_ids))
    suffix = "-cycles" if cycles else "" if cycle is None else f"-cycle-{cycle}"
    return Path(f"{name}{suffix}.png")


@app.command("plot")
def plot_command(
    tests: Annotated[list[int], typer.Argument(
        help="Test ids (see `cellbench test list`); several are drawn in one figure.",
        show_default=False)],
    cycles: Annotated[bool, typer.Option(
        "--cycles", help="Capacity and efficiency per cycle (the fade plot).")] = False,
    cycle: Annotated[int | None, typer.Option(
        help="Only this cycle's signals, over the time since it began.")] = None,
    signals: Annotated[str, typer.Option(
        help="Signals to draw, comma-separated: U, I, T, P, Ah, Wh, or aux signal names.")
    ] = ",".join(DEFAULT_SIGNALS),
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Image file (.png, .svg, .pdf); default test-<id>.png.")] = None,
    db: Annotated[str | None, typer.Option(help="Database URL.")] = None,
    station: Annotated[Path | None, typer.Option(help="Station file whose database to read.")
                       ] = None,
) -> None:
    """Draw stored tests: voltage, current and temperature over time with steps and cycles
    marked, one cycle, or capacity and efficiency per cycle.

    Examples: cellbench plot 3 --db sqlite:///cellbench-demo.db -o cell3.png;
    cellbench plot 3 7 9 --cycles (compare the fade of three cells);
    cellbench plot 3 --cycle 12 --signals U,I,T,T_ambient
    """
    if cycles and cycle is not None:
        fail("--cycles and --cycle N are two different plots: give one of them", code=2)
    names = tuple(name.strip() for name in signals.split(",") if name.strip())
    if not names:
        fail("--signals: name at least one signal, e.g. U,I,T", code=2)
    try:
        url = db or (load_station(station).station.database if station
                     else "sqlite:///cellbench.db")
    except StationError as err:
        fail(str(err), code=2)
    output = output or default_output(tests, cycles, cycle)
    database = open_database(url)
    try:
        plot_tests(database, tests, output, cycles=cycles, cycle=cycle, signals=names)
    except PlotError as err:
        fail(str(err.args[0]), code=2)
    finally:
        database.close()
    console.print(f"wrote {output}")
