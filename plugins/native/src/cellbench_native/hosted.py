"""A vendor library in a host process of its own: the calls of :class:`NativeLibrary`, made over
the host's standard input and output pipes from the station's event loop, so that a crash or a
hang in vendor code cannot take the station with it.

The host process serves the library on its one thread, in order: it is the device's worker
thread, and this side only writes a request and awaits the reply (an ``asyncio.Lock`` keeps the
requests of concurrent tasks in order). No thread of the station ever waits on vendor code.

When the host process dies in a call (a segfault, an abort) or a call does not answer within
``call_timeout_s`` (then the host is killed), :class:`HostedLibrary` starts a new host, opens the
device again and switches every output of a channel bank off, then raises the failure as a
:class:`NativeError` saying all of that. If the new host cannot be started, the next call after
``restart_delay_s`` tries again (the delay doubles with each failed attempt, up to
:data:`MAX_RESTART_DELAY_S`); calls in between fail at once, so that a library that cannot
start does not cost a new process at every sample period.

A call cancelled while it waits for its reply (the station's own device timeout) kills the host
too, since a late reply would answer the next request; the next call starts a new one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import struct
import sys
import time
from typing import Any

from cellbench_native.library import (
    BAD_REPLY,
    ChannelSpec,
    NativeError,
    SignalSpec,
    StepSpec,
    Variant,
)
from cellbench_native.wire import HEADER, OK, HungUp, Op, check_length, frame

log = logging.getLogger(__name__)

#: The longest wait between two attempts to restart a host that failed to start.
MAX_RESTART_DELAY_S = 60.0


class HostFailure(NativeError):
    """The host process died in a call, or did not answer in time and was killed."""


class HostedLibrary:
    """One device of a vendor library, opened in a host process (``python -m
    cellbench_native.host``), called from one event loop."""

    def __init__(self, path: str, variant: Variant, declarations: str, version: int, *,
                 config: str, max_samples: int, call_timeout_s: float,
                 start_timeout_s: float, restart_delay_s: float = 1.0) -> None:
        self.path = path
        self.variant = variant
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self.restart_delay_s = restart_delay_s
        self._open_request = json.dumps({
            "path": path, "variant": variant, "declarations": declarations,
            "version": version, "config": config, "max_samples": max_samples}).encode()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._channel_count = 0
        self._wanted = False
        #: How many times a failed host process was replaced by a new one.
        self.restarts = 0
        # After a failed restart: when the next may be tried, the wait after that, and why.
        self._retry_at = 0.0
        self._retry_delay_s = restart_delay_s
        self._retry_reason = ""

    @property
    def pid(self) -> int | None:
        """The host process's id while one runs."""
        return self._process.pid if self._process is not None else None

    async def open(self) -> None:
        """Start the host process and open the device in it."""
        async with self._lock:
            await self._start()
            self._wanted = True

    async def close(self, channels_off: int = 0) -> None:
        """Switch outputs ``0 .. channels_off - 1`` off (each one, whatever the others did),
        close the device and end the host process (killed if it does not end in time). The
        first failure is raised after all of that."""
        async with self._lock:
            self._wanted = False
            if self._process is None:
                return
            first: NativeError | None = None
            for channel in range(channels_off):
                try:
                    await self._exchange(Op.OUTPUT_OFF, struct.pack("<i", channel),
                                         f"cb_output_off(device, {channel})")
                except HostFailure as failure:  # a new host switches every output off
                    first = first or await self._recovered(failure)
                    break
                except NativeError as err:
                    first = first or err
            try:
                if self._process is not None:
                    await self._exchange(Op.CLOSE, b"", "cb_close")
            except NativeError as err:
                first = first or err
            finally:
                await self._stop()
            if first is not None:
                raise first

    async def signals(self) -> list[SignalSpec]:
        """Every signal, described by the library."""
        described = _json(await self._request(Op.SIGNALS, b"", "cb_describe_signal"))
        return [SignalSpec(str(name), str(unit), bool(writable))
                for name, unit, writable in described]

    async def device_info(self) -> dict[str, str]:
        """What the device says about itself, by name."""
        described = _json(await self._request(Op.INFO, b"", "cb_describe_device"))
        return {str(name): str(value) for name, value in described.items()}

    async def channels(self) -> list[ChannelSpec]:
        """Every channel with its ranges, described by the library."""
        described = _json(await self._request(Op.CHANNELS, b"", "cb_describe_channel"))
        return [ChannelSpec(str(name), *map(float, ranges)) for name, *ranges in described]

    async def sample_layout(self) -> tuple[int, dict[str, int]]:
        """``cb_sample``'s size and field offsets, as the host's cffi lays it out."""
        size, offsets = _json(await self._request(Op.LAYOUT, b"", "layout"))
        return int(size), {str(k): int(v) for k, v in offsets.items()}

    async def read(self) -> bytes:
        """``cb_read``: every signal's value as native doubles."""
        return await self._request(Op.READ, b"", "cb_read")

    async def write(self, index: int, value: float) -> None:
        """``cb_write(index, value)``."""
        await self._request(Op.WRITE, struct.pack("<id", index, value), "cb_write")

    async def apply(self, channel: int, step: StepSpec) -> None:
        """``cb_apply(channel, step)``."""
        await self._request(Op.APPLY, struct.pack("<i", channel) + step.pack(), "cb_apply")

    async def output_off(self, channel: int) -> None:
        """``cb_output_off(channel)``."""
        await self._request(Op.OUTPUT_OFF, struct.pack("<i", channel), "cb_output_off")

    async def measure(self) -> bytes:
        """``cb_measure``: the samples as native ``cb_sample`` structs."""
        return await self._request(Op.MEASURE, b"", "cb_measure")

    # --- the host process ----------------------------------------------------------------

    async def _request(self, op: Op, payload: bytes, what: str) -> bytes:
        async with self._lock:
            if not self._wanted:
                raise NativeError("CB_DISCONNECTED", "the device is not open")
            if self._process is None:  # an earlier restart failed, or a call was cancelled
                wait_s = self._retry_at - time.monotonic()
                if wait_s > 0:
                    raise NativeError("CB_DISCONNECTED", f"{what}: the host process is not "
                                      f"running (restarting it failed: {self._retry_reason}); "
                                      f"the next attempt is in {wait_s:.1f} s")
                try:
                    await self._start_safe()
                except NativeError as err:
                    raise NativeError("CB_DISCONNECTED", f"{what}: the host process is not "
                                      f"running and could not be restarted: "
                                      f"{err.message}") from None
            try:
                return await self._exchange(op, payload, what)
            except HostFailure as failure:
                raise await self._recovered(failure) from None

    async def _recovered(self, failure: HostFailure) -> NativeError:
        """Replace the failed host and switch the outputs off; the error to raise for it."""
        try:
            await self._start_safe()
        except NativeError as err:
            log.error("%s: %s; restarting the host process failed: %s", self.path,
                      failure.message, err.message)
            return NativeError(failure.status, f"{failure.message}; restarting the host "
                               f"process failed: {err.message}")
        done = " and switched every output off" if self.variant == "bank" else ""
        log.warning("%s: %s; restarted the host process (pid %s)%s", self.path,
                    failure.message, self.pid, done)
        return NativeError(failure.status, f"{failure.message}; the host process was "
                           f"restarted (pid {self.pid}){done}")

    async def _start_safe(self) -> None:
        """Start a host in place of one that failed and, for a channel bank, switch every
        output off in it. A failure puts the next attempt off (see the module's docstring)."""
        try:
            await self._start()
            try:
                for channel in range(self._channel_count):
                    await self._exchange(Op.OUTPUT_OFF, struct.pack("<i", channel),
                                         "cb_output_off")
            except NativeError as err:
                await self._stop()
                raise NativeError(err.status, f"switching the outputs off after the restart: "
                                  f"{err.message}") from None
        except NativeError as err:
            self._retry_at = time.monotonic() + self._retry_delay_s
            self._retry_delay_s = min(MAX_RESTART_DELAY_S, 2 * self._retry_delay_s)
            self._retry_reason = err.message
            raise
        self._retry_at, self._retry_delay_s = 0.0, self.restart_delay_s
        self.restarts += 1

    async def _start(self) -> None:
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cellbench_native.host",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        except OSError as err:
            raise NativeError("CB_DISCONNECTED",
                              f"cannot start the host process: {err}") from None
        self._writer, self._reader = self._process.stdin, self._process.stdout
        try:
            await self._exchange(Op.OPEN, self._open_request, "cb_open", self.start_timeout_s)
            if self.variant == "bank":
                self._channel_count = len(_json(await self._exchange(
                    Op.CHANNELS, b"", "cb_describe_channel")))
        except NativeError:
            await self._stop()  # the host closes what it opened when its input ends
            raise
        except BaseException:
            self._kill_now()
            raise

    async def _exchange(self, op: Op, payload: bytes, what: str,
                        timeout: float | None = None) -> bytes:
        """One request and its reply; :class:`HostFailure` when the host dies or is late."""
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise NativeError("CB_DISCONNECTED", f"{what}: the host process is not running")
        limit = self.call_timeout_s if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                writer.write(frame(op, payload))
                await writer.drain()
                code, reply = await _read_frame(reader)
        except TimeoutError:
            await self._stop(kill=True)
            raise HostFailure("CB_TIMEOUT", f"{what} did not return within {limit:g} s; "
                              "the host process was killed") from None
        except (HungUp, ConnectionError):
            ending = await self._stop()
            raise HostFailure("CB_ERROR", f"the library crashed in {what}: the host process "
                              f"{ending}") from None
        except asyncio.CancelledError:
            self._kill_now()  # its late reply would answer the next request
            raise
        if code != OK:
            raise NativeError.decode(reply)
        return reply

    def _kill_now(self) -> None:
        """Kill the host at once, without waiting (asyncio reaps it)."""
        process, writer = self._process, self._writer
        self._process = self._reader = self._writer = None
        if writer is not None:
            writer.close()
        if process is not None and process.returncode is None:
            process.kill()

    async def _stop(self, kill: bool = False) -> str:
        """End the host process (killing it if asked or if it lingers); how it ended."""
        process, writer = self._process, self._writer
        self._process = self._reader = self._writer = None
        if writer is not None:
            writer.close()  # the host sees the end of its input and exits, unless stuck
        if process is None:
            return "was not running"
        if kill and process.returncode is None:
            process.kill()
        try:
            async with asyncio.timeout(self.call_timeout_s):
                code = await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            return "stopped answering and was killed"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        # Windows reports a crash as an NTSTATUS exit code, 0xC0000005 for an access violation.
        return f"exited with status {code}" if code < 0x10000 else \
            f"exited with status {code:#010x}"


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Receive one frame (the station's side, on its event loop): its code and payload.
    :class:`HungUp` when the other end closed, also in the middle of a frame."""
    try:
        length, code = HEADER.unpack(await reader.readexactly(HEADER.size))
        check_length(length)
        return code, await reader.readexactly(length) if length else b""
    except (asyncio.IncompleteReadError, ConnectionError) as err:
        raise HungUp(f"the connection was closed ({err})") from None


def _json(reply: bytes) -> Any:
    try:
        return json.loads(reply)
    except ValueError:
        raise NativeError(BAD_REPLY, f"the host process sent garbled JSON: "
                          f"{reply[:200]!r}") from None
