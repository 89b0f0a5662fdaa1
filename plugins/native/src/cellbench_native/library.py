"""A vendor library loaded with cffi in ABI mode and called as ``cellbench_driver.h`` declares.

:class:`NativeLibrary` runs in whichever process loads the library: the host process (isolation
``process``, the default) or the station itself (``in-process``). Everything the library hands
back is checked here, once: counts against capacities, names for NUL and UTF-8, channel ranges
for finite numbers. It imports only cffi and the standard library so that the host process
starts fast; its failures are :class:`NativeError` with a status name, which the device classes
turn into cellbench's typed errors.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Literal

import cffi

#: Which half of the header a library implements: an OSI device or a channel bank.
Variant = Literal["osi", "bank"]

#: The functions every library exports, and those of each variant, as the header declares them.
COMMON_FUNCTIONS = ("cb_api_version", "cb_open", "cb_close", "cb_last_error")
VARIANT_FUNCTIONS: dict[Variant, tuple[str, ...]] = {
    "osi": ("cb_signal_count", "cb_describe_signal", "cb_read", "cb_write",
            "cb_describe_device"),
    "bank": ("cb_channel_count", "cb_describe_channel", "cb_apply", "cb_output_off",
             "cb_measure"),
}
#: The header's status codes by name; a negative number not among them is reported as CB_ERROR.
STATUS_NAMES = ("CB_ERROR", "CB_NOT_SUPPORTED", "CB_OUT_OF_RANGE", "CB_TIMEOUT",
                "CB_DISCONNECTED")
#: Failures found on this side of the library: it cannot be loaded or does not fit the header
#: (LOAD), or it returned something the header does not allow (BAD_REPLY).
LOAD, BAD_REPLY = "LOAD", "BAD_REPLY"

#: More signals or channels than this is taken for garbage, not a device.
MAX_ITEMS = 100_000
#: Longest text taken from cb_last_error.
MAX_ERROR_BYTES = 2000
#: Room handed to cb_describe_device.
INFO_BYTES = 4096


class NativeError(Exception):
    """A call into the library failed: ``status`` is a header status name (``CB_TIMEOUT``) or
    :data:`LOAD` / :data:`BAD_REPLY`; ``message`` says which call and why."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{message} [{status}]")
        self.status = status
        self.message = message

    def encode(self) -> bytes:
        """The error as bytes for the host protocol."""
        return json.dumps({"status": self.status, "message": self.message}).encode()

    @classmethod
    def decode(cls, data: bytes) -> NativeError:
        """The error :meth:`encode` made; a garbled one becomes a :data:`BAD_REPLY`."""
        try:
            fields = json.loads(data)
            return cls(str(fields["status"]), str(fields["message"]))
        except (ValueError, KeyError, TypeError):
            return cls(BAD_REPLY, f"the host process sent a garbled error: {data[:200]!r}")


@dataclass(frozen=True, slots=True)
class SignalSpec:
    """One signal as the library describes it."""

    name: str
    unit: str
    writable: bool


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel as the library describes it."""

    name: str
    voltage_min_v: float
    voltage_max_v: float
    current_max_a: float
    power_max_w: float


_STEP = struct.Struct("<8s8sddddBI")


@dataclass(frozen=True, slots=True)
class StepSpec:
    """A setpoint as ``cb_step`` carries it: mode and profile quantity by the name after the
    header's prefix (``CC``, ``VOLTAGE``), NaN for values the mode does not use."""

    mode: str
    current_a: float = math.nan
    voltage_v: float = math.nan
    power_w: float = math.nan
    resistance_ohm: float = math.nan
    profile_quantity: str = "CURRENT"
    profile_hold: bool = False
    profile_time_s: tuple[float, ...] = ()
    profile_value: tuple[float, ...] = ()

    def pack(self) -> bytes:
        """The step as bytes for the host protocol."""
        points = len(self.profile_time_s)
        return _STEP.pack(self.mode.encode(), self.profile_quantity.encode(), self.current_a,
                          self.voltage_v, self.power_w, self.resistance_ohm,
                          self.profile_hold, points) + struct.pack(
            f"<{2 * points}d", *self.profile_time_s, *self.profile_value)

    @classmethod
    def unpack(cls, data: bytes) -> StepSpec:
        """The step :meth:`pack` made."""
        mode, quantity, current, voltage, power, resistance, hold, points = \
            _STEP.unpack_from(data)
        table = struct.unpack_from(f"<{2 * points}d", data, _STEP.size)
        return cls(mode.rstrip(b"\0").decode(), current, voltage, power, resistance,
                   quantity.rstrip(b"\0").decode(), bool(hold), table[:points], table[points:])


