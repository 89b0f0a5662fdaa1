"""The OSI-device, climate-chamber and failed-open checks pass the simulators and catch each kind
of broken device."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence

import pytest

from cellbench_sdk import (
    ChamberState,
    Clock,
    Device,
    DeviceConnectionError,
    Reading,
    SignalInfo,
)
from cellbench_sdk.testing import (
    check_climate_chamber,
    check_device,
    check_failed_open,
    check_osi_device,
)
from cellbench_sim.chamber import SimChamber, SimChamberSettings, SimHumidityChamber
from cellbench_sim.osi import HEATER_POWER, PRESSURE, SimOsiDevice


def test_simulators_pass() -> None:
    check_device(SimOsiDevice())
    check_device(SimChamber())
    check_device(SimHumidityChamber(SimChamberSettings(has_humidity=True)))
    asyncio.run(check_osi_device(SimOsiDevice(), values={HEATER_POWER: 12.5}))
    asyncio.run(check_climate_chamber(SimChamber(), setpoint_c=-20.0))


def test_check_device_refuses_what_is_no_device_kind() -> None:
    class Lamp(Device):
        async def open(self, clock: Clock) -> None: ...

        async def close(self) -> None: ...

    with pytest.raises(TypeError, match="Lamp implements none of ChannelDriver"):
        check_device(Lamp())


def test_values_must_name_writable_signals() -> None:
    with pytest.raises(ValueError, match=r"\['pressure_kpa'\], which are not writable"):
        asyncio.run(check_osi_device(SimOsiDevice(), values={PRESSURE: 100.0}))


class HeaterNotRead(SimOsiDevice):
    async def read(self) -> Mapping[str, Reading]:
        return {k: v for k, v in (await super().read()).items() if k != HEATER_POWER}


def test_a_writable_signal_that_is_not_read_needs_a_value() -> None:
    with pytest.raises(ValueError, match=r"writable but not read: pass values=\{'heater_p"):
        check_device(HeaterNotRead())
    asyncio.run(check_osi_device(HeaterNotRead(), values={HEATER_POWER: 1.0}))


class MissesPressure(SimOsiDevice):
    async def read(self) -> Mapping[str, Reading]:
        return {k: v for k, v in (await super().read()).items() if k != PRESSURE}


class ReadsUnknownSignal(SimOsiDevice):
    async def read(self) -> Mapping[str, Reading]:
        readings = dict(await super().read())
        readings["humidity"] = readings[PRESSURE]
        return readings


class ReadsText(SimOsiDevice):
    async def read(self) -> Mapping[str, Reading]:
        readings = dict(await super().read())
        readings[PRESSURE] = Reading("101.3", readings[PRESSURE].time_s)  # type: ignore[arg-type]
        return readings


class ReadsTheFuture(SimOsiDevice):
    async def read(self) -> Mapping[str, Reading]:
        readings = await super().read()
        return {k: Reading(r.value, r.time_s + 1.0) for k, r in readings.items()}


class WritesReadOnly(SimOsiDevice):
    async def write(self, signal: str, value: float) -> None:
        if signal != PRESSURE:
            await super().write(signal, value)


class WritesNaN(SimOsiDevice):
    async def write(self, signal: str, value: float) -> None:
        if not math.isnan(value):
            await super().write(signal, value)


class UnknownSignalKeyError(SimOsiDevice):
    async def write(self, signal: str, value: float) -> None:
        {s.name: s for s in self.signals}[signal]
        await super().write(signal, value)


class ReadsWhenClosed(SimOsiDevice):
    async def read(self) -> Mapping[str, Reading]:
        return {} if not self._clock.is_open else await super().read()


class WritesWhenClosed(SimOsiDevice):
    async def write(self, signal: str, value: float) -> None:
        if self._clock.is_open:
            await super().write(signal, value)


class WritesBeyondItsRange(SimOsiDevice):
    async def write(self, signal: str, value: float) -> None:
        await super().write(signal, min(value, self.settings.heater_max_w))


class NoSignals(SimOsiDevice):
    @property
    def signals(self) -> Sequence[SignalInfo]:
        return []


class InfoNotText(SimOsiDevice):
    @property
    def info(self) -> Mapping[str, str]:
        return {"serial_number": 4660}  # type: ignore[dict-item]


BROKEN_OSI: list[tuple[type[SimOsiDevice], list[str]]] = [
    (MissesPressure, ["every read-only signal", "missing ['pressure_kpa']"]),
    (ReadsUnknownSignal, ["and no other name", "unknown ['humidity']"]),
    (ReadsText, ["value is a float", "pressure_kpa = '101.3'"]),
    (ReadsTheFuture, ["not later than now()", "at 1.0 s (clock now 0 s"]),
    (WritesReadOnly, ["write('pressure_kpa', 101.325)", "refused with NotSupported",
                      "returned without an error"]),
    (WritesNaN, ["write('heater_power_w', nan)", "non-finite value is refused with OutOfRange"]),
    (UnknownSignalKeyError, ["unknown signal is refused with OutOfRange", "raised KeyError"]),
    (ReadsWhenClosed, ["read() before open()", "raise DeviceConnectionError"]),
    (WritesWhenClosed, ["write('heater_power_w', 0) after close()", "DeviceConnectionError"]),
    (WritesBeyondItsRange, ["write('heater_power_w', 100)", "beyond the signal's declared "
                            "range is refused with OutOfRange"]),
    (NoSignals, ["at least one signal", "[]"]),
    (InfoNotText, ["info after open()", "info maps non-empty names to text",
                   "{'serial_number': 4660}"]),
]


@pytest.mark.parametrize(("broken", "fragments"), BROKEN_OSI,
                         ids=[b.__name__ for b, _ in BROKEN_OSI])
def test_each_osi_violation_is_caught(broken: type[SimOsiDevice], fragments: list[str]) -> None:
    with pytest.raises(AssertionError) as failure:
        check_device(broken())
    message = str(failure.value)
    assert message.startswith(f"{broken.__name__} 'sim-osi': ")
    for fragment in fragments:
        assert fragment in message


class StartIgnored(SimChamber):
    async def start(self) -> None:
        self._advance()


class IgnoresHumidity(SimChamber):
    async def set_humidity(self, percent: float) -> None:
        self._advance()


class AcceptsAnyTemperature(SimChamber):
    async def set_temperature(self, celsius: float) -> None:
        self._advance()
        self._setpoint = celsius


class RoundsSetpoint(SimChamber):
    async def read(self) -> ChamberState:
        state = await super().read()
        return ChamberState(state.time_s, state.temperature_c, round(state.setpoint_c, -1),
                            state.running)


class ReportsHumidityItHasNot(SimChamber):
    async def read(self) -> ChamberState:
        state = await super().read()
        return ChamberState(state.time_s, state.temperature_c, state.setpoint_c, state.running,
                            humidity_pct=40.0)


class AcceptsAnyHumidity(SimHumidityChamber):
    async def set_humidity(self, percent: float) -> None:
        self._advance()
        self._setpoint_humidity = percent


class ReadsWhenNotOpen(SimChamber):
    async def read(self) -> ChamberState:
        if not self._clock.is_open:
            return ChamberState(0.0, 25.0, 25.0, False)
        return await super().read()


class RampFailsWrongly(SimChamber):
    async def ramp_temperature(self, celsius: float, kelvin_per_s: float) -> None:
        raise ValueError("no ramps here")


class RampsAnywhere(SimChamber):
    async def ramp_temperature(self, celsius: float, kelvin_per_s: float) -> None:
        self._advance()


BROKEN_CHAMBERS: list[tuple[type[SimChamber], list[str]]] = [
    (StartIgnored, ["read() after start()", "running is True after start()",
                    "running is False"]),
    (IgnoresHumidity, ["set_humidity(50)", "refuses humidity setpoints with NotSupported"]),
    (AcceptsAnyTemperature, ["set_temperature(nan)", "refused with OutOfRange"]),
    (RoundsSetpoint, ["setpoint_c reads back as set", "setpoint_c 20.0 after set_temperature(25)"]),
    (ReportsHumidityItHasNot, ["exactly when the chamber has_humidity", "(40.0, None)"]),
    (AcceptsAnyHumidity, ["set_humidity(nan)", "outside 0..100 % is refused with OutOfRange"]),
    (ReadsWhenNotOpen, ["read() before open()", "returned without an error"]),
    (RampFailsWrongly, ["ramp_temperature(25, 1 K/min)", "refuses with NotSupported",
                        "raised ValueError: no ramps here"]),
    (RampsAnywhere, ["ramp_temperature(1000, 1 K/min)", "impossible ramp target is refused"]),
]


@pytest.mark.parametrize(("broken", "fragments"), BROKEN_CHAMBERS,
                         ids=[b.__name__ for b, _ in BROKEN_CHAMBERS])
def test_each_chamber_violation_is_caught(broken: type[SimChamber], fragments: list[str]) -> None:
    settings = SimChamberSettings(has_humidity=broken.has_humidity)
    with pytest.raises(AssertionError) as failure:
        check_device(broken(settings))
    message = str(failure.value)
    assert message.startswith(f"{broken.__name__} 'sim-chamber': ")
    for fragment in fragments:
        assert fragment in message


class TcpGauge(Device):
    """A device behind a TCP connection, opened the way a driver should: errors typed."""

    name = "gauge"

    def __init__(self, port: int) -> None:
        self.port = port
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, clock: Clock) -> None:
        try:
            _, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as err:
            raise DeviceConnectionError(self.name, f"cannot connect: {err}") from err

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class UntypedOpen(TcpGauge):
    async def open(self, clock: Clock) -> None:
        _, self.writer = await asyncio.open_connection("127.0.0.1", self.port)


class CloseAssumesOpen(TcpGauge):
    async def close(self) -> None:
        assert self.writer is not None, "not open"
        await super().close()


def test_failed_open_passes_a_driver_that_fails_cleanly(unreachable_port: int) -> None:
    asyncio.run(check_failed_open(TcpGauge(unreachable_port)))


@pytest.mark.parametrize(("broken", "fragment"), [
    (UntypedOpen, "raised ConnectionRefusedError"),
    (CloseAssumesOpen, "close() after a failed open()\n  contract: close() is safe after a "
                       "failed open()\n  got:      raised AssertionError: not open"),
])
def test_failed_open_catches_untyped_errors_and_unsafe_close(
        unreachable_port: int, broken: type[TcpGauge], fragment: str) -> None:
    with pytest.raises(AssertionError) as failure:
        asyncio.run(check_failed_open(broken(unreachable_port)))
    assert str(failure.value).startswith(f"{broken.__name__} 'gauge': ")
    assert fragment in str(failure.value)


def test_failed_open_fails_when_open_succeeds() -> None:
    async def run() -> None:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            await check_failed_open(TcpGauge(port))

    with pytest.raises(AssertionError) as failure:
        asyncio.run(run())
    assert str(failure.value).startswith("TcpGauge 'gauge': open() of an unreachable device\n")
    assert str(failure.value).endswith("got:      returned without an error")
