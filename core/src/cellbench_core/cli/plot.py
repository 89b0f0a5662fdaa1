"""``cellbench plot``: voltage, current and temperature of a stored test over time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellbench_core.cli.app import app
from cellbench_core.cli.console import console, fail
from cellbench_core.cli.database import DbOption, StationOption, database_url, opened
from cellbench_core.storage import Database

#: Above this many steps only cycle boundaries are drawn; step lines would hide the data.
_MAX_STEP_LINES = 400


def plot_test(db: Database, test_id: int, output: Path) -> None:
    """Draw test ``test_id`` into ``output`` (PNG, SVG or PDF by its suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = db.test(test_id)
    if test is None:
        raise LookupError(f"no test {test_id} in {db.url}")
    data = db.samples(test_id, ["test_time_s", "voltage_v", "current_a", "temperature_c"])
    if not len(data["test_time_s"]):
        raise LookupError(f"test {test_id} has no samples yet")
    steps = db.steps(test_id)
    hours = data["test_time_s"] / 3600.0
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(11, 7.5), constrained_layout=True)
    series = (("voltage_v", "Voltage [V]", "tab:blue"), ("current_a", "Current [A]", "tab:red"),
              ("temperature_c", "Temperature [°C]", "tab:orange"))
    for ax, (column, label, colour) in zip(axes, series, strict=True):
        ax.plot(hours, data[column], color=colour, linewidth=0.8)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if len(steps) <= _MAX_STEP_LINES:
            for step in steps:
                ax.axvline(step.start_test_time_s / 3600.0, color="0.75", linewidth=0.5,
                           zorder=0)
        previous = None
        for step in steps:
            if step.cycle != previous and step.cycle > 0:
                ax.axvline(step.start_test_time_s / 3600.0, color="0.3", linewidth=0.9,
                           linestyle="--", zorder=0)
                if ax is axes[0]:
                    ax.annotate(f"cycle {step.cycle}", (step.start_test_time_s / 3600.0, 1.0),
                                xycoords=("data", "axes fraction"), fontsize=7,
                                xytext=(2, -10), textcoords="offset points")
            previous = step.cycle
    axes[-1].set_xlabel("Test time [h]")
    axes[0].set_title(f"Test {test_id}: {test.name} — channel {test.channel}, "
                      f"{test.status} ({test.end_reason or 'running'})", fontsize=10)
    fig.savefig(output, dpi=110)
    plt.close(fig)


@app.command("plot")
def plot_command(
    test: Annotated[int, typer.Argument(help="Test id (see the demo's summary).",
                                        show_default=False)],
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Image file (.png, .svg, .pdf); default test-TEST.png, e.g. "
                               "test-3.png.", show_default=False)] = None,
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """Draw voltage, current and temperature of TEST over time, steps and cycles marked.

    Example: cellbench plot 3 --db sqlite:///cellbench-demo.db -o cell3.png
    """
    output = output or Path(f"test-{test}.png")
    if not output.parent.is_dir():
        fail(f"-o {output}: there is no folder {output.parent}", code=2)
    with opened(database_url(db, station)) as database:
        try:
            plot_test(database, test, output)
        except LookupError as err:
            fail(str(err.args[0]), code=2)
        except OSError as err:
            fail(f"-o {output}: cannot write: {err.strerror or err}", code=2)
    console.print(f"wrote {output}")