class NativeLibrary:
    """One vendor library, loaded and checked against the header's ``declarations`` (the text
    cellbench-sdk ships) and its ``version``; :meth:`open` then opens one device of it.

    Not thread-safe, like most vendor libraries: call it from one thread (the device's worker
    thread, or the host process's only thread).
    """

    def __init__(self, path: str, variant: Variant, declarations: str, version: int) -> None:
        self.path = path
        self.variant = variant
        self._ffi = ffi = cffi.FFI()
        ffi.cdef(declarations)
        # Any: the library's functions come from the header at run time, not from a stub.
        self._lib: Any
        try:
            self._lib = ffi.dlopen(path)
        except OSError as err:
            raise NativeError(LOAD, f"cannot load {path}: {err}") from None
        missing = _missing(self._lib, variant)
        if missing:
            kind = "an OSI device" if variant == "osi" else "a channel bank"
            raise NativeError(LOAD, f"{path} lacks {', '.join(missing)}, which "
                              f"cellbench_driver.h version {version} declares for {kind}")
        built = self._lib.cb_api_version()
        if built != version:
            raise NativeError(LOAD, f"{path} was built for cellbench_driver.h version {built}; "
                              f"this cellbench has version {version}")
        self._status = {int(getattr(self._lib, name)): name for name in STATUS_NAMES}
        self._handle: Any = None
        self._count = 0
        self._values: Any = None
        self._samples: Any = None

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._handle is not None

    def open(self, config: str, max_samples: int = 1024) -> None:
        """``cb_open(config)``; ``max_samples`` is the capacity handed to ``cb_measure``."""
        handle = self._lib.cb_open(config.encode())
        if handle == self._ffi.NULL:
            raise NativeError("CB_DISCONNECTED",
                              f"cb_open({config!r}) failed: {self._last_error(self._ffi.NULL)}")
        self._handle = handle
        try:
            if self.variant == "osi":
                self._count = self._counted("cb_signal_count",
                                            self._lib.cb_signal_count(handle))
                self._values = self._ffi.new("double[]", self._count)
            else:
                self._count = self._counted("cb_channel_count",
                                            self._lib.cb_channel_count(handle))
                self._samples = self._ffi.new("cb_sample[]", max_samples)
        except NativeError:
            self.close()
            raise

    def close(self) -> None:
        """``cb_close``, once; later calls do nothing."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self._checked("cb_close", self._lib.cb_close(handle), handle)

    # --- an OSI device -------------------------------------------------------------------

    def signals(self) -> list[SignalSpec]:
        """Every signal, described by the library."""
        handle = self._open_handle()
        info: Any = self._ffi.new("cb_signal_info *")
        signals = []
        for index in range(self._count):
            self._checked(f"cb_describe_signal(device, {index})",
                          self._lib.cb_describe_signal(handle, index, info), handle)
            signals.append(SignalSpec(self._text(info.name, f"the name of signal {index}"),
                                      self._text(info.unit, f"the unit of signal {index}"),
                                      info.writable != 0))
        _check_names([s.name for s in signals], "signal")
        return signals

    def read(self) -> bytes:
        """``cb_read``: every signal's value as native doubles, in index order."""
        handle = self._open_handle()
        written = self._checked("cb_read", self._lib.cb_read(handle, self._values, self._count),
                                handle)
        if written != self._count:
            raise NativeError(BAD_REPLY, f"cb_read returned {written} values; the device has "
                              f"{self._count} signals")
        return bytes(self._ffi.buffer(self._values))

    def write(self, index: int, value: float) -> None:
        """``cb_write(index, value)``."""
        handle = self._open_handle()
        self._status_only(f"cb_write(device, {index}, {value!r})",
                          self._lib.cb_write(handle, index, value), handle)

    def device_info(self) -> dict[str, str]:
        """``cb_describe_device``: what the device says about itself, by name."""
        handle = self._open_handle()
        text = self._ffi.new("char[]", INFO_BYTES)
        self._status_only("cb_describe_device",
                          self._lib.cb_describe_device(handle, text, INFO_BYTES), handle)
        info: dict[str, str] = {}
        for line in self._text(text, "cb_describe_device's text").splitlines():
            name, equals, value = line.partition("=")
            if not line.strip():
                continue
            if not (equals and name.strip()) or name.strip() in info:
                raise NativeError(BAD_REPLY, f"cb_describe_device gave the line {line!r}; "
                                  "each line is a new name=value")
            info[name.strip()] = value.strip()
        return info

    # --- a channel bank ------------------------------------------------------------------

    def channels(self) -> list[ChannelSpec]:
        """Every channel with its ranges, described by the library."""
        handle = self._open_handle()
        info: Any = self._ffi.new("cb_channel_info *")
        channels = []
        for index in range(self._count):
            self._checked(f"cb_describe_channel(device, {index})",
                          self._lib.cb_describe_channel(handle, index, info), handle)
            spec = ChannelSpec(self._text(info.name, f"the name of channel {index}"),
                               info.voltage_min_v, info.voltage_max_v, info.current_max_a,
                               info.power_max_w)
            problem = _range_problem(spec)
            if problem:
                raise NativeError(BAD_REPLY, f"cb_describe_channel(device, {index}) gave "
                                  f"channel {spec.name!r} {problem}")
            channels.append(spec)
        _check_names([c.name for c in channels], "channel")
        return channels

    def apply(self, channel: int, step: StepSpec) -> None:
        """``cb_apply(channel, step)``."""
        handle = self._open_handle()
        lib, ffi = self._lib, self._ffi
        times = ffi.new("double[]", step.profile_time_s)
        values = ffi.new("double[]", step.profile_value)
        c_step = ffi.new("cb_step *", {
            "mode": getattr(lib, f"CB_MODE_{step.mode}"),
            "current_a": step.current_a, "voltage_v": step.voltage_v, "power_w": step.power_w,
            "resistance_ohm": step.resistance_ohm,
            "profile_quantity": getattr(lib, f"CB_PROFILE_{step.profile_quantity}"),
            "profile_hold": int(step.profile_hold), "profile_points": len(step.profile_time_s),
            "profile_time_s": times, "profile_value": values})
        self._status_only(f"cb_apply(device, {channel}, {step.mode})",
                          lib.cb_apply(handle, channel, c_step), handle)

    def output_off(self, channel: int) -> None:
        """``cb_output_off(channel)``."""
        handle = self._open_handle()
        self._status_only(f"cb_output_off(device, {channel})",
                          self._lib.cb_output_off(handle, channel), handle)

    def measure(self) -> bytes:
        """``cb_measure``: the samples as an array of native ``cb_sample`` structs."""
        handle = self._open_handle()
        capacity = len(self._samples)
        count = self._checked("cb_measure",
                              self._lib.cb_measure(handle, self._samples, capacity), handle)
        if count > capacity:
            raise NativeError(BAD_REPLY, f"cb_measure returned {count} samples, more than the "
                              f"{capacity} it was given room for")
        return bytes(self._ffi.buffer(self._samples, count * self._ffi.sizeof("cb_sample")))

    def sample_layout(self) -> tuple[int, dict[str, int]]:
        """``cb_sample``'s size and the offset of each field, to read :meth:`measure`'s bytes."""
        fields = ("channel", "age_s", "voltage_v", "current_a", "temperature_c")
        return (self._ffi.sizeof("cb_sample"),
                {name: self._ffi.offsetof("cb_sample", name) for name in fields})

    # --- checking what comes back --------------------------------------------------------

    def _open_handle(self) -> Any:
        if self._handle is None:
            raise NativeError("CB_DISCONNECTED", "the device is not open")
        return self._handle

    def _last_error(self, handle: Any) -> str:
        pointer = self._lib.cb_last_error(handle)
        if pointer == self._ffi.NULL:
            return "(cb_last_error gave no reason)"
        text = self._ffi.string(pointer, MAX_ERROR_BYTES)
        if isinstance(text, str):  # cffi gives str only for wchar_t, never for char
            return text
        return text.decode("utf-8", "replace") or "(cb_last_error gave no reason)"

    def _checked(self, what: str, result: int, handle: Any) -> int:
        """``result`` when it is a count or CB_OK; the library's error otherwise."""
        if result >= 0:
            return result
        status = self._status.get(result, "CB_ERROR")
        raise NativeError(status, f"{what} returned {result} ({status}): "
                          f"{self._last_error(handle)}")

    def _status_only(self, what: str, result: int, handle: Any) -> None:
        if self._checked(what, result, handle) != 0:
            raise NativeError(BAD_REPLY, f"{what} returned {result}, which is no status code")

    def _counted(self, what: str, result: int) -> int:
        count = self._checked(what, result, self._handle)
        if not 0 < count <= MAX_ITEMS:
            raise NativeError(BAD_REPLY, f"{what} returned {count}; a device has 1.."
                              f"{MAX_ITEMS}")
        return count

    def _text(self, field: Any, what: str) -> str:
        raw = bytes(self._ffi.buffer(field))
        end = raw.find(b"\0")
        if end < 0:
            raise NativeError(BAD_REPLY, f"{what} fills all {len(raw)} bytes without the "
                              f"terminating NUL: {raw!r}")
        try:
            return raw[:end].decode("utf-8")
        except UnicodeDecodeError:
            raise NativeError(BAD_REPLY, f"{what} is not UTF-8: {raw[:end]!r}") from None


