"""A crash, abort or hang inside vendor code becomes a device error: the host process is
replaced, a channel bank's outputs are switched off in the new one, and the station goes on."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from cellbench_sdk import (
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    Reading,
    RealClock,
    Step,
    StepMode,
)

from .conftest import Faults, Libraries, Make


def _gone(pid: int | None) -> bool:
    """Whether process ``pid`` has ended and been reaped."""
    assert pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_segfault_in_read_restarts_the_host(
        libraries: Libraries, faults: Faults, make: Make) -> None:
    async def run() -> None:
        device = make.osi(libraries.faulty, config=faults.config)
        await device.open(RealClock())
        try:
            host = make.hosted(device)
            first = host.pid
            faults.set("segv", "cb_read")
            with pytest.raises(DeviceError, match=r"crashed in cb_read: the host process was "
                               r"killed by SIGSEGV; the host process was restarted"):
                await device.read()
            assert host.restarts == 1 and host.pid != first and _gone(first)
            faults.clear()
            assert (await device.read())["v"].value == 3.7
        finally:
            await device.close()

    asyncio.run(run())


def test_abort_in_measure_switches_every_output_off_in_the_new_host(
        libraries: Libraries, faults: Faults, make: Make) -> None:
    async def run() -> None:
        bank = make.bank(libraries.faulty, config=faults.config)
        await bank.open(RealClock())
        try:
            await bank.apply(0, Step(StepMode.CC, current_a=1.5))
            assert (await bank.measure()).current_a[0] == 1.5
            first = make.hosted(bank).pid
            faults.set("abort", "cb_measure")
            with pytest.raises(DeviceError, match=r"killed by SIGABRT; .* restarted \(pid "
                               r"\d+\) and switched every output off"):
                await bank.measure()
            second = make.hosted(bank).pid
            assert second != first
            assert [(f, a) for pid, f, a in faults.calls() if pid == second] == [
                ("cb_open", 0), ("cb_channel_count", 0), ("cb_describe_channel", 0),
                ("cb_describe_channel", 1), ("cb_output_off", 0), ("cb_output_off", 1)]
            faults.clear()
            assert list((await bank.measure()).current_a) == [0.0, 0.0]
        finally:
            await bank.close()

    asyncio.run(run())


def test_a_hang_times_out_and_the_host_is_killed(
        libraries: Libraries, faults: Faults, make: Make) -> None:
    async def run() -> None:
        bank = make.bank(libraries.faulty, config=faults.config, call_timeout_s=0.3)
        await bank.open(RealClock())
        try:
            first = make.hosted(bank).pid
            faults.set("hang", "cb_apply")
            with pytest.raises(DeviceTimeout, match=r"cb_apply did not return within 0.3 s; "
                               r"the host process was killed; .* restarted"):
                await bank.apply(1, Step(StepMode.CC, current_a=1.0))
            assert _gone(first)
            second = make.hosted(bank).pid
            assert [f for pid, f, _ in faults.calls() if pid == second][-2:] == [
                "cb_output_off", "cb_output_off"]
        finally:
            faults.clear()
            await bank.close()

    asyncio.run(run())


def test_a_failed_restart_is_tried_again_after_a_delay(
        libraries: Libraries, faults: Faults, make: Make) -> None:
    async def run() -> None:
        bank = make.bank(libraries.faulty, config=faults.config, restart_delay_s=0.3)
        await bank.open(RealClock())
        try:
            faults.set("segv", "cb_output_off")  # the new host crashes switching off too
            with pytest.raises(DeviceError, match=r"crashed in cb_output_off: .*SIGSEGV; "
                               r"restarting the host process failed: switching the outputs "
                               r"off after the restart: the library crashed in cb_output_off"):
                await bank.output_off(0)
            assert make.hosted(bank).pid is None
            faults.clear()
            hosts = len({pid for pid, _, _ in faults.calls()})
            with pytest.raises(DeviceConnectionError, match=r"cb_measure: the host process is "
                               r"not running \(restarting it failed: .*\); the next attempt is "
                               r"in 0\.\d s"):
                await bank.measure()  # at once: no new process yet
            assert len({pid for pid, _, _ in faults.calls()}) == hosts
            await asyncio.sleep(0.35)
            batch = await bank.measure()  # restarts the host, outputs off, then measures
            assert list(batch.current_a) == [0.0, 0.0]
            assert make.hosted(bank).restarts == 1
        finally:
            await bank.close()

    asyncio.run(run())


def test_a_crash_in_close_still_ends_the_host(
        libraries: Libraries, faults: Faults, make: Make) -> None:
    async def run() -> None:
        device = make.osi(libraries.faulty, config=faults.config)
        await device.open(RealClock())
        host = make.hosted(device)
        pid = host.pid
        assert pid is not None
        faults.set("segv", "cb_close")
        await device.close()  # logged, not raised: closing is the way out
        assert host.pid is None and _gone(pid)
        await device.close()
        with pytest.raises(DeviceConnectionError, match="not open"):
            await device.read()

    asyncio.run(run())


@pytest.mark.parametrize("isolation", ["process", "in-process"])
def test_closing_switches_every_output_off_whatever_fails(
        libraries: Libraries, faults: Faults, make: Make, isolation: str,
        caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        bank = make.bank(libraries.faulty, config=faults.config, isolation=isolation)
        await bank.open(RealClock())
        faults.set("fail", "cb_output_off")
        await bank.close()

    asyncio.run(run())
    assert [(f, a) for _, f, a in faults.calls()][-3:] == [
        ("cb_output_off", 0), ("cb_output_off", 1), ("cb_close", 0)]
    assert "cb_output_off(device, 0) returned -1 (CB_ERROR)" in caplog.text


def test_a_hang_in_open_fails_the_open_and_leaves_nothing_running(
        libraries: Libraries, faults: Faults, make: Make) -> None:
    async def run() -> None:
        device = make.osi(libraries.faulty, config=faults.config, start_timeout_s=0.5)
        faults.set("hang", "cb_open")
        with pytest.raises(DeviceTimeout, match=r"cb_open did not return within 0.5 s"):
            await device.open(RealClock())
        [(pid, _, _)] = faults.calls()
        assert _gone(pid)
        await device.close()

    asyncio.run(run())


@pytest.mark.parametrize("isolation", ["process", "in-process"])
def test_a_failing_call_is_a_device_error_and_nothing_restarts(
        libraries: Libraries, faults: Faults, make: Make, isolation: str) -> None:
    async def run() -> None:
        device = make.osi(libraries.faulty, config=faults.config, isolation=isolation)
        await device.open(RealClock())
        try:
            faults.set("fail", "cb_read")
            with pytest.raises(DeviceError, match=r"cb_read returned -1 \(CB_ERROR\): injected "
                               r"failure in cb_read") as raised:
                await device.read()
            assert type(raised.value) is DeviceError
            assert len({pid for pid, _, _ in faults.calls()}) == 1
            faults.clear()
            assert not math.isnan((await device.read())["v"].value)
        finally:
            await device.close()

    asyncio.run(run())


def test_in_process_a_hang_is_a_timeout(libraries: Libraries, faults: Faults, make: Make) -> None:
    """In-process the stuck call keeps its thread (the risk docs/native.md states); the device
    still reports the timeout, and later calls queue behind it."""
    async def run() -> None:
        device = make.osi(libraries.faulty, config=faults.config, isolation="in-process",
                          call_timeout_s=0.3)
        await device.open(RealClock())
        try:
            faults.set("hang", "cb_read")
            with pytest.raises(DeviceTimeout, match=r"cb_read did not answer within 0.3 s"):
                await device.read()
            with pytest.raises(DeviceTimeout):
                await device.write("switch", 1.0)
        finally:
            faults.clear()  # lets the stuck thread return
            await device.close()

    asyncio.run(run())


def test_a_call_the_station_gives_up_on_kills_the_host(
        libraries: Libraries, faults: Faults, make: Make) -> None:
    """The station's own device_timeout cancels a call before call_timeout_s: the reply that
    would come late must not answer the next call, so the host goes, and the next call starts
    another (switching the outputs off first)."""
    async def run() -> None:
        bank = make.bank(libraries.faulty, config=faults.config, call_timeout_s=30.0)
        await bank.open(RealClock())
        try:
            host = make.hosted(bank)
            first = host.pid
            faults.set("hang", "cb_measure")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(bank.measure(), 0.3)
            assert host.pid is None
            faults.clear()
            batch = await bank.measure()
            assert list(batch.channel) == [0, 1] and host.restarts == 1
            second = host.pid
            assert second != first and _gone(first)
            assert [f for pid, f, _ in faults.calls() if pid == second][-3:] == [
                "cb_output_off", "cb_output_off", "cb_measure"]
        finally:
            await bank.close()

    asyncio.run(run())


STATION = """
import asyncio, sys
from pathlib import Path
from cellbench_native.device import NativeDevice
from cellbench_native.settings import NativeSettings
from cellbench_sdk import RealClock

