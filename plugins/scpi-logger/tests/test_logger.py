"""The data logger driver: the contract against the emulator on loopback, the exact
configuration conversation, a scan over a serial line (a pty), and every failure: slow,
garbled, disconnected, an error queue that is not empty, an open thermocouple."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar

import pytest

from cellbench_scpi_logger.emulator import LoggerEmulator
from cellbench_scpi_logger.logger import ScpiLogger
from cellbench_scpi_logger.settings import ScpiLoggerSettings
from cellbench_sdk import (
    BadReply,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    NotSupported,
    OutOfRange,
    RealClock,
)
from cellbench_sdk.testing import OsiDeviceContract, expected_protocol

T = TypeVar("T")
CHANNELS = {"t_cell1": {"ch": 101, "kind": "tc-k"}, "t_cell2": {"ch": 102, "kind": "tc-k"},
            "t_ambient": {"ch": 110, "kind": "tc-t"}, "v_cell": {"ch": 201, "kind": "dcv"},
            "v_shunt": {"ch": 202, "kind": "dcv", "range": 0.1}}


class TestScpiLogger(OsiDeviceContract):
    """Every check of an OSI device against the emulated logger on a loopback socket."""

    plugin = "cellbench_scpi_logger.plugin"
    name = "scpi-logger"
    entry_point = "scpi-logger"
    cases: ClassVar[dict[str, dict[str, Any]]] = {
        "daq970a": {"address": "127.0.0.1:1", "channels": CHANNELS},
        "34970a": {"address": "127.0.0.1:1", "channels": {"t": {"ch": 301, "kind": "tc-j"}},
                   "reset": False},
    }

    @asynccontextmanager
    async def peer(self, settings: Mapping[str, Any]) -> AsyncIterator[Mapping[str, Any]]:
        model = "34970A" if "t" in settings["channels"] else "DAQ970A"
        async with LoggerEmulator(model=model, cards={1: 20, 2: 20, 3: 40}) as emulator:
            yield {**settings, "address": f"127.0.0.1:{emulator.port}"}
        assert emulator.scans >= 2

    def unreachable(self, port: int) -> Mapping[str, Any]:
        return {"address": f"127.0.0.1:{port}", "channels": CHANNELS}


def logger_at(port: int, **settings: Any) -> ScpiLogger:
    return ScpiLogger(ScpiLoggerSettings.model_validate(
        {"address": f"127.0.0.1:{port}", "channels": CHANNELS, "timeout_s": 0.5, **settings}))


def with_emulator(scenario: Callable[[LoggerEmulator, ScpiLogger], Awaitable[T]],
                  **settings: Any) -> T:
    """Run ``scenario`` with an emulator on loopback and a logger opened on it."""
    async def run() -> T:
        async with LoggerEmulator() as emulator:
            logger = logger_at(emulator.port, **settings)
            await logger.open(RealClock())
            try:
                return await scenario(emulator, logger)
            finally:
                await logger.close()

    return asyncio.run(run())


IDN = (b"*IDN?\n", b"Keysight Technologies,DAQ970A,MY58000123,A.03.02\n")
CONFIGURATION = [
    IDN,
    (b"*RST\n", b""),
    (b"*CLS\n", b""),
    (b"CONF:TEMP TC,K,(@101,102)\n", b""),
    (b"CONF:TEMP TC,T,(@110)\n", b""),
    (b"CONF:VOLT:DC AUTO,(@201)\n", b""),
    (b"CONF:VOLT:DC 0.1,(@202)\n", b""),
    (b"FORM:READ:CHAN ON\n", b""),
    (b"FORM:READ:UNIT ON\n", b""),
    (b"ROUT:SCAN (@101,102,110,201,202)\n", b""),
    (b"SYST:ERR?\n", b'+0,"No error"\n'),
]


def test_the_configuration_conversation_and_a_scan_byte_for_byte() -> None:
    scan = (b"+2.51200000E+01 C,101,+2.49800000E+01 C,102,+2.31000000E+01 C,110,"
            b"+3.71234000E+00 VDC,201,+1.25000000E-02 VDC,202\n")

    async def run() -> dict[str, float]:
        async with expected_protocol([*CONFIGURATION, (b"READ?\n", scan)]) as instrument:
            logger = logger_at(instrument.port)
            await logger.open(RealClock())
            readings = await logger.read()
            await logger.close()
            assert logger.info == {"manufacturer": "Keysight Technologies", "model": "DAQ970A",
                                   "serial_number": "MY58000123", "firmware": "A.03.02"}
            return {name: r.value for name, r in readings.items()}

    assert asyncio.run(run()) == {"t_cell1": 25.12, "t_cell2": 24.98, "t_ambient": 23.1,
                                  "v_cell": 3.71234, "v_shunt": 0.0125}


def test_units_of_the_signals() -> None:
    logger = logger_at(1)
    assert {s.name: s.unit for s in logger.signals} == {
        "t_cell1": "°C", "t_cell2": "°C", "t_ambient": "°C", "v_cell": "V", "v_shunt": "V"}
    assert not any(s.writable for s in logger.signals)


def test_a_refused_configuration_fails_open_with_the_loggers_errors() -> None:
    async def run() -> None:
        async with LoggerEmulator(cards={1: 20}) as emulator:  # no card in slot 2
            logger = logger_at(emulator.port)
            with pytest.raises(DeviceError, match=r"configuring the scan list: the logger "
                                                  r"reports \+703,\"Invalid card slot; no module "
                                                  r"in slot 2\""):
                await logger.open(RealClock())
            await logger.close()

    asyncio.run(run())


def test_errors_left_from_before_are_cleared_and_do_not_fail_open() -> None:
    async def run() -> float:
        async with LoggerEmulator() as emulator:
            emulator.push_error('-410,"Query INTERRUPTED"')  # someone else's
            logger = logger_at(emulator.port)
            await logger.open(RealClock())
            value = (await logger.read())["v_cell"].value
            await logger.close()
            return value

    assert 3 < asyncio.run(run()) < 4


def test_another_instrument_is_refused() -> None:
    async def run() -> None:
        async with expected_protocol([(b"*IDN?\n", b"ACME,PSU-9,1,1.0\n")]) as instrument:
            logger = logger_at(instrument.port)
            with pytest.raises(DeviceError, match="model 'PSU-9'; this driver speaks to "
                                                  "34970A, 34972A, DAQ970A, DAQ973A"):
                await logger.open(RealClock())

    asyncio.run(run())


def test_an_open_thermocouple_reads_nan() -> None:
    async def scenario(emulator: LoggerEmulator, logger: ScpiLogger) -> dict[str, float]:
        emulator.open_channels.add(102)
        emulator.values[201] = 3.5
        return {name: r.value for name, r in (await logger.read()).items()}

    values = with_emulator(scenario)
    assert math.isnan(values["t_cell2"])
    assert values["v_cell"] == 3.5
    assert 20 < values["t_cell1"] < 30


@pytest.mark.parametrize(("fault", "error", "message"), [
    ("slow_s", DeviceTimeout, "no reply within 0.5 s"),
    ("garbled", BadReply, "is not ascii text"),
    ("drop", DeviceConnectionError, "the peer closed the connection"),
    ("silent", DeviceTimeout, "no reply within 0.5 s"),
])
def test_a_misbehaving_logger_raises_a_typed_error(fault: str, error: type[Exception],
                                                    message: str) -> None:
    async def scenario(emulator: LoggerEmulator, logger: ScpiLogger) -> None:
        setattr(emulator.faults, fault, 2.0 if fault == "slow_s" else True)
        with pytest.raises(error, match=message):
            await logger.read()

    with_emulator(scenario)


def test_a_dropped_connection_is_an_error_and_the_next_read_reconnects() -> None:
    async def scenario(emulator: LoggerEmulator, logger: ScpiLogger) -> float:
        await emulator.disconnect()
        with pytest.raises(DeviceConnectionError):
            await logger.read()
        port = emulator.port
        await emulator.stop()  # the logger is off: the next read cannot reconnect
        with pytest.raises(DeviceConnectionError):
            await logger.read()
        await emulator.start(port=port)  # back: reconnected, reconfigured, read
        emulator.received.clear()
        value = (await logger.read())["v_cell"].value
        assert emulator.received[0] == "*IDN?"
        assert list(emulator.received)[-2:] == ["SYST:ERR?", "READ?"]
        return value

    assert 3 < with_emulator(scenario) < 4


@pytest.mark.parametrize(("reply", "problem"), [
    (b"+2.5E+01 C,101\n", "2 fields, expected 10"),
    (b"+2.5E+01 C,101,+2.5E+01 C,101,+2.3E+01 C,110,+3.7E+00 VDC,201,+1E-02 VDC,202\n",
     "channel 101 appears twice"),
    (b"+2.5E+01 C,101,+2.5E+01 VDC,102,+2.3E+01 C,110,+3.7E+00 VDC,201,+1E-02 VDC,202\n",
     r"channel 102 \(tc-k\) reads '\+2.5E\+01 VDC', not in C"),
    (b"+2.5E+01 C,101,+2.5E+01 C,109,+2.3E+01 C,110,+3.7E+00 VDC,201,+1E-02 VDC,202\n",
     "channel '109' is not in the scan list"),
    (b"+2.5E+01 C,101,NAN C,102,+2.3E+01 C,110,+3.7E+00 VDC,201,+1E-02 VDC,202\n",
     "channel 102 reads 'NAN C'"),
    (b"+2.5E+01 C,101,abc C,102,+2.3E+01 C,110,+3.7E+00 VDC,201,+1E-02 VDC,202\n",
     "not a number"),
])
def test_a_scan_that_does_not_fit_the_scan_list_is_refused(reply: bytes, problem: str) -> None:
    async def run() -> None:
        async with expected_protocol([*CONFIGURATION, (b"READ?\n", reply)]) as instrument:
            logger = logger_at(instrument.port)
            await logger.open(RealClock())
            with pytest.raises(BadReply, match=problem):
                await logger.read()
            await logger.close()

    asyncio.run(run())


def test_a_scan_over_a_serial_line() -> None:
    async def run() -> tuple[dict[str, float], list[str]]:
        emulator = LoggerEmulator(model="34970A")
        path = await emulator.start_pty()
        try:
            logger = ScpiLogger(ScpiLoggerSettings.model_validate(
                {"port": path, "baudrate": 57600, "channels": CHANNELS, "timeout_s": 2}))
            await logger.open(RealClock())
            readings = await logger.read()
            await logger.close()
        finally:
            await emulator.stop()
        return {n: r.value for n, r in readings.items()}, list(emulator.received)

    values, received = asyncio.run(run())
    assert set(values) == set(CHANNELS)
    assert received[0] == "*IDN?" and received[-1] == "READ?"


def test_serial_settings_make_the_transport_url() -> None:
    settings = ScpiLoggerSettings.model_validate(
        {"port": "/dev/ttyUSB0", "baudrate": 57600, "flow_control": "xonxoff",
         "channels": CHANNELS})
    assert settings.url == "serial:///dev/ttyUSB0?baudrate=57600&xonxoff=1"
    assert ScpiLoggerSettings.model_validate(
        {"address": "10.0.0.21:5025", "channels": CHANNELS}).url == "tcp://10.0.0.21:5025"


def test_writes_are_refused() -> None:
    async def scenario(emulator: LoggerEmulator, logger: ScpiLogger) -> None:
        with pytest.raises(NotSupported, match="read-only"):
            await logger.write("t_cell1", 1.0)
        with pytest.raises(OutOfRange, match="no signal 'x'"):
            await logger.write("x", 1.0)

    with_emulator(scenario)


@pytest.mark.parametrize(("settings", "problem"), [
    ({"channels": {"t": {"ch": 121, "kind": "tc-k"}}}, None),
    ({"channels": {"t": {"ch": 141, "kind": "tc-k"}}}, "ch 141 is no channel"),
    ({"channels": {"t": {"ch": 401, "kind": "tc-k"}}}, "ch 401 is no channel"),
    ({"channels": {"t": {"ch": 101, "kind": "tc-x"}}}, "kind"),
    ({"channels": {"t": {"ch": 101, "kind": "tc-k", "range": 10}}},
     "range is for dcv channels"),
    ({"channels": {"v": {"ch": 101, "kind": "dcv", "range": 5}}}, "range 5 V is not one of"),
    ({"channels": {"a": {"ch": 101, "kind": "dcv"}, "b": {"ch": 101, "kind": "tc-k"}}},
     "'b' and 'a' both use ch 101"),
    ({"channels": {"T-1": {"ch": 101, "kind": "dcv"}}}, "signal name 'T-1' must be"),
    ({"channels": {}}, "at least 1"),
    ({"channels": {"t": {"ch": 101, "kind": "tc-k"}}, "port": "/dev/ttyS0"},
     "exactly one of address"),
])
def test_settings_are_checked(settings: dict[str, Any], problem: str | None) -> None:
    data = {"address": "127.0.0.1:5025", **settings}
    if problem is None:
        ScpiLoggerSettings.model_validate(data)
        return
    with pytest.raises(ValueError, match=problem):
        ScpiLoggerSettings.model_validate(data)