def missing_functions(path: str, declarations: str) -> dict[Variant, list[str]]:
    """The functions of each variant that the library at ``path`` lacks (an empty list for a
    variant it offers); :data:`LOAD` when it cannot be loaded at all."""
    ffi = cffi.FFI()
    ffi.cdef(declarations)
    try:
        lib = ffi.dlopen(path)
    except OSError as err:
        raise NativeError(LOAD, f"cannot load {path}: {err}") from None
    try:
        return {variant: _missing(lib, variant) for variant in VARIANT_FUNCTIONS}
    finally:
        ffi.dlclose(lib)


def _missing(lib: Any, variant: Variant) -> list[str]:
    return [name for name in COMMON_FUNCTIONS + VARIANT_FUNCTIONS[variant]
            if not _exports(lib, name)]


def _exports(lib: Any, name: str) -> bool:
    try:
        getattr(lib, name)
    except AttributeError:  # cffi's way of saying the symbol is not in the library
        return False
    return True


def _check_names(names: list[str], what: str) -> None:
    if not all(names):
        raise NativeError(BAD_REPLY, f"{what} {names.index('')} has an empty name")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise NativeError(BAD_REPLY, f"{what} names appear more than once: {twice}")


def _range_problem(spec: ChannelSpec) -> str:
    low, high = spec.voltage_min_v, spec.voltage_max_v
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        return f"the voltage range {low!r}..{high!r} V (finite, min below max)"
    if not (math.isfinite(spec.current_max_a) and spec.current_max_a > 0):
        return f"current_max_a {spec.current_max_a!r} A (finite, above 0)"
    if not spec.power_max_w > 0:
        return f"power_max_w {spec.power_max_w!r} W (above 0, INFINITY when unlimited)"
    return ""
