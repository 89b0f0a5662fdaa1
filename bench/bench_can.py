"""CAN device: frames decoded per second on python-can's virtual bus against cantools' raw decode
rate (and the bare virtual bus) in the same run; latency from a frame's send to its signal
being available to the runner (p50/p99); a BMS with 100 signals at 100 Hz for a while, on the
virtual bus and behind an emulated SLCAN adapter in another process: frames dropped and the CPU
the device's reader thread takes.

    .venv/bin/python bench/bench_can.py [--frames 100000] [--latency 2000] [--seconds 10]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import can
import numpy as np

from cellbench_can.database import load
from cellbench_can.device import CanDevice
from cellbench_can.emulator import BMS_DBC, BmsNode
from cellbench_can.settings import CanSettings
from cellbench_sdk import RealClock

#: The bundled database's messages the benchmark sends, by name (standard, multiplexed,
#: extended).
MIX = ("BMS_Pack", "BMS_CellVoltages", "BMS_CellSummary")


def channel() -> str:
    return f"bench-can-{uuid.uuid4().hex}"


def device(database: Path, bus_channel: str) -> CanDevice:
    return CanDevice(CanSettings.model_validate({
        "bus": {"interface": "virtual", "channel": bus_channel}, "database": str(database),
        "node": "STATION" if database == BMS_DBC else None}))


def mixed_frames(count: int) -> list[can.Message]:
    """``count`` frames of the bundled database, the node's values, round the mix."""
    database = load(BMS_DBC)
    node = BmsNode(can.Bus(interface="virtual", channel=channel()), database)
    one_round = [frame for name in MIX for frame in node.frames(
        database.get_message_by_name(name))]
    node.bus.shutdown()
    return [one_round[n % len(one_round)] for n in range(count)]


def cantools_rate(frames: list[can.Message]) -> float:
    """Frames per second cantools decodes, looked up by id, with nothing else around it."""
    database = load(BMS_DBC)
    by_id = {(m.frame_id, m.is_extended_frame): m for m in database.messages}
    payloads = [(by_id[(f.arbitration_id, f.is_extended_id)], bytes(f.data)) for f in frames]
    start = time.perf_counter()
    for message, data in payloads:
        message.decode(data, decode_choices=False)
    return len(frames) / (time.perf_counter() - start)


def handler_rate(frames: list[can.Message]) -> float:
    """Frames per second through the device's own frame handler (decode and keep the values),
    called directly, without a bus or threads: its share of the per-frame cost."""
    bms = device(BMS_DBC, channel())
    handled = [(bms.layout.received[(f.arbitration_id, f.is_extended_id)], f) for f in frames]
    bms._seen = dict.fromkeys(bms.layout.received, 0.0)
    start = time.perf_counter()
    for received, frame in handled:
        bms._on_frame(received, frame)
    return len(frames) / (time.perf_counter() - start)


def bus_rate(frames: list[can.Message]) -> float:
    """Frames per second through the virtual bus from one Bus to another, not decoded."""
    name = channel()
    sender, receiver = (can.Bus(interface="virtual", channel=name) for _ in range(2))
    start = time.perf_counter()
    for frame in frames:
        sender.send(frame)
    for _ in frames:
        receiver.recv(1.0)
    elapsed = time.perf_counter() - start
    sender.shutdown()
    receiver.shutdown()
    return len(frames) / elapsed


async def device_rate(frames: list[can.Message]) -> float:
    """Frames per second the device decodes and keeps, sent as fast as the bus takes them."""
    name = channel()
    bms = device(BMS_DBC, name)
    sender = can.Bus(interface="virtual", channel=name)
    await bms.open(RealClock())
    start = time.perf_counter()
    for frame in frames:
        sender.send(frame)
    while bms.frames_decoded < len(frames):
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    await bms.close()
    sender.shutdown()
    return len(frames) / elapsed


async def latency(samples: int) -> np.ndarray:
    """Seconds from ``send()`` of a frame to the time its value was available to ``read()``
    (the reading's time_s, stamped when the decoded value was kept)."""
    name = channel()
    bms = device(BMS_DBC, name)
    message = load(BMS_DBC).get_message_by_name("BMS_Pack")
    sender = can.Bus(interface="virtual", channel=name)
    await bms.open(RealClock())
    delays = []
    for n in range(samples):
        volts = 10 + (n % 5000) / 100
        data = message.encode({"PackVoltage": volts, "PackCurrent": 0, "StateOfCharge": 50,
                               "ContactorClosed": 0, "ChargeAllowed": 0, "PackCounter": 0})
        sent = time.monotonic()
        sender.send(can.Message(arbitration_id=message.frame_id, is_extended_id=False,
                                data=data))
        await asyncio.sleep(0.002)  # the runner reads later; the stamp says when it could
        reading = (await bms.read())["PackVoltage"]
        if abs(reading.value - volts) < 0.005:
            delays.append(reading.time_s - sent)
    await bms.close()
    sender.shutdown()
    return np.array(delays)


