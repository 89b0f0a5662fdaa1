"""Settings of a CAN device, as a station file's ``[devices.settings]`` gives them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: A device signal's name, as plans and aux columns use it after ``<device>.``.
SignalName = Annotated[str, StringConstraints(pattern=r"^\w{1,64}$")]
#: A python-can option's value (``tty_baudrate = 115200``, ``fd = true``, ``app_name = "x"``).
Option = str | int | float | bool


class BusSettings(BaseModel):
    """The CAN bus, as python-can opens it (``can.Bus(interface, channel, bitrate, **options)``).

    Device sections with the same ``interface`` and ``channel`` share one opened bus and one
    reader thread, so several sections (one per cycler channel) can listen to one BMS.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    interface: str = Field(min_length=1, description="python-can interface: socketcan, slcan, "
                                                     "pcan, kvaser, vector, virtual, ...")
    channel: str | int = Field(description="the interface's channel: can0, /dev/ttyACM0, "
                                           "PCAN_USBBUS1, 0, ...")
    bitrate: int | None = Field(default=None, gt=0, description="bits per second")
    options: dict[str, Option] = Field(
        default={}, description="further keyword arguments of the python-can interface")


class TransmitSettings(BaseModel):
    """A message the station sends: periodically (a heartbeat, a charge-enable frame) and at
    once when a plan writes one of its signals."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    period_s: float | None = Field(
        default=None, ge=0, le=3600,
        description="seconds between sends; None: the DBC's cycle time (none there: on "
                    "demand only); 0: on demand only")
    values: dict[str, float] = Field(
        default={}, description="initial values by DBC signal name (others: the DBC's initial "
                                "value, else 0 within the signal's range)")
    counter: str | None = Field(
        default=None, description="a DBC signal that counts up with every send, wrapping "
                                  "(an alive counter)")


class CanSettings(BaseModel):
    """A CAN bus and the database (DBC, KCD, SYM or ARXML) that says what its frames mean."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    bus: BusSettings
    database: Path = Field(description="the DBC, KCD, SYM or ARXML file")
    strict: bool = Field(default=True, description="refuse databases whose signals overlap")
    node: str | None = Field(
        default=None, description="the database's node that the station is: its messages are "
                                  "sent (see transmit), never received")
    signals: dict[SignalName, str] | None = Field(
        default=None,
        description="device signal name -> 'Message.Signal' (or a signal name unique in the "
                    "database); None: every signal of every message the station receives")
    timeout_s: float = Field(
        default=1.0, gt=0, le=3600,
        description="how long a received message may stay away when the DBC gives no cycle "
                    "time")
    timeout_cycles: float = Field(
        default=3.0, ge=1, le=1000,
        description="how many cycle times (the DBC's) a received message may stay away")
    timeouts: dict[str, Annotated[float, Field(gt=0, le=3600)]] = Field(
        default={}, description="message name -> seconds it may stay away (overrides the two "
                                "above)")
    transmit: dict[str, TransmitSettings] = Field(
        default={}, description="message name -> how the station sends it; its signals are "
                                "writable")
    on_close: dict[SignalName, float] = Field(
        default={}, description="writable device signals set, and their messages sent once, "
                                "when the device closes (charge enable off, contactor open)")
