"""OSI device reads: reads per second and p50/p99 latency of one ``read()`` of every signal, for
a smart battery and for a data logger, each beside a baseline measured in the same run.

- Smart battery: ``SmartBattery.read()`` (14 SMBus Read Words, PEC checked, on the device's
  worker thread, decoded to SI) on the register model, through the in-process bus and through
  the emulated CP2112 bridge; the baseline is the same 14 transactions made directly on the
  model (no PEC check, no thread, no decoding), so the difference is the driver's own cost.
  On hardware the bus dominates: a Read Word with PEC takes ~0.5 ms at 100 kHz.
- Data logger: ``ScpiLogger.read()`` (READ? of a 5-channel scan, parsed and checked) against
  the emulator in a subprocess on loopback; the baseline sends the same READ? on a bare
  blocking socket to the same emulator and reads the line.

    .venv/bin/python bench/bench_osi_sbs_logger.py [--reads 2000]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from collections.abc import Callable

import numpy as np

from cellbench_scpi_logger.emulator import serve
from cellbench_scpi_logger.logger import ScpiLogger
from cellbench_scpi_logger.settings import ScpiLoggerSettings
from cellbench_sdk import RealClock
from cellbench_sdk.testing import connect_when_listening, free_port
from cellbench_smartbattery import sbs
from cellbench_smartbattery.battery import SmartBattery
from cellbench_smartbattery.bus import SmbusBus
from cellbench_smartbattery.cp2112 import Cp2112Bus
from cellbench_smartbattery.model import EmulatedCp2112, ModelBus, SbsBattery
from cellbench_smartbattery.settings import SmartBatterySettings

CHANNELS = {"t_cell1": {"ch": 101, "kind": "tc-k"}, "t_cell2": {"ch": 102, "kind": "tc-k"},
            "t_ambient": {"ch": 110, "kind": "tc-t"}, "v_cell": {"ch": 201, "kind": "dcv"},
            "v_shunt": {"ch": 202, "kind": "dcv", "range": 0.1}}
#: The registers one SmartBattery.read() reads, in its order.
REGISTERS = (sbs.RELATIVE_STATE_OF_CHARGE, sbs.BATTERY_STATUS, sbs.VOLTAGE, sbs.CURRENT,
             sbs.AVERAGE_CURRENT, sbs.TEMPERATURE, sbs.REMAINING_CAPACITY,
             sbs.FULL_CHARGE_CAPACITY, sbs.CYCLE_COUNT, *sbs.TI_CELL_VOLTAGE_COMMANDS,
             sbs.REMAINING_CAPACITY_ALARM)


def timed(reads: int, once: Callable[[], object]) -> np.ndarray:
    """Seconds per call of ``once``."""
    times = np.empty(reads)
    for n in range(reads):
        start = time.perf_counter()
        once()
        times[n] = time.perf_counter() - start
    return times


def bare_model(reads: int) -> np.ndarray:
    """The 14 transactions of a read, straight on the model."""
    model = SbsBattery()

    def once() -> None:
        for command in REGISTERS:
            model.transaction(model.address, bytes([command]), 3)

    return timed(reads, once)


async def battery_reads(bus: SmbusBus, reads: int) -> np.ndarray:
    battery = SmartBattery(SmartBatterySettings(bus="emulated"), bus=bus)
    await battery.open(RealClock())
    times = np.empty(reads)
    for n in range(reads):
        start = time.perf_counter()
        await battery.read()
        times[n] = time.perf_counter() - start
    await battery.close()
    return times


def _emulate(port: int) -> None:
    asyncio.run(serve("127.0.0.1", port))



def bare_socket(port: int, reads: int) -> np.ndarray:
    """READ? of the configured scan on a plain socket (configured by the driver just before)."""
    sock = connect_when_listening(port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream = sock.makefile("rb")
    for command in ("CONF:TEMP TC,K,(@101,102)", "CONF:TEMP TC,T,(@110)",
                    "CONF:VOLT:DC AUTO,(@201)", "CONF:VOLT:DC 0.1,(@202)",
                    "FORM:READ:CHAN ON", "FORM:READ:UNIT ON",
                    "ROUT:SCAN (@101,102,110,201,202)"):
        sock.sendall(command.encode() + b"\n")

    def once() -> None:
        sock.sendall(b"READ?\n")
        stream.readline()

    times = timed(reads, once)
    sock.close()
    return times


async def logger_reads(port: int, reads: int) -> np.ndarray:
    logger = ScpiLogger(ScpiLoggerSettings.model_validate(
        {"address": f"127.0.0.1:{port}", "channels": CHANNELS}))
    await logger.open(RealClock())
    times = np.empty(reads)
    for n in range(reads):
        start = time.perf_counter()
        await logger.read()
        times[n] = time.perf_counter() - start
    await logger.close()
    return times


def report(title: str, rounds: dict[str, list[np.ndarray]]) -> None:
    print(f"\n{title}")
    print(f"{'read':<44}{'p50 µs':>9}{'p99 µs':>9}{'reads/s':>10}{'× base':>8}")
    base = 0.0
    for name, parts in rounds.items():
        times = np.concatenate(parts)
        p50, p99 = np.percentile(times, [50, 99]) * 1e6
        rate = len(times) / times.sum()
        base = base or rate
        print(f"{name:<44}{p50:>9.0f}{p99:>9.0f}{rate:>10.0f}{rate / base:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=2000)
    reads = parser.parse_args().reads
    # Alternate the runs so that none gets the quieter part of the machine's time.
    battery: dict[str, list[np.ndarray]] = {
        "baseline: 14 transactions on the model": [],
        "SmartBattery.read(), in-process bus": [], "SmartBattery.read(), emulated CP2112": []}
    for _ in range(4):
        battery["baseline: 14 transactions on the model"].append(bare_model(reads // 4))
        battery["SmartBattery.read(), in-process bus"].append(
            asyncio.run(battery_reads(ModelBus(SbsBattery()), reads // 4)))
        bridge = EmulatedCp2112(SbsBattery())
        battery["SmartBattery.read(), emulated CP2112"].append(
            asyncio.run(battery_reads(Cp2112Bus(lambda b=bridge: b), reads // 4)))
    report("smart battery (register model; 24 signals per read)", battery)

    port = free_port()
    emulator = multiprocessing.Process(target=_emulate, args=(port,), daemon=True)
    emulator.start()
    logger: dict[str, list[np.ndarray]] = {"baseline: READ? on a bare socket": [],
                                           "ScpiLogger.read()": []}
    try:
        connect_when_listening(port).close()
        for _ in range(4):
            logger["ScpiLogger.read()"].append(asyncio.run(logger_reads(port, reads // 4)))
            logger["baseline: READ? on a bare socket"].append(bare_socket(port, reads // 4))
    finally:
        emulator.terminate()
        emulator.join()
    report("data logger (emulator in a subprocess on loopback; 5-channel scan)", logger)


if __name__ == "__main__":
    main()