async def main():
    device = NativeDevice(NativeSettings(library=Path(sys.argv[1]), config=sys.argv[2],
                                         call_timeout_s=60))
    await device.open(RealClock())
    await device.read()

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_host_stuck_in_vendor_code_dies_with_the_station(
        libraries: Libraries, faults: Faults, wait_until: Any) -> None:
    faults.set("hang", "cb_read")
    station = subprocess.Popen([sys.executable, "-c", STATION, str(libraries.faulty),
                                faults.config])
    try:
        calls = wait_until(lambda: [c for c in faults.calls() if c[1] == "cb_read"],
                           "the host to hang in cb_read", alive=station)
        host = calls[0][0]
        station.kill()  # as SIGKILL or a crash would end a station
        station.wait()
        wait_until(lambda: _gone(host) or _zombie(host), "the host process to end",
                   timeout=10)
    finally:
        faults.clear()
        if station.poll() is None:
            station.kill()
            station.wait()


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has ended but is not reaped yet (its parent, init, reaps it soon)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_what_vendor_code_prints_does_not_garble_the_protocol(
        libraries: Libraries, faults: Faults, make: Make,
        capfd: pytest.CaptureFixture[str]) -> None:
    async def run() -> None:
        device = make.osi(libraries.faulty, config=faults.config)
        await device.open(RealClock())
        try:
            faults.set("print", "cb_read")
            assert (await device.read())["v"].value == 3.7
            assert (await device.read())["v"].value == 3.7
        finally:
            await device.close()

    asyncio.run(run())
    assert capfd.readouterr().err.count("cb_read: vendor chatter on standard output") == 2


def test_calls_from_many_tasks_are_serialised_on_the_handle(
        libraries: Libraries, faults: Faults, make: Make) -> None:
    async def run() -> None:
        device = make.osi(libraries.faulty, config=faults.config)
        await device.open(RealClock())
        try:
            calls: list[Awaitable[object]] = []
            for k in range(50):
                calls += [device.write("switch", k / 100), device.read()]
            results = await asyncio.gather(*calls)
            # One thread, in the order asked: each read sees the write just before it.
            seen = [cast(Mapping[str, Reading], r)["switch"].value for r in results[1::2]]
            assert seen == [k / 100 for k in range(50)]
        finally:
            await device.close()

    asyncio.run(run())
