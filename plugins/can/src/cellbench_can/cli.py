"""``cellbench can emulate``: an emulated BMS for trying the CAN device without a battery, on
an emulated SLCAN adapter (a pty) or on any python-can bus."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cellbench_sdk.cli import fail

if TYPE_CHECKING:  # imported when the emulator runs, not at every cellbench start
    from cellbench_can.emulator import BmsNode, SlcanAdapter

#: What the emulator understands on its standard input, one command a line.
COMMANDS = """\
silence [MESSAGE ...]   stop sending these messages (all when none is named)
resume [MESSAGE ...]    send them again
bad MESSAGE LENGTH      send one frame of MESSAGE with LENGTH bytes (a wrong length)
set SIGNAL VALUE        send VALUE for SIGNAL from now on (over the pack's)
count                   answer `ok N`: the frames sent so far
hangup                  unplug the SLCAN adapter (the station's port fails)
quit                    stop"""


def register(app: typer.Typer) -> None:
    """Add ``cellbench can`` with its ``emulate`` command to ``app``."""
    can_app = typer.Typer(help="CAN buses: battery management systems with DBC files.",
                          no_args_is_help=True)

    @can_app.command(help=f"""Run an emulated BMS that sends a database's frames from a
    simulated pack, until Ctrl-C or `quit`.

    Without --interface it sits behind an emulated SLCAN adapter on a pseudo-terminal whose path
    it prints: a station reaches it with [devices.settings] bus = {{interface = "slcan",
    channel = "PATH"}}. With --interface and --channel it is on that python-can bus
    (udp_multicast, socketcan vcan0, ...).

    Commands on standard input, one a line, each answered `ok` or `error: ...`:\n\n
    {COMMANDS.replace(chr(10), chr(10) * 2)}""")
    def emulate(
        database: Annotated[Path | None, typer.Option(
            help="DBC/KCD/SYM file (default: the bundled bms.dbc)")] = None,
        interface: Annotated[str | None, typer.Option(help="python-can interface")] = None,
        channel: Annotated[str | None, typer.Option(help="python-can channel")] = None,
        node: Annotated[str, typer.Option(help="the database's node to be")] = "BMS",
        cells: Annotated[int, typer.Option(min=1, max=96, help="cells in series")] = 6,
        capacity: Annotated[float, typer.Option(min=0.001, help="cell capacity (Ah)")] = 2.5,
        soc: Annotated[float, typer.Option(min=0.0, max=1.0, help="state of charge")] = 0.5,
        speed: Annotated[float, typer.Option(min=0.001, help="pack time per wall second")] = 1.0,
    ) -> None:
        run(database, interface, channel, node, cells, capacity, soc, speed)

    app.add_typer(can_app, name="can")


def run(database_path: Path | None, interface: str | None, channel: str | None, node: str,
        cells: int, capacity_ah: float, soc: float, speed: float) -> None:
    """Serve the emulated BMS and answer commands on standard input until ``quit`` or its end
    (or Ctrl-C)."""
    import can

    from cellbench_can.database import CanConfigError, load
    from cellbench_can.emulator import BMS_DBC, BmsNode, Pack, SlcanAdapter

    if (interface is None) != (channel is None):
        fail("give --interface and --channel together (or neither, for an SLCAN pty)")
    try:
        database = load(database_path or BMS_DBC, strict=False)
    except CanConfigError as error:
        fail(str(error))
    adapter = None
    if interface is None:
        inner = f"cellbench-slcan-{uuid.uuid4().hex}"
        node_bus = can.Bus(interface="virtual", channel=inner)
        adapter = SlcanAdapter(can.Bus(interface="virtual", channel=inner))
        where = f"SLCAN adapter on {adapter.start()}"
    else:
        try:
            node_bus = can.Bus(interface=interface, channel=channel)
        except (can.CanError, OSError, ValueError, ImportError) as error:
            fail(f"cannot open {interface}:{channel}: {error}")
        where = f"{interface}:{channel}"
    try:
        bms = BmsNode(node_bus, database, node=node, speed=speed,
                      pack=Pack(cells=cells, capacity_ah=capacity_ah, soc=soc))
    except ValueError as error:
        fail(str(error))
    bms.start()
    print(f"BMS emulator: {where} (node {node}, sends "
          f"{', '.join(m.name for m in bms.sends)}); commands on stdin, Ctrl-C stops", flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if words == ["quit"]:
                break
            try:
                answer = _command(bms, adapter, words)
            except (ValueError, KeyError, IndexError, can.CanError) as error:
                print(f"error: {error}", flush=True)
            else:
                print(f"ok {answer}" if answer else "ok", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        bms.stop()
        if adapter is not None:
            adapter.stop()
            adapter.bus.shutdown()
        node_bus.shutdown()


def _command(bms: BmsNode, adapter: SlcanAdapter | None, words: list[str]) -> str:
    """Carry out one command line of :data:`COMMANDS`; returns what the answer carries besides
    `ok` (mostly nothing); ValueError says what is wrong."""
    verb, args = (words[0], words[1:]) if words else ("", [])
    if verb == "silence":
        bms.silence(*args)
    elif verb == "resume":
        bms.resume(*args)
    elif verb == "bad" and len(args) == 2:
        bms.send_frame(args[0], int(args[1]))
    elif verb == "set" and len(args) == 2:
        bms.overrides[args[0]] = float(args[1])
    elif verb == "hangup" and adapter is not None:
        adapter.hang_up()
    elif words == ["count"]:
        return str(bms.frames_sent)
    else:
        verbs = ", ".join(line.split()[0] for line in COMMANDS.splitlines())
        raise ValueError(f"unknown command {' '.join(words)!r} (the commands: {verbs}; see "
                         "--help)")
    return ""
