"""A Keysight 34970A / DAQ970A-family data logger as an OSI device: a scan list of
thermocouple and DC-voltage channels, one scan per ``read()``.

At open the logger is identified (``*IDN?``), reset and configured (one CONFigure per kind, the
reading format with units and channel numbers, the scan list), and its error queue must then be
empty. Each ``read()`` sends ``READ?`` and checks every reading's channel and unit. Protocol,
settings and failure behaviour: docs/scpi-logger.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cellbench_scpi_logger.scpi import MODELS, READING_UNITS, configuration, family, parse_scan
from cellbench_scpi_logger.settings import ScpiLoggerSettings
from cellbench_sdk import (
    BadReply,
    Clock,
    DeviceConnectionError,
    DeviceError,
    LineTransport,
    NotSupported,
    OsiDevice,
    OutOfRange,
    Reading,
    SignalInfo,
    WhileOpen,
    transport_from_url,
)

#: The reply of SYSTem:ERRor? when the queue is empty starts with this (+0 or 0).
_NO_ERROR = ("+0,", "0,")
#: Errors read from the queue at most after a refused configuration.
_MAX_ERRORS = 10


class ScpiLogger(OsiDevice):
    """One logger; its signals are the settings' channels, named as the station file names
    them."""

    virtual_time_ok = False

    def __init__(self, settings: ScpiLoggerSettings) -> None:
        self.settings = settings
        self.name = f"scpi-logger@{settings.address or settings.port}"
        self._io: LineTransport = transport_from_url(
            settings.url, name=self.name, timeout=settings.timeout_s, read_termination="\n",
            write_termination="\n")
        self._clock = WhileOpen[Clock](self)
        self._signals = tuple(
            SignalInfo(name, READING_UNITS[family(channel)][1],
                       description=f"ch {channel.ch} ({channel.kind})")
            for name, channel in settings.channels.items())
        self._info: dict[str, str] = {}
        self._lost = False  # the connection dropped while open: read() reconnects

    @property
    def signals(self) -> Sequence[SignalInfo]:
        return self._signals

    @property
    def info(self) -> Mapping[str, str]:
        """The logger's *IDN?: manufacturer, model, serial number, firmware."""
        return dict(self._info)

    async def open(self, clock: Clock) -> None:
        await self._connect()
        self._lost = False
        self._clock.set(clock)

    async def _connect(self) -> None:
        """Connect, identify the logger and configure the scan list; closed again on error."""
        await self._io.open()
        try:
            await self._identify()
            for command in configuration(self.settings.channels, reset=self.settings.reset):
                await self._io.write(command)
            await self._check_errors("configuring the scan list")
        except BaseException:
            await self._io.close()
            raise

    async def _identify(self) -> None:
        reply = (await self._io.query("*IDN?")).strip()
        fields = [f.strip() for f in reply.split(",")]
        if len(fields) != 4:
            raise BadReply(self.name, f"*IDN? answered {reply!r}, not 4 fields")
        if fields[1] not in MODELS:
            raise DeviceError(self.name, f"*IDN? names model {fields[1]!r}; this driver speaks "
                                         f"to {', '.join(MODELS)}")
        self._info = dict(zip(("manufacturer", "model", "serial_number", "firmware"), fields,
                              strict=True))

    async def _check_errors(self, doing: str) -> None:
        """Read the error queue; a DeviceError listing what it held if it was not empty."""
        errors: list[str] = []
        for _ in range(_MAX_ERRORS):
            reply = (await self._io.query("SYST:ERR?")).strip()
            if reply.startswith(_NO_ERROR):
                break
            errors.append(reply)
        if errors:
            raise DeviceError(self.name, f"{doing}: the logger reports {'; '.join(errors)}")

    async def close(self) -> None:
        """Let go of the logger (it has no outputs to switch off)."""
        self._clock.clear()
        await self._io.close()

    async def read(self) -> Mapping[str, Reading]:
        """One scan. After a lost connection, the next read connects and configures again
        first (a logger that was restarted comes back), or raises why it cannot."""
        clock = self._clock.get()
        if self._lost:
            await self._connect()
            self._lost = False
        try:
            reply = await self._io.query("READ?")
        except DeviceConnectionError:
            self._lost = True
            raise
        now = clock.now()
        try:
            values = parse_scan(reply, self.settings.channels)
        except ValueError as err:
            raise BadReply(self.name, f"READ? answered {reply[:200]!r}: {err}") from None
        return {name: Reading(value, now) for name, value in values.items()}

    async def write(self, signal: str, value: float) -> None:
        self._clock.get()
        if signal not in self.settings.channels:
            raise OutOfRange(self.name, f"no signal {signal!r}")
        raise NotSupported(self.name, f"{signal} is a measurement (read-only)")
