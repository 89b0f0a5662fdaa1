"""``cellbench native check``: load a vendor library as a station would, show what it offers,
and check it against cellbench's device contracts, without a station."""

from __future__ import annotations

import asyncio
import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cellbench_native.settings import Isolation, NativeSettings
from cellbench_sdk.cli import console, fail


class Offer(StrEnum):
    """Which half of the header to check."""

    BOTH = "both"
    OSI = "osi"
    BANK = "bank"


def register(app: typer.Typer) -> None:
    """Add ``cellbench native`` with its ``check`` command to ``app``."""
    native = typer.Typer(help="Vendor driver libraries built against cellbench_driver.h.",
                         no_args_is_help=True)

    @native.command()
    def check(
        library: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                help="the library (.so, .dll, .dylib)")],
        config: Annotated[str, typer.Option(help="text handed to cb_open")] = "",
        offer: Annotated[Offer, typer.Option(
            "--as", help="check it as an OSI device, a channel bank, or as whatever of the two "
            "it exports")] = Offer.BOTH,
        isolation: Annotated[str, typer.Option(
            help="process (a host process of its own) or in-process")] = "process",
        write: Annotated[list[str] | None, typer.Option(
            help="SIGNAL=VALUE: the value the check writes to a writable signal (default: "
            "the value it reads); repeat for several")] = None,
        settle: Annotated[float, typer.Option(
            min=0.0, help="seconds between a channel's setpoints and its measurement")] = 0.2,
    ) -> None:
        """Load LIBRARY as a station would, list its signals or channels with a first reading,
        and run the SDK's conformance checks on it (exit 1 when one fails).

        Example: cellbench native check ./libacme.so --config "port=/dev/ttyUSB0" --as osi
        """
        if isolation not in ("process", "in-process"):
            fail(f"--isolation: {isolation!r} is neither 'process' nor 'in-process'", code=2)
        values = _values(write or [])
        settings = NativeSettings(library=library.resolve(), config=config,
                                  isolation=_isolation(isolation))
        if not asyncio.run(_check(settings, offer, values, settle)):
            raise typer.Exit(1)

    app.add_typer(native, name="native")


def _isolation(text: str) -> Isolation:
    return "in-process" if text == "in-process" else "process"


def _values(pairs: list[str]) -> dict[str, float]:
    values: dict[str, float] = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not name or not math.isfinite(value):
            fail(f"--write {pair!r}: give SIGNAL=VALUE with a finite number, like "
                 "charge_enable=1", code=2)
        values[name] = value
    return values


async def _check(settings: NativeSettings, offer: Offer, values: dict[str, float],
                 settle_s: float) -> bool:
    """Show and check each half of the header the library offers (or ``offer`` names);
    whether all went well."""
    from cellbench_native.library import NativeError, Variant, missing_functions
    from cellbench_sdk.driver_header import api_version, declarations

    try:  # the conformance kit needs pytest, which a station without the testing extra lacks
        import cellbench_sdk.testing  # noqa: F401
    except ImportError as err:
        fail(f"the checks need cellbench-sdk[testing] (pip install 'cellbench-sdk[testing]'): "
             f"{err}", code=2)

    try:
        missing = missing_functions(str(settings.library), declarations())
    except NativeError as err:
        fail(err.message, code=2)
    wanted: list[Variant] = ["osi", "bank"]
    if offer is not Offer.BOTH:
        wanted = ["osi"] if offer is Offer.OSI else ["bank"]
    offered = [variant for variant in wanted if not missing[variant]]
    for variant in wanted:
        if missing[variant]:
            what = "an OSI device" if variant == "osi" else "a channel bank"
            console.print(f"not {what}: {settings.library.name} lacks "
                          f"{', '.join(missing[variant])} (cellbench_driver.h version "
                          f"{api_version()})")
    if not offered:
        return False
    passed = True
    for variant in offered:
        passed &= await (_check_osi(settings, values) if variant == "osi"
                         else _check_bank(settings, settle_s))
    return passed


async def _check_osi(settings: NativeSettings, values: dict[str, float]) -> bool:
    from cellbench_native.device import NativeDevice
    from cellbench_sdk import DeviceError, RealClock
    from cellbench_sdk.testing import check_osi_device

    device = NativeDevice(settings)
    try:
        await device.open(RealClock())
        try:
            readings = await device.read()
            said = ", ".join(f"{name}={value}" for name, value in device.info.items())
            console.print(f"OSI device {device.name}: {len(device.signals)} signals"
                          + (f"; {said}" if said else ""), highlight=False)
            for info in device.signals:
                reading = readings.get(info.name)
                shown = "(not read)" if reading is None else f"{reading.value:g} {info.unit}"
                console.print(f"  {info.name:<24} {'writable' if info.writable else 'read-only':<9}"
                              f" {shown}")
        finally:
            await device.close()
        await check_osi_device(NativeDevice(settings), values=values,
                               timeout_s=settings.call_timeout_s + settings.start_timeout_s)
    except (DeviceError, AssertionError, ValueError) as err:
        console.print(f"[red]OSI device: {err}[/red]")
        return False
    console.print("[green]passes the OSI-device contract[/green]")
    return True


async def _check_bank(settings: NativeSettings, settle_s: float) -> bool:
    from cellbench_native.channels import NativeChannels
    from cellbench_sdk import DeviceError, RealClock
    from cellbench_sdk.testing import check_channel_driver

    bank = NativeChannels(settings)
    try:
        await bank.open(RealClock())
        try:
            batch = await bank.measure()
            console.print(f"channel bank {bank.name}: {len(bank.channels)} channels")
            for c, info in enumerate(bank.channels):
                row = int(batch.channel.tolist().index(c))
                console.print(f"  {info.name:<12} {info.voltage_min_v:g}..{info.voltage_max_v:g} "
                              f"V, ±{info.current_max_a:g} A, {info.power_max_w:g} W; now "
                              f"{batch.voltage_v[row]:g} V, {batch.current_a[row]:g} A")
        finally:
            await bank.close()
        modes = await check_channel_driver(
            NativeChannels(settings), settle_s=settle_s,
            timeout_s=settings.call_timeout_s + settings.start_timeout_s)
    except (DeviceError, AssertionError) as err:
        console.print(f"[red]channel bank: {err}[/red]")
        return False
    console.print(f"[green]passes the channel-driver contract; modes: "
                  f"{', '.join(sorted(modes))}[/green]")
    return True
