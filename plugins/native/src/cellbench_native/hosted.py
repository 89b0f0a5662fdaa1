"""A vendor library in a host process of its own: the calls of :class:`NativeLibrary`, made over
a socketpair, so that a crash or a hang in vendor code cannot take the station with it.

When the host process dies in a call (a segfault, an abort) or a call does not answer within
``call_timeout_s`` (then the host is killed), :class:`HostedLibrary` starts a new host, opens the
device again and switches every output of a channel bank off, then raises the failure as a
:class:`NativeError` saying all of that. If the new host cannot be started, every later call
tries once more before it fails.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import struct
import subprocess
import sys
from typing import Any

from cellbench_native.library import (
    BAD_REPLY,
    ChannelSpec,
    NativeError,
    SignalSpec,
    StepSpec,
    Variant,
)
from cellbench_native.wire import OK, HungUp, Op, receive, send

log = logging.getLogger(__name__)


class HostFailure(NativeError):
    """The host process died in a call, or did not answer in time and was killed."""


class HostedLibrary:
    """One device of a vendor library, opened in a host process (``python -m
    cellbench_native.host``). Call it from one thread, like :class:`NativeLibrary`."""

    def __init__(self, path: str, variant: Variant, declarations: str, version: int, *,
                 call_timeout_s: float, start_timeout_s: float) -> None:
        self.path = path
        self.variant = variant
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self._request_open: dict[str, Any] = {
            "path": path, "variant": variant, "declarations": declarations,
            "version": version}
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._channel_count = 0
        self._wanted = False
        #: How many times a failed host process was replaced by a new one.
        self.restarts = 0

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._wanted

    @property
    def pid(self) -> int | None:
        """The host process's id while one runs."""
        return self._process.pid if self._process is not None else None

    def open(self, config: str, max_samples: int = 1024) -> None:
        """Start the host process and open the device ``config`` describes in it."""
        self._request_open.update(config=config, max_samples=max_samples)
        self._start()
        self._wanted = True

    def close(self) -> None:
        """Close the device and end the host process (killed if it does not end in time)."""
        self._wanted = False
        if self._process is None:
            return
        try:
            self._exchange(Op.CLOSE, b"", "cb_close")
        finally:
            self._stop()

    def signals(self) -> list[SignalSpec]:
        """Every signal, described by the library."""
        described = self._json(self._request(Op.SIGNALS, b"", "cb_describe_signal"))
        return [SignalSpec(str(name), str(unit), bool(writable))
                for name, unit, writable in described]

    def channels(self) -> list[ChannelSpec]:
        """Every channel with its ranges, described by the library."""
        described = self._json(self._request(Op.CHANNELS, b"", "cb_describe_channel"))
        return [ChannelSpec(str(name), *map(float, ranges)) for name, *ranges in described]

    def sample_layout(self) -> tuple[int, dict[str, int]]:
        """``cb_sample``'s size and field offsets, as the host's cffi lays it out."""
        size, offsets = self._json(self._request(Op.LAYOUT, b"", "layout"))
        return int(size), {str(k): int(v) for k, v in offsets.items()}

    def read(self) -> bytes:
        """``cb_read``: every signal's value as native doubles."""
        return self._request(Op.READ, b"", "cb_read")

    def write(self, index: int, value: float) -> None:
        """``cb_write(index, value)``."""
        self._request(Op.WRITE, struct.pack("<id", index, value), "cb_write")

    def apply(self, channel: int, step: StepSpec) -> None:
        """``cb_apply(channel, step)``."""
        self._request(Op.APPLY, struct.pack("<i", channel) + step.pack(), "cb_apply")

    def output_off(self, channel: int) -> None:
        """``cb_output_off(channel)``."""
        self._request(Op.OUTPUT_OFF, struct.pack("<i", channel), "cb_output_off")

    def measure(self) -> bytes:
        """``cb_measure``: the samples as native ``cb_sample`` structs."""
        return self._request(Op.MEASURE, b"", "cb_measure")

    # --- the host process ----------------------------------------------------------------

    def _request(self, op: Op, payload: bytes, what: str) -> bytes:
        if not self._wanted:
            raise NativeError("CB_DISCONNECTED", "the device is not open")
        if self._process is None:  # an earlier restart failed: try again
            try:
                self._start_safe()
            except NativeError as err:
                raise NativeError("CB_DISCONNECTED", f"{what}: the host process is not "
                                  f"running and could not be restarted: {err.message}") from None
        try:
            return self._exchange(op, payload, what)
        except HostFailure as failure:
            raise self._recovered(failure) from None

    def _recovered(self, failure: HostFailure) -> NativeError:
        """Replace the failed host and switch the outputs off; the error to raise for it."""
        try:
            self._start_safe()
        except NativeError as err:
            log.error("%s: %s; restarting the host process failed: %s", self.path,
                      failure.message, err.message)
            return NativeError(failure.status, f"{failure.message}; restarting the host "
                               f"process failed: {err.message}")
        self.restarts += 1
        done = (" and switched every output off" if self.variant == "bank" else "")
        log.warning("%s: %s; restarted the host process (pid %s)%s", self.path,
                    failure.message, self.pid, done)
        return NativeError(failure.status, f"{failure.message}; the host process was "
                           f"restarted (pid {self.pid}){done}")

    def _start_safe(self) -> None:
        """Start a host and, for a channel bank, switch every output off in it."""
        self._start()
        try:
            for channel in range(self._channel_count):
                self._exchange(Op.OUTPUT_OFF, struct.pack("<i", channel), "cb_output_off")
        except NativeError as err:
            self._stop()
            raise NativeError(err.status, f"switching the outputs off after the restart: "
                              f"{err.message}") from None

    def _start(self) -> None:
        parent, child = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "cellbench_native.host", str(child.fileno())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        except OSError as err:
            parent.close()
            raise NativeError("CB_DISCONNECTED",
                              f"cannot start the host process: {err}") from None
        finally:
            child.close()
        self._process, self._sock = process, parent
        try:
            self._exchange(Op.OPEN, json.dumps(self._request_open).encode(), "cb_open",
                           self.start_timeout_s)
            if self.variant == "bank":
                self._channel_count = len(self._json(self._exchange(
                    Op.CHANNELS, b"", "cb_describe_channel")))
        except NativeError:
            self._stop()
            raise

    def _exchange(self, op: Op, payload: bytes, what: str,
                  timeout: float | None = None) -> bytes:
        """One request and its reply; :class:`HostFailure` when the host dies or is late."""
        sock = self._sock
        if sock is None:
            raise NativeError("CB_DISCONNECTED", f"{what}: the host process is not running")
        sock.settimeout(self.call_timeout_s if timeout is None else timeout)
        try:
            send(sock, op, payload)
            code, reply = receive(sock)
        except TimeoutError:
            limit = self.call_timeout_s if timeout is None else timeout
            self._stop(kill=True)
            raise HostFailure("CB_TIMEOUT", f"{what} did not return within {limit:g} s; "
                              "the host process was killed") from None
        except (HungUp, OSError):
            ending = self._stop()
            raise HostFailure("CB_ERROR", f"the library crashed in {what}: the host process "
                              f"{ending}") from None
        if code != OK:
            raise NativeError.decode(reply)
        return reply

    def _stop(self, kill: bool = False) -> str:
        """End the host process (killing it if asked or if it lingers); how it ended."""
        process, sock = self._process, self._sock
        self._process = self._sock = None
        if sock is not None:
            sock.close()  # the host sees the end of its input and exits, unless stuck
        if process is None:
            return "was not running"
        if kill:
            process.kill()
        try:
            code = process.wait(self.call_timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return "stopped answering and was killed"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"

    def _json(self, reply: bytes) -> Any:
        try:
            return json.loads(reply)
        except ValueError:
            raise NativeError(BAD_REPLY, f"the host process sent garbled JSON: "
                              f"{reply[:200]!r}") from None
