"""``cellbench battery add/edit/list/show/delete``: the battery registry of a station's database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from cellbench_core.cli.app import app
from cellbench_core.cli.console import console, fail
from cellbench_core.cli.database import DbOption, StationOption, database_url, opened
from cellbench_core.storage import BatteryRecord, StorageError
from cellbench_core.units import Dimension, UnitError, parse_value

battery_app = typer.Typer(
    help="The battery registry: nominal data and limits that plans' C-rates and safety limits "
         "use (cellbench run --battery NAME).", no_args_is_help=True)
app.add_typer(battery_app, name="battery")


def _value(option: str, text: str | None, dimension: Dimension,
           capacity_ah: float | None = None) -> float | None:
    if text is None:
        return None
    try:
        value = parse_value(text, dimension, c_rate=capacity_ah is not None)
    except UnitError as err:
        fail(f"{option}: {err}", code=2)
    return value.resolve(capacity_ah)


def _metadata(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--meta: expected key=value, like supplier=ACME, not {item!r}", code=2)
        if key.strip() in out:
            fail(f"--meta: {key.strip()!r} is given twice", code=2)
        out[key.strip()] = value.strip()
    return out


def _quantity(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:g} {unit}"


@battery_app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(help="The battery's name, e.g. LFP-26650-A.",
                                        show_default=False)],
    chemistry: Annotated[str, typer.Option(help="e.g. NMC, LFP, LTO.", show_default=False)],
    capacity: Annotated[str, typer.Option(help="Nominal capacity, e.g. '2.5 Ah'; C-rates in "
                                               "plans refer to it.", show_default=False)],
    nominal_voltage: Annotated[str | None, typer.Option(help="e.g. '3.7 V'.")] = None,
    voltage_max: Annotated[str | None, typer.Option(help="Highest permitted voltage, e.g. "
                                                         "'4.2 V'.")] = None,
    voltage_min: Annotated[str | None, typer.Option(help="Lowest permitted voltage, e.g. "
                                                         "'2.5 V'.")] = None,
    charge_current_max: Annotated[str | None, typer.Option(
        help="Highest charge current, e.g. '5 A' or '2C'.")] = None,
    discharge_current_max: Annotated[str | None, typer.Option(
        help="Highest discharge current (a magnitude), e.g. '7.5 A' or '3C'.")] = None,
    temperature_max: Annotated[str | None, typer.Option(
        help="Highest permitted cell temperature, e.g. '60 °C' or '60 degC'.")] = None,
    meta: Annotated[list[str] | None, typer.Option(
        help="Free metadata as key=value (repeat it), e.g. --meta supplier=ACME "
             "--meta lot=42.", show_default=False)] = None,
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """Register a battery: chemistry, nominal capacity, and the limits every test on it keeps.

    Example: cellbench battery add NMC-18650-A --chemistry NMC --capacity "2.5 Ah"
    --voltage-max "4.2 V" --voltage-min "2.5 V" --charge-current-max 1C
    --discharge-current-max 2C --temperature-max "60 °C" --meta supplier=ACME
    """
    capacity_ah = _value("--capacity", capacity, Dimension.CHARGE)
    assert capacity_ah is not None
    if not capacity_ah > 0:
        fail(f"--capacity: must be positive, not {capacity!r}", code=2)
    values: dict[str, Any] = {
        "nominal_voltage_v": _value("--nominal-voltage", nominal_voltage, Dimension.VOLTAGE),
        "voltage_max_v": _value("--voltage-max", voltage_max, Dimension.VOLTAGE),
        "voltage_min_v": _value("--voltage-min", voltage_min, Dimension.VOLTAGE),
        "current_max_charge_a": _value("--charge-current-max", charge_current_max,
                                       Dimension.CURRENT, capacity_ah),
        "current_max_discharge_a": _value("--discharge-current-max", discharge_current_max,
                                          Dimension.CURRENT, capacity_ah),
        "temperature_max_c": _value("--temperature-max", temperature_max,
                                    Dimension.TEMPERATURE),
    }
    for key in ("current_max_charge_a", "current_max_discharge_a"):
        if values[key] is not None:
            values[key] = abs(values[key])
    metadata = _metadata(meta or [])
    with opened(database_url(db, station), create=True) as database:
        try:
            database.add_battery(name, chemistry, capacity_ah, metadata=metadata, **values)
        except (StorageError, ValueError) as err:
            fail(str(err), code=2)
        record = database.battery(name)
    assert record is not None
    console.print(f"registered battery [bold]{name}[/bold]")
    console.print(_details(record))


@battery_app.command("edit")
def edit_command(
    name: Annotated[str, typer.Argument(help="The battery's name.", show_default=False)],
    chemistry: Annotated[str | None, typer.Option(help="e.g. NMC, LFP, LTO.")] = None,
    capacity: Annotated[str | None, typer.Option(help="Nominal capacity, e.g. '2.5 Ah'.")
                        ] = None,
    nominal_voltage: Annotated[str | None, typer.Option(help="e.g. '3.7 V'; 'none' clears "
                                                             "it (likewise below).")] = None,
    voltage_max: Annotated[str | None, typer.Option(help="e.g. '4.2 V'.")] = None,
    voltage_min: Annotated[str | None, typer.Option(help="e.g. '2.5 V'.")] = None,
    charge_current_max: Annotated[str | None, typer.Option(help="e.g. '5 A' or '2C'.")
                                  ] = None,
    discharge_current_max: Annotated[str | None, typer.Option(help="e.g. '7.5 A' or '3C'.")
                                     ] = None,
    temperature_max: Annotated[str | None, typer.Option(help="e.g. '60 °C'.")] = None,
    meta: Annotated[list[str] | None, typer.Option(
        help="Replace the metadata: key=value (repeat it).", show_default=False)] = None,
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """Change a registered battery's values: only those given; the same rules as add.

    Example: cellbench battery edit NMC-18650-A --voltage-max "4.15 V" --temperature-max none
    """
    with opened(database_url(db, station)) as database:
        record = database.battery(name)
        if record is None:
            known = ", ".join(b.name for b in database.batteries()) or "none registered"
            fail(f"no battery called {name!r} (known: {known})", code=2)
        changes: dict[str, Any] = {}
        if chemistry is not None:
            changes["chemistry"] = chemistry
        if capacity is not None:
            changes["nominal_capacity_ah"] = _value("--capacity", capacity, Dimension.CHARGE)
        capacity_ah = changes.get("nominal_capacity_ah", record.nominal_capacity_ah)
        for option, text, key, dimension, c_rate in (
                ("--nominal-voltage", nominal_voltage, "nominal_voltage_v", Dimension.VOLTAGE,
                 False),
                ("--voltage-max", voltage_max, "voltage_max_v", Dimension.VOLTAGE, False),
                ("--voltage-min", voltage_min, "voltage_min_v", Dimension.VOLTAGE, False),
                ("--charge-current-max", charge_current_max, "current_max_charge_a",
                 Dimension.CURRENT, True),
                ("--discharge-current-max", discharge_current_max, "current_max_discharge_a",
                 Dimension.CURRENT, True),
                ("--temperature-max", temperature_max, "temperature_max_c",
                 Dimension.TEMPERATURE, False)):
            if text is None:
                continue
            if text.strip().lower() == "none":
                changes[key] = None
                continue
            value = _value(option, text, dimension, capacity_ah if c_rate else None)
            changes[key] = abs(value) if c_rate and value is not None else value
        if meta is not None:
            changes["metadata"] = _metadata(meta)
        if not changes:
            fail("nothing to change: give the options to change (cellbench battery edit "
                 "--help)", code=2)
        try:
            record = database.update_battery(name, changes)
        except (StorageError, ValueError) as err:
            fail(str(err), code=2)
    console.print(f"changed battery [bold]{name}[/bold]")
    console.print(_details(record))


@battery_app.command("list")
def list_command(db: DbOption = None, station: StationOption = None) -> None:
    """List the registered batteries with their nominal data and limits."""
    with opened(database_url(db, station)) as database:
        batteries = database.batteries()
    if not batteries:
        console.print("No batteries registered; add one with `cellbench battery add`.")
        return
    table = Table(title="Batteries", title_justify="left")
    for column, justify in (("name", "left"), ("chemistry", "left"), ("capacity", "right"),
                            ("voltage", "right"), ("charge max", "right"),
                            ("discharge max", "right"), ("T max", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for b in batteries:
        low = "…" if b.voltage_min_v is None else f"{b.voltage_min_v:g}"
        high = "…" if b.voltage_max_v is None else f"{b.voltage_max_v:g}"
        window = "-" if b.voltage_min_v is None and b.voltage_max_v is None \
            else f"{low}-{high} V"
        table.add_row(b.name, b.chemistry, f"{b.nominal_capacity_ah:g} Ah", window,
                      _quantity(b.current_max_charge_a, "A"),
                      _quantity(b.current_max_discharge_a, "A"),
                      _quantity(b.temperature_max_c, "°C"))
    console.print(table)


@battery_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="The battery's name.", show_default=False)],
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """Show one battery: every stored value, its metadata, and the tests run on it."""
    with opened(database_url(db, station)) as database:
        record = database.battery(name)
        if record is None:
            known = ", ".join(b.name for b in database.batteries()) or "none registered"
            fail(f"no battery called {name!r} (known: {known})", code=2)
        tests = database.tests(battery=name)
    console.print(_details(record))
    if tests:
        table = Table(title=f"Tests on {name}", title_justify="left")
        for column in ("test", "channel", "plan", "status", "end"):
            table.add_column(column)
        for t in tests:
            table.add_row(str(t.id), t.channel, t.plan_name, t.status.value, t.end_reason or "")
        console.print(table)


@battery_app.command("delete")
def delete_command(
    name: Annotated[str, typer.Argument(help="The battery's name.", show_default=False)],
    keep_tests: Annotated[bool, typer.Option(
        "--keep-tests", help="Delete it even though tests ran on it; they stay, without a "
                             "battery.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
    db: DbOption = None,
    station: StationOption = None,
) -> None:
    """Remove a battery from the registry. A battery that tests ran on is refused unless
    --keep-tests (delete the tests first with cellbench test delete to remove them too)."""
    with opened(database_url(db, station)) as database:
        if database.battery(name) is None:
            known = ", ".join(b.name for b in database.batteries()) or "none registered"
            fail(f"no battery called {name!r} (known: {known})", code=2)
        used = len(database.tests(battery=name))
        if used and not keep_tests:
            fail(f"battery {name!r} has {used} test(s): delete them first (cellbench test "
                 "delete), or give --keep-tests to keep them without a battery", code=2)
        if not yes and not typer.confirm(f"Delete battery {name!r}?"):
            fail("nothing deleted", code=1)
        try:
            database.delete_battery(name, keep_tests=keep_tests)
        except StorageError as err:
            fail(str(err), code=2)
    console.print(f"deleted battery {name}" + (f"; its {used} test(s) kept without a battery"
                                                 if used else ""))


def _details(b: BatteryRecord) -> Table:
    table = Table(title=f"Battery {b.name}", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    created = datetime.fromtimestamp(b.created_unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    rows = [("chemistry", b.chemistry), ("nominal capacity", f"{b.nominal_capacity_ah:g} Ah"),
            ("nominal voltage", _quantity(b.nominal_voltage_v, "V")),
            ("voltage max", _quantity(b.voltage_max_v, "V")),
            ("voltage min", _quantity(b.voltage_min_v, "V")),
            ("charge current max", _quantity(b.current_max_charge_a, "A")),
            ("discharge current max", _quantity(b.current_max_discharge_a, "A")),
            ("temperature max", _quantity(b.temperature_max_c, "°C")),
            ("registered", created)]
    rows += [(f"meta: {k}", str(v)) for k, v in sorted(b.metadata.items())]
    for key, value in rows:
        table.add_row(key, value)
    return table

