"""The JSON shapes of the HTTP API (they make its OpenAPI document, openapi.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Field(min_length=1, max_length=255)


class Problem(BaseModel):
    """A refused request: ``error`` for programs, ``message`` for people."""

    error: str
    message: str


class StationInfo(BaseModel):
    """The serving station (or, for ``cellbench web --db``, the database), and the caller."""

    name: str
    version: str
    channels: int
    live: bool = Field(description="false: read-only over a database")
    role: Literal["viewer", "operator"]


class StationSummary(BaseModel):
    """A station with tests in the database."""

    name: str
    tests: int
    last_start_unix_s: float | None


class ChannelLive(BaseModel):
    """A channel's live state; the values are the running test's last sample."""

    number: int
    state: Literal["idle", "running", "paused"]
    test_id: int | None
    step_no: int
    step_text: str
    cycle: int
    voltage_v: float | None
    current_a: float | None
    temperature_c: float | None
    ah: float | None
    wh: float | None
    test_time_s: float | None
    battery: str | None = Field(description="the battery of the latest test")
    chamber: str | None = Field(description="the climate chamber of the latest test")


class ChannelStored(BaseModel):
    """A channel as stored (as last synced, for a central database) and its newest test."""

    name: str
    driver: str
    test_id: int | None
    test_name: str | None
    status: str | None
    start_unix_s: float | None
    end_unix_s: float | None


class TestSummary(BaseModel):
    """A test in a list."""

    __test__ = False
    station: str
    id: int
    name: str
    channel: str | None
    battery: str | None
    plan_name: str
    status: str
    end_reason: str | None
    start_unix_s: float
    end_unix_s: float | None
    sample_period_s: float


class TestDetail(TestSummary):
    """A test with its plan's text."""

    plan_text: str


class Cycle(BaseModel):
    """One cycle: its steps summed (the ``cycles`` view, docs/schema.md)."""

    test_id: int
    cycle: int
    steps: int
    start_seq: int
    end_seq: int
    start_test_time_s: float
    end_test_time_s: float
    charge_ah: float | None
    discharge_ah: float | None
    charge_wh: float | None
    discharge_wh: float | None
    coulombic_efficiency: float | None
    energy_efficiency: float | None
    mean_charge_v: float | None
    mean_discharge_v: float | None
    temperature_min_c: float | None
    temperature_max_c: float | None
    end_reasons: str | None


class Step(BaseModel):
    """A finished step."""

    test_id: int
    step_no: int
    step_index: int
    plan_line: int
    cycle: int
    mode: str
    text: str
    start_seq: int
    end_seq: int
    start_test_time_s: float
    end_test_time_s: float
    ah: float | None
    wh: float | None
    end_reason: str
    charge_ah: float | None
    discharge_ah: float | None
    charge_wh: float | None
    discharge_wh: float | None
    temperature_min_c: float | None
    temperature_max_c: float | None


class Event(BaseModel):
    """Something that happened: a test started, a limit tripped, an operator's command."""

    id: int
    test_id: int | None
    unix_time_s: float
    kind: str
    channel: str | None
    message: str
    data: dict[str, Any]


class SamplePage(BaseModel):
    """Samples as rows of ``columns``; ``next_after_seq`` continues (null: the end)."""

    columns: list[str]
    rows: list[list[float | int | None]]
    next_after_seq: int | None


class Mark(BaseModel):
    """Where a step began, for plot marks."""

    step_no: int
    cycle: int
    mode: str
    test_time_s: float


class Series(BaseModel):
    """A downsampled series: per time bucket its first and last test time (``t_min``,
    ``t_max``) and each column's ``<column>_min`` and ``<column>_max``."""

    model_config = ConfigDict(extra="allow")

    station: str
    test_id: int
    start_s: float | None
    end_s: float | None
    bucket_s: float | None
    t_min: list[float]
    t_max: list[float]
    marks: list[Mark]


class Battery(BaseModel):
    """A registered battery; current limits are magnitudes."""

    name: str
    chemistry: str
    nominal_capacity_ah: float
    nominal_voltage_v: float | None
    voltage_max_v: float | None
    voltage_min_v: float | None
    current_max_charge_a: float | None
    current_max_discharge_a: float | None
    temperature_max_c: float | None
    metadata: dict[str, Any]
    created_unix_s: float


class NewBattery(BaseModel):
    """A battery to register: the registry's rules (those of ``cellbench battery add``) check
    the values, a refusal naming the field (422 ``bad_value``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Name
    chemistry: str = Name
    nominal_capacity_ah: float
    nominal_voltage_v: float | None = None
    voltage_max_v: float | None = None
    voltage_min_v: float | None = None
    current_max_charge_a: float | None = None
    current_max_discharge_a: float | None = None
    temperature_max_c: float | None = None


class BatteryChanges(BaseModel):
    """The values of a battery to change (those left out stay; null clears a limit), by the
    rules of registering it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    chemistry: str | None = Field(default=None, min_length=1, max_length=255)
    nominal_capacity_ah: float | None = None
    nominal_voltage_v: float | None = None
    voltage_max_v: float | None = None
    voltage_min_v: float | None = None
    current_max_charge_a: float | None = None
    current_max_discharge_a: float | None = None
    temperature_max_c: float | None = None
    metadata: dict[str, str] | None = None


class StartRequest(BaseModel):
    """A plan of the plans folder to start (or queue), and the battery under test."""

    model_config = ConfigDict(extra="forbid")

    plan: str = Field(min_length=1, max_length=128)
    battery: str | None = Field(default=None, min_length=1, max_length=255)


class QueueRequest(StartRequest):
    """A plan to queue for a channel."""

    channel: int = Field(ge=1, le=1_000_000)


class Started(BaseModel):
    """The test a start made."""

    test_id: int


class Queued(BaseModel):
    """The queue entry made."""

    entry_id: int


class QueueEntry(BaseModel):
    """A queued, started or withdrawn plan."""

    id: int
    channel: int
    plan_source: str | None
    battery: str | None
    status: str
    test_id: int | None
    error: str | None


class Done(BaseModel):
    """A control action accepted."""

    ok: bool = True


class Plans(BaseModel):
    """The plan files of the station's plans folder."""

    plans: list[str]


class Setpoint(BaseModel):
    """A setpoint for a channel running an external step (docs/plans.md): ``rest``; ``cc``
    with ``current_a``; ``cv`` with ``voltage_v`` and an optional current limit ``current_a``;
    ``cp`` with ``power_w``. Currents and powers are signed, positive charging."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mode: Literal["rest", "cc", "cv", "cp"]
    current_a: float | None = Field(default=None, ge=-1e6, le=1e6)
    voltage_v: float | None = Field(default=None, ge=-1e5, le=1e5)
    power_w: float | None = Field(default=None, ge=-1e9, le=1e9)


class ExportFormat(BaseModel):
    """A format a test can be downloaded in."""

    name: str
    title: str
    suffix: str
    media_type: str
