"""Registers the Binder climate chamber with cellbench, and ``cellbench binder emulate``.

cellbench imports this module at every start, so it stays light: the factory is named as a
"module:attr" string, and the emulator is imported only when its command runs.
"""

import typer

from cellbench_binder.settings import BinderSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_climate_chambers() -> list[Descriptor]:
    """Binder chambers with MB1 or MB2 controllers."""
    return [
        Descriptor(
            Kind.CLIMATE_CHAMBER,
            "binder",
            "cellbench_binder.chamber:create_chamber",
            "Binder MB1/MB2 chamber over Modbus TCP, RTU over TCP or RTU serial",
            BinderSettings,
            emulator="cellbench_binder.emulator:serve",
        )
    ]


@hookimpl
def cellbench_cli(app: typer.Typer) -> None:
    """``cellbench binder emulate``: an emulated Binder controller on loopback."""
    binder = typer.Typer(
        help="Binder climate chambers (MB1/MB2 over Modbus).", no_args_is_help=True
    )

    @binder.command()
    def emulate(
        port: int = typer.Option(10001, help="TCP port to listen on (127.0.0.1)."),
        speed: float = typer.Option(1.0, min=0.0, help="Model seconds per wall-clock second."),
        framing: str = typer.Option("rtu-over-tcp", help="rtu-over-tcp or modbus-tcp."),
        controller: str = typer.Option("MB1", help="Register map: MB1 or MB2."),
    ) -> None:
        """Serve an emulated Binder controller with a thermal model until Ctrl-C."""
        import asyncio
        import contextlib

        from cellbench_binder.emulator import BinderEmulator, EmulatedFraming, serve

        if framing not in ("rtu-over-tcp", "modbus-tcp"):
            raise typer.BadParameter("rtu-over-tcp or modbus-tcp", param_hint="--framing")
        if controller not in ("MB1", "MB2"):
            raise typer.BadParameter("MB1 or MB2", param_hint="--controller")
        framer: EmulatedFraming = "modbus-tcp" if framing == "modbus-tcp" else "rtu-over-tcp"

        def ready(emu: BinderEmulator) -> None:
            typer.echo(
                f"binder {controller} emulator ({framing}) on {emu.host}:{emu.port}, "
                f"speed {speed:g}",
                err=True,
            )

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                serve("127.0.0.1", port, framing=framer, ready=ready, family=controller,
                      speed=speed)
            )

    app.add_typer(binder, name="binder")