async def bus_latency(samples: int) -> np.ndarray:
    """Seconds from ``send()`` to ``recv()`` returning the frame on a thread of its own, sent
    from an event loop as :func:`latency` sends: the virtual bus and the thread switch alone,
    the floor under the device's latency."""
    name = channel()
    sender, receiver = (can.Bus(interface="virtual", channel=name) for _ in range(2))
    arrived: list[float] = []

    def receive() -> None:
        for _ in range(samples):
            if receiver.recv(5.0) is not None:
                arrived.append(time.monotonic())

    thread = threading.Thread(target=receive)
    thread.start()
    sent = []
    for _ in range(samples):
        sent.append(time.monotonic())
        sender.send(can.Message(arbitration_id=0x100, is_extended_id=False, data=bytes(8)))
        await asyncio.sleep(0.002)
    await asyncio.to_thread(thread.join)
    sender.shutdown()
    receiver.shutdown()
    delays: np.ndarray = np.array(arrived) - np.array(sent)
    return delays


def hundred_signals(path: Path) -> Path:
    """A DBC of 25 messages of four 16-bit signals each, every one every 10 ms."""
    lines = ['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_: BMS STATION", ""]
    for m in range(25):
        lines.append(f"BO_ {0x300 + m} BMS_Block{m}: 8 BMS")
        lines += [f' SG_ S{m}_{s} : {16 * s}|16@1+ (0.001,0) [0|65.535] "V" STATION'
                  for s in range(4)]
        lines.append("")
    lines.append('BA_DEF_ BO_ "GenMsgCycleTime" INT 0 65535;')
    lines.append('BA_DEF_DEF_ "GenMsgCycleTime" 0;')
    lines += [f'BA_ "GenMsgCycleTime" BO_ {0x300 + m} 10;' for m in range(25)]
    path.write_text("\n".join(lines) + "\n")
    return path


class Peer(NamedTuple):
    """What the benchmark asks of the BMS: how many frames it sent, to fall silent, to send
    again."""

    sent: Callable[[], int]
    silence: Callable[[], None]
    resume: Callable[[], None]


def thread_cpu_s(native_id: int) -> float:
    """CPU seconds (user + system) a thread of this process has used (Linux /proc)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drained(bms: CanDevice) -> None:
    """Wait until ``bms`` has decoded no frame for half a second: a backlog (a busy machine)
    is decoded, not counted as lost."""
    last = -1
    while bms.frames_decoded != last:
        last = bms.frames_decoded
        await asyncio.sleep(0.5)


async def watch(bms: CanDevice, peer: Peer, seconds: float) -> dict[str, float]:
    """Read ``bms`` every 100 ms, as the runner does, for ``seconds``: frames its ``peer`` sent
    and the device decoded between two moments when nothing was on its way (the peer silent);
    the CPU share of the bus's reader thread and of the read() calls while reading, and how
    many reads had a missing signal."""
    reader = next(t for t in threading.enumerate()
                  if t.name == f"cellbench-can-{bms.settings.bus.interface}:"
                               f"{bms.settings.bus.channel}")
    assert reader.native_id is not None
    peer.silence()
    await drained(bms)
    sent0, decoded0 = peer.sent(), bms.frames_decoded
    peer.resume()
    await asyncio.sleep(0.3)  # every message back
    cpu0, wall0 = thread_cpu_s(reader.native_id), time.perf_counter()
    read_cpu = 0.0
    nan_reads = 0
    while time.perf_counter() - wall0 < seconds:
        start = time.thread_time()
        readings = await bms.read()
        read_cpu += time.thread_time() - start
        nan_reads += any(math.isnan(r.value) for r in readings.values())
        await asyncio.sleep(0.1)
    wall = time.perf_counter() - wall0
    cpu = thread_cpu_s(reader.native_id) - cpu0
    peer.silence()
    await drained(bms)
    return {"signals": len(bms.signals) - 2, "sent": peer.sent() - sent0,
            "decoded": bms.frames_decoded - decoded0, "wall": wall, "reader_cpu": cpu / wall,
            "read_cpu": read_cpu / wall, "nan_reads": nan_reads}


async def bms_on_virtual_bus(seconds: float) -> dict[str, float]:
    """A node sending 100 signals at 100 Hz (2,500 frames/s) on the virtual bus, in this
    process."""
    with tempfile.TemporaryDirectory() as folder:
        database_path = hundred_signals(Path(folder) / "hundred.dbc")
        name = channel()
        bms = device(database_path, name)
        node = BmsNode(can.Bus(interface="virtual", channel=name), load(database_path))
        await bms.open(RealClock())
        node.start()
        try:
            return await watch(bms, Peer(lambda: node.frames_sent, node.silence, node.resume),
                               seconds)
        finally:
            node.stop()
            await bms.close()
            node.bus.shutdown()


async def bms_over_slcan(seconds: float) -> dict[str, float]:
    """The same node in another process (`cellbench can emulate`) behind an emulated SLCAN
    adapter on a pty, read through python-can's slcan interface."""
    with tempfile.TemporaryDirectory() as folder:
        database_path = hundred_signals(Path(folder) / "hundred.dbc")
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("cellbench")), "can", "emulate", "--database",
             str(database_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert process.stdin is not None and process.stdout is not None
        stdin, stdout = process.stdin, process.stdout

        def ask(command: str) -> str:
            stdin.write(f"{command}\n")
            stdin.flush()
            answer = stdout.readline()
            if not answer.startswith("ok"):
                raise SystemExit(f"the emulator refused {command!r}: {answer!r}")
            return answer

        def say(command: str) -> Callable[[], None]:
            def tell() -> None:
                ask(command)

            return tell

        peer = Peer(lambda: int(ask("count").split()[1]), say("silence"), say("resume"))
        try:
            path = stdout.readline().split(" on ", 1)[1].split(" ", 1)[0]
            bms = CanDevice(CanSettings.model_validate({
                "bus": {"interface": "slcan", "channel": path, "bitrate": 500000,
                        "options": {"sleep_after_open": 0}},
                "database": str(database_path)}))
            await bms.open(RealClock())
            try:
                return await watch(bms, peer, seconds)
            finally:
                await bms.close()
        finally:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--latency", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    # The decode and latency runs send one message of several: the others' timeouts are
    # expected, not news.
    logging.getLogger("cellbench_can").setLevel(logging.ERROR)

    # Tails depend on what else the machine runs: say how busy it was.
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    frames = mixed_frames(args.frames)
    raw = cantools_rate(frames)
    handler = handler_rate(frames)
    bus = bus_rate(frames)
    decoded = asyncio.run(device_rate(frames))
    print(f"decode rate, {args.frames} frames of {', '.join(MIX)}:")
    print(f"  cantools decode alone     {raw:>10,.0f} frames/s")
    print(f"  CanDevice handler alone   {handler:>10,.0f} frames/s  "
          f"({handler / raw:.2f}x cantools)")
    print(f"  virtual bus alone         {bus:>10,.0f} frames/s")
    print(f"  CanDevice (bus + decode)  {decoded:>10,.0f} frames/s  "
          f"({decoded / raw:.2f}x cantools, {decoded / bus:.2f}x the bus)")

    floor = asyncio.run(bus_latency(args.latency)) * 1e3
    delays = asyncio.run(latency(args.latency)) * 1e3
    print(f"latency, {args.latency} frames 2 ms apart (p50 / p99 / max, ms):")
    for label, values in (("virtual bus send->recv  ", floor), ("CanDevice frame->signal", delays)):
        print(f"  {label} {np.percentile(values, 50):.3f} / {np.percentile(values, 99):.3f} / "
              f"{values.max():.3f}")

    print("BMS of 100 signals in 25 messages at 100 Hz, read every 100 ms:")
    for label, run in (("virtual bus, this process", bms_on_virtual_bus),
                       ("SLCAN pty, BMS in another process", bms_over_slcan)):
        figures = asyncio.run(run(args.seconds))
        print(f"  {label}: {figures['wall']:.1f} s, {figures['sent']:.0f} frames sent, "
              f"{figures['decoded']:.0f} decoded ({figures['sent'] - figures['decoded']:+.0f}); "
              f"reader thread {100 * figures['reader_cpu']:.1f} % of a core, read() "
              f"{100 * figures['read_cpu']:.2f} %; reads with a missing signal: "
              f"{figures['nan_reads']:.0f}")


if __name__ == "__main__":
    main()
