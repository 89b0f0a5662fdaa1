"""The web app: the JSON API (its OpenAPI document is checked in as plugins/web/openapi.json),
the live WebSocket and the pages, for a serving station (``live``: read and control through its
:class:`StationControl`) or read-only over a database (``cellbench web --db``)."""

import asyncio
import inspect
import itertools
import json
import logging
import math
import pathlib
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
import orjson
import pyarrow as pa
import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.websockets import WebSocketDisconnect

from cellbench_sdk import Step, StepMode
from cellbench_sdk.control import ControlError, ControlErrorKind, StationControl
from cellbench_sdk.export import ExportFormat, Pieces
from cellbench_sdk.turns import in_turns
from cellbench_web import models, pages
from cellbench_web.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Access,
    Identity,
    Refused,
    Role,
)
from cellbench_web.data import (
    MAX_BUCKETS,
    MAX_PAGE,
    SAMPLE_COLUMNS,
    SAMPLE_INT_COLUMNS,
    SERIES_COLUMNS,
    NotFound,
    Reader,
    TestFilter,
)
from cellbench_web.live import LiveClient, LiveHub, view_json

T = TypeVar("T")
log = logging.getLogger(__name__)

StationName = Annotated[str, Path(min_length=1, max_length=255)]
TestNo = Annotated[int, Path(ge=1, le=2**62)]
ChannelNo = Annotated[int, Path(ge=1, le=1_000_000)]

#: The HTTP status of each refusal of the station.
CONTROL_STATUS = {
    ControlErrorKind.NO_SUCH_CHANNEL: 404, ControlErrorKind.NO_SUCH_PLAN: 404,
    ControlErrorKind.NO_SUCH_BATTERY: 404, ControlErrorKind.NO_SUCH_ENTRY: 404,
    ControlErrorKind.BUSY: 409, ControlErrorKind.IDLE: 409, ControlErrorKind.NOT_PAUSED: 409,
    ControlErrorKind.PAUSED: 409, ControlErrorKind.EXISTS: 409,
    ControlErrorKind.NOT_CANCELLABLE: 409, ControlErrorKind.BAD_PLAN: 422,
    ControlErrorKind.BAD_VALUE: 422, ControlErrorKind.UNAVAILABLE: 503,
    ControlErrorKind.NOT_EXTERNAL: 409, ControlErrorKind.DEVICE_ERROR: 502,
}
#: The values each setpoint mode takes (as rci ``SET``).
SETPOINT_VALUES = {"rest": (), "cc": ("current_a",), "cv": ("voltage_v", "current_a"),
                   "cp": ("power_w",)}
#: The media type of an Arrow IPC stream.
ARROW_STREAM = "application/vnd.apache.arrow.stream"
#: The header of an Arrow page that says where the next page starts.
NEXT_HEADER = "X-Next-After-Seq"
STATIC = pathlib.Path(__file__).parent / "static"
#: Error responses every route may give, for the OpenAPI document.
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Problem}, 403: {"model": models.Problem},
    404: {"model": models.Problem}, 422: {"model": models.Problem},
    503: {"model": models.Problem}}
CONTROL_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **PROBLEMS, 409: {"model": models.Problem}}


@dataclass
class Backend:
    """What the app serves: a database ``reader``, the ``control`` of a serving station (None:
    read-only), who may do what, the download ``formats``, and the live hub."""

    reader: Reader
    access: Access
    name: str
    version: str
    control: StationControl | None = None
    #: The download formats by name (:func:`cellbench_sdk.export.export_formats`).
    formats: dict[str, ExportFormat] = field(default_factory=dict)
    max_clients: int = 100
    secure_cookies: bool = False
    hub: LiveHub | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.control is not None:
            self.hub = LiveHub(self.control)


async def _in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return await asyncio.to_thread(partial(function, *args, **kwargs))
    except NotFound as err:
        raise Refused(404, "not_found", str(err)) from None
    except sa.exc.SQLAlchemyError as err:
        log.error("web: the database failed", exc_info=err)
        raise Refused(503, "unavailable", "the database failed (logged by the server)"
                      ) from None


def build_app(backend: Backend) -> FastAPI:
    """The app serving ``backend``."""
    live = backend.control is not None
    app = FastAPI(title="cellbench web API", version="1",
                  description="Stations, channels, tests, samples and control of cellbench "
                  "(docs/web.md). Tokens: `Authorization: Bearer <token>`.",
                  docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(Refused)
    async def refused(request: Request, err: Refused) -> JSONResponse:
        if err.delay_s:  # a wrong token: guessing goes slower the more it fails
            await asyncio.sleep(err.delay_s)
        headers = None if err.retry_after_s is None else {"Retry-After": str(err.retry_after_s)}
        return JSONResponse({"error": err.error, "message": err.message}, status_code=err.status,
                            headers=headers)

    @app.exception_handler(ControlError)
    async def control_refused(request: Request, err: ControlError) -> JSONResponse:
        return JSONResponse({"error": err.kind.name.lower(), "message": err.message},
                            status_code=CONTROL_STATUS[err.kind])

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": "bad_request", "message": f"{where}: {first['msg']}"},
                            status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse({"error": "http", "message": str(err.detail)},
                            status_code=err.status_code)

    def viewer(request: Request) -> Identity:
        identity = backend.access.identify(request.headers.get("authorization"),
                                           request.cookies.get(SESSION_COOKIE),
                                           request.client.host if request.client else "?")
        if identity is None:
            raise Refused(401, "unauthenticated", "authenticate: 'Authorization: Bearer "
                          "<token>', or log in at /login")
        return identity

    def operator(request: Request, identity: Annotated[Identity, Depends(viewer)]
                 ) -> Identity:
        if identity.role < Role.OPERATOR:
            raise Refused(403, "forbidden", f"{identity.label} is a viewer; this needs the "
                          "operator role")
        if identity.csrf is not None:  # a browser's cookie or an open server: no token
            sent = request.headers.get(CSRF_HEADER)
            if sent != identity.csrf:
                raise Refused(403, "csrf", f"send the page's CSRF token in {CSRF_HEADER}")
        return identity

    Viewer = Annotated[Identity, Depends(viewer)]
    Operator = Annotated[Identity, Depends(operator)]
    app.state.viewer = viewer

    reader = backend.reader

    # ---- the station and the database ----------------------------------------------------

    @app.get("/api/station", response_model=models.StationInfo, responses=PROBLEMS,
             tags=["station"])
    async def station(who: Viewer) -> dict[str, Any]:
        """The serving station (or the database served) and the caller's role."""
        count = len(backend.control.channel_numbers()) if backend.control else 0
        return {"name": backend.name, "version": backend.version, "channels": count,
                "live": live, "role": who.role.name.lower()}

    @app.get("/api/stations", response_model=list[models.StationSummary], responses=PROBLEMS,
             tags=["database"])
    async def stations(who: Viewer) -> list[dict[str, Any]]:
        """Every station with tests in the database."""
        return await _in_thread(reader.stations)

    @app.get("/api/stations/{station}/channels", response_model=list[models.ChannelStored],
             responses=PROBLEMS, tags=["database"])
    async def stored_channels(station: StationName, who: Viewer) -> list[dict[str, Any]]:
        """A station's channels as stored (as last synced) with the newest test of each."""
        return await _in_thread(reader.channels, station)

    @app.get("/api/stations/{station}/batteries", response_model=list[models.Battery],
             responses=PROBLEMS, tags=["database"])
    async def stored_batteries(station: StationName, who: Viewer) -> list[dict[str, Any]]:
        """The batteries registered at a station."""
        return await _in_thread(reader.batteries, station)

    @app.get("/api/stations/{station}/events", response_model=list[models.Event],
             responses=PROBLEMS, tags=["database"])
    async def station_events(
        station: StationName, who: Viewer,
        kind: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        """A station's newest events (of ``kind``: ``alarm``, ``control``, ...), oldest
        first."""
        return await _in_thread(reader.events, station, kind=kind, limit=limit)

    # ---- tests ---------------------------------------------------------------------------

    @app.get("/api/tests", response_model=list[models.TestSummary], responses=PROBLEMS,
             tags=["tests"])
    async def tests(
        who: Viewer,
        station: Annotated[str | None, Query(max_length=255)] = None,
        battery: Annotated[str | None, Query(max_length=255)] = None,
        status: Literal["running", "finished", "stopped", "failed", "interrupted"]
        | None = None,
        since_unix_s: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        until_unix_s: Annotated[float | None, Query(allow_inf_nan=False)] = None,
        search: Annotated[str | None, Query(max_length=255)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> list[dict[str, Any]]:
        """Tests, newest first, narrowed by each filter given; ``search`` matches the test's
        or plan's name."""
        return await _in_thread(reader.tests, TestFilter(
            station, battery, status, since_unix_s, until_unix_s, search, limit, offset))

    TestPath = "/api/stations/{station}/tests/{test_id}"

    @app.get(TestPath, response_model=models.TestDetail, responses=PROBLEMS, tags=["tests"])
    async def test(station: StationName, test_id: TestNo, who: Viewer) -> dict[str, Any]:
        """One test with its plan."""
        return await _in_thread(reader.test, station, test_id)

    @app.get(TestPath + "/cycles", response_model=list[models.Cycle], responses=PROBLEMS,
             tags=["tests"])
    async def cycles(station: StationName, test_id: TestNo, who: Viewer) -> list[dict[str, Any]]:
        """The per-cycle table: charge and discharge capacity and energy, efficiencies, end
        reasons."""
        return await _in_thread(reader.cycles, station, test_id)

    @app.get(TestPath + "/steps", response_model=list[models.Step], responses=PROBLEMS,
             tags=["tests"])
    async def steps(station: StationName, test_id: TestNo, who: Viewer) -> list[dict[str, Any]]:
        """The finished steps."""
        return await _in_thread(reader.steps, station, test_id)

    @app.get(TestPath + "/events", response_model=list[models.Event], responses=PROBLEMS,
             tags=["tests"])
    async def events(station: StationName, test_id: TestNo, who: Viewer) -> list[dict[str, Any]]:
        """The test's events, in order."""
        return await _in_thread(reader.events, station, test_id)

    Columns = Annotated[str | None, Query(description="comma-separated sample columns; "
                                          "default: all", max_length=1000)]

    def sample_columns(text: str | None, allowed: tuple[str, ...]) -> list[str]:
        if not text:
            return list(allowed)
        names = [n.strip() for n in text.split(",")]
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise Refused(422, "bad_request", f"columns: no column {unknown[0][:40]!r}; "
                          f"choose from {', '.join(allowed)}")
        return names

    @app.get(TestPath + "/samples", response_model=models.SamplePage, responses={
        **PROBLEMS, 200: {"content": {ARROW_STREAM: {}}, "headers": {NEXT_HEADER: {
            "description": "with Arrow: the after_seq of the next page (absent at the end)",
            "schema": {"type": "integer"}}}}}, tags=["samples"])
    async def samples(request: Request, station: StationName, test_id: TestNo, who: Viewer,
                      columns: Columns = None,
                      after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
                      limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 10_000,
                      form: Annotated[Literal["json", "arrow"] | None, Query(
                          alias="format", description="arrow: an Arrow IPC stream (also "
                          f"chosen by 'Accept: {ARROW_STREAM}'); default json")] = None,
                      ) -> Any:
        """A page of samples after ``after_seq``; continue with ``next_after_seq`` (with
        Arrow: the header ``X-Next-After-Seq``)."""
        names = sample_columns(columns, SAMPLE_COLUMNS)
        fetch = names if "seq" in names else ["seq", *names]
        rows = await _in_thread(reader.samples, station, test_id, after_seq=after_seq,
                                limit=limit, columns=fetch)
        following = rows[-1][0] if len(rows) == limit else None
        if fetch is not names:
            rows = [row[1:] for row in rows]
        if form == "arrow" or (form is None and ARROW_STREAM in
                               request.headers.get("accept", "")):
            body = await asyncio.to_thread(lambda: b"".join(arrow_stream(names, [rows])))
            return Response(body, media_type=ARROW_STREAM, headers={} if following is None
                            else {NEXT_HEADER: str(following)})
        return {"columns": names, "rows": [[_finite(x) for x in row] for row in rows],
                "next_after_seq": following}

    @app.get(TestPath + "/samples.ndjson", responses={
        **PROBLEMS, 200: {"content": {"application/x-ndjson": {}},
                          "description": "one JSON object per line: first the columns, "
                                         "then one array per sample"}},
             tags=["samples"])
    async def samples_stream(station: StationName, test_id: TestNo, who: Viewer,
                             columns: Columns = None,
                             after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0
                             ) -> StreamingResponse:
        """Every sample after ``after_seq``, streamed as NDJSON: a first line
        ``{"columns": [...]}``, then one JSON array per sample."""
        names = sample_columns(columns, SAMPLE_COLUMNS)
        await _in_thread(reader.test, station, test_id)  # a 404 before the stream starts

        def lines() -> Iterator[bytes]:
            yield (json.dumps({"columns": names}) + "\n").encode()
            for chunk in reader.sample_chunks(station, test_id, after_seq=after_seq,
                                              columns=names):
                # One encoding per chunk, cut into lines: rows hold only numbers and nulls,
                # so "],[" occurs only between rows.
                yield orjson.dumps(chunk)[1:-1].replace(b"],[", b"]\n[") + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.get(TestPath + "/samples.arrow", responses={
        **PROBLEMS, 200: {"content": {ARROW_STREAM: {}},
                          "description": "an Arrow IPC stream: a record batch per chunk"}},
             tags=["samples"])
    async def samples_arrow(station: StationName, test_id: TestNo, who: Viewer,
                            columns: Columns = None,
                            after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0
                            ) -> StreamingResponse:
        """Every sample after ``after_seq``, streamed as an Arrow IPC stream (the columns
        typed: int64 counters, float64 values with nulls), a record batch per chunk of
        rows."""
        names = sample_columns(columns, SAMPLE_COLUMNS)
        await _in_thread(reader.test, station, test_id)  # a 404 before the stream starts
        chunks = reader.sample_chunks(station, test_id, after_seq=after_seq, columns=names)
        return StreamingResponse(arrow_stream(names, chunks), media_type=ARROW_STREAM)

    @app.get("/api/export-formats", response_model=list[models.ExportFormat],
             responses=PROBLEMS, tags=["tests"])
    async def formats(who: Viewer) -> list[dict[str, Any]]:
        """The formats a test can be downloaded in (none without the export plugin)."""
        return [{"name": name, "title": form.title, "suffix": form.suffix,
                 "media_type": form.media_type} for name, form in sorted(backend.formats.items())]

    @app.get(TestPath + "/download/{format_name}", responses={
        **PROBLEMS, 200: {"content": {"*/*": {}},
                          "description": "the test's file, streamed, of the format's media "
                                         "type (/api/export-formats)"}},
             tags=["tests"])
    async def download(station: StationName, test_id: TestNo,
                       format_name: Annotated[str, Path(max_length=64)], who: Viewer
                       ) -> StreamingResponse:
        """The whole test as a file of an export format (``/api/export-formats``), streamed
        as it is read."""
        form = backend.formats.get(format_name)
        if form is None:
            if not backend.formats:
                raise Refused(404, "no_export", "downloads need the cellbench-export plugin, "
                              "which is not installed on this server")
            raise Refused(404, "no_such_format", f"no export format {format_name[:64]!r} "
                          f"(there are {', '.join(sorted(backend.formats))})")
        test = await _in_thread(reader.test_record, station, test_id)
        aux = await _in_thread(reader.aux_names, station, test_id)
        pieces = form.encode(test, aux, reader.export_chunks(station, test_id))
        try:  # the first piece here: a test the format cannot hold is refused, not cut off
            first = await _in_thread(next, pieces, b"")
        except ValueError as err:
            raise Refused(422, "bad_value", str(err)) from None
        name = re.sub(r"[^A-Za-z0-9._-]", "_", station) + f"-{test_id}{form.suffix}"
        return StreamingResponse(
            itertools.chain([first], pieces), media_type=form.media_type,
            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get(TestPath + "/series", response_model=models.Series, responses=PROBLEMS,
             tags=["samples"])
    async def series(station: StationName, test_id: TestNo, who: Viewer, columns: Columns = None,
                     start_s: Annotated[float | None, Query(allow_inf_nan=False)] = None,
                     end_s: Annotated[float | None, Query(allow_inf_nan=False)] = None,
                     buckets: Annotated[int, Query(ge=1, le=MAX_BUCKETS)] = 1000
                     ) -> dict[str, Any]:
        """Columns between test times ``start_s`` and ``end_s`` downsampled on the server:
        min and max per time bucket, and where each step began."""
        names = sample_columns(columns, SERIES_COLUMNS)
        return await _in_thread(reader.series, station, test_id, names, start_s=start_s,
                                end_s=end_s, buckets=buckets)

    if backend.control is not None:
        _control_routes(app, backend, backend.control, Viewer, Operator)
    pages.add_routes(app, backend)
    return app


def arrow_stream(names: list[str], chunks: Iterable[list[tuple[Any, ...]]]
                 ) -> Iterator[bytes]:
    """Rows of sample columns ``names`` as an Arrow IPC stream, a record batch per chunk
    (NULL values as nulls)."""
    schema = pa.schema([pa.field(n, pa.int64() if n in SAMPLE_INT_COLUMNS else pa.float64())
                        for n in names])
    sink = Pieces()
    with pa.ipc.new_stream(sink, schema) as writer:
        yield sink.take()
        for rows in chunks:
            if not rows:
                continue
            # One numpy conversion of the chunk (NULL becomes NaN, then a null): building
            # Arrow arrays from the rows' Python values column by column is 20 times slower.
            table = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
            arrays = [_arrow_column(table[:, k], f.type) for k, f in enumerate(schema)]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            yield sink.take()
    yield sink.take()


def _arrow_column(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    """``values`` as an Arrow array of ``kind`` (int64 or float64, NaN as null), built from
    its buffers: ``pa.array`` of a numpy array would import pandas (a second, once)."""
    if kind == pa.int64():
        return pa.Array.from_buffers(kind, len(values),
                                     [None, pa.py_buffer(values.astype(np.int64))])
    missing = np.isnan(values)
    nulls = int(missing.sum())
    validity = pa.py_buffer(np.packbits(~missing, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(kind, len(values),
                                 [validity, pa.py_buffer(np.ascontiguousarray(values))],
                                 null_count=nulls)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _control_routes(app: FastAPI, backend: Backend, control: StationControl, Viewer: Any,
                    Operator: Any) -> None:
    """The routes of a serving station: live channels, control, queue, batteries, live
    WebSocket."""
    @app.get("/api/channels", response_model=list[models.ChannelLive], responses=PROBLEMS,
             tags=["channels"])
    async def channels(who: Viewer) -> Response:
        """Every channel's live state."""
        # Encoded here, in bounded pieces, not validated and encoded by FastAPI in one go:
        # a station with 20,000 channels would hold the runner's tick for most of a second.
        made = in_turns(control.channel_numbers(),
                        lambda n: orjson.dumps(view_json(control.channel(n))))
        parts = made if isinstance(made, list) else await made
        return Response(b"[" + b",".join(parts) + b"]", media_type="application/json")

    @app.get("/api/channels/{channel}", response_model=models.ChannelLive,
             responses=CONTROL_PROBLEMS, tags=["channels"])
    async def channel(channel: ChannelNo, who: Viewer) -> dict[str, Any]:
        """A channel's live state."""
        return view_json(control.channel(channel))

    async def act(action: str, channel: int, who: Identity) -> dict[str, Any]:
        getattr(control, action)(channel, identity=who.label)
        return {"ok": True}

    for action, path, doc in (
            ("stop", "stop", "Stop the test: output off, it ends as stopped."),
            ("pause", "pause", "Pause: output off, the step's time and conditions held."),
            ("resume", "resume", "Go on with the paused step."),
            ("next_step", "next", "End the step and go on with the plan.")):
        async def handle(channel: ChannelNo, who: Operator, action: str = action
                         ) -> dict[str, Any]:
            return await act(action, channel, who)
        handle.__doc__ = doc
        app.post(f"/api/channels/{{channel}}/{path}", response_model=models.Done,
                 responses=CONTROL_PROBLEMS, tags=["control"], name=f"{path}_channel"
                 )(_without_action(handle))

    @app.post("/api/channels/{channel}/start", response_model=models.Started,
              responses=CONTROL_PROBLEMS, tags=["control"])
    async def start(channel: ChannelNo, request: models.StartRequest, who: Operator
                    ) -> dict[str, Any]:
        """Start a plan of the plans folder on the channel (checked first: a bad plan is
        refused with its file, line and field, and nothing starts)."""
        test_id = await control.start(channel, request.plan, request.battery,
                                      identity=who.label)
        return {"test_id": test_id}

    @app.post("/api/channels/{channel}/setpoint", response_model=models.Setpoint,
              responses={**CONTROL_PROBLEMS, 502: {"model": models.Problem}},
              tags=["control"])
    async def setpoint(channel: ChannelNo, request: models.Setpoint, who: Operator
                       ) -> dict[str, Any]:
        """In an external step: set the channel now (as rci ``SET``), checked against the
        channel's ranges and the test's safety limits first (422 ``bad_value``: nothing
        changed); restarts the step's watchdog. Answers the setpoint applied."""
        takes = SETPOINT_VALUES[request.mode]
        values = request.model_dump(exclude={"mode"}, exclude_none=True)
        extra = sorted(set(values) - set(takes))
        if extra:
            raise Refused(422, "bad_value", f"a {request.mode} setpoint takes "
                          f"{', '.join(takes) or 'no values'}, not {extra[0]}")
        try:
            step = Step(StepMode(request.mode), **values)
        except ValueError as err:  # a value the mode needs is missing, or a bad CV limit
            raise Refused(422, "bad_value", str(err)) from None
        applied = await control.set_setpoint(channel, step, identity=who.label)
        return {"mode": applied.mode.value, "current_a": applied.current_a,
                "voltage_v": applied.voltage_v, "power_w": applied.power_w}

    @app.post("/api/channels/{channel}/keepalive", response_model=models.Done,
              responses=CONTROL_PROBLEMS, tags=["control"])
    async def keepalive(channel: ChannelNo, who: Operator) -> dict[str, Any]:
        """In an external step: restart the watchdog, the setpoint unchanged (as rci
        ``KEEPALIVE``)."""
        control.keepalive(channel, identity=who.label)
        return {"ok": True}

    @app.get("/api/plans", response_model=models.Plans, responses=PROBLEMS, tags=["control"])
    async def plans(who: Viewer) -> dict[str, Any]:
        """The plan files a start or queue may name."""
        found = await asyncio.to_thread(lambda: sorted(
            p.name for p in control.plans_dir.iterdir()
            if p.is_file() and p.suffix in (".yaml", ".yml"))
            if control.plans_dir.is_dir() else [])
        return {"plans": found}

    @app.get("/api/queue", response_model=list[models.QueueEntry], responses=CONTROL_PROBLEMS,
             tags=["queue"])
    async def queue(who: Viewer) -> list[dict[str, Any]]:
        """Every queue entry, oldest first."""
        return [{"id": e.id, "channel": e.channel, "plan_source": e.plan_source,
                 "battery": e.battery, "status": e.status.value, "test_id": e.test_id,
                 "error": e.error} for e in await control.queue_entries()]

    @app.post("/api/queue", response_model=models.Queued, responses=CONTROL_PROBLEMS,
              tags=["queue"])
    async def queue_add(request: models.QueueRequest, who: Operator) -> dict[str, Any]:
        """Queue a plan for a channel (checked first)."""
        entry = await control.queue_add(request.channel, request.plan, request.battery,
                                        identity=who.label)
        return {"entry_id": entry}

    @app.delete("/api/queue/{entry_id}", response_model=models.Done,
                responses=CONTROL_PROBLEMS, tags=["queue"])
    async def queue_cancel(entry_id: TestNo, who: Operator
                           ) -> dict[str, Any]:
        """Withdraw a queued entry."""
        await control.queue_cancel(entry_id, identity=who.label)
        return {"ok": True}

    @app.get("/api/batteries", response_model=list[models.Battery],
             responses=CONTROL_PROBLEMS, tags=["batteries"])
    async def batteries(who: Viewer) -> list[dict[str, Any]]:
        """Every registered battery."""
        return [_battery(b) for b in await control.batteries()]

    @app.post("/api/batteries", response_model=models.Done, responses=CONTROL_PROBLEMS,
              tags=["batteries"])
    async def battery_add(battery: models.NewBattery, who: Operator) -> dict[str, Any]:
        """Register a battery."""
        limits = battery.model_dump(exclude={"name", "chemistry", "nominal_capacity_ah"},
                                    exclude_none=True)
        await control.add_battery(battery.name, battery.chemistry,
                                  battery.nominal_capacity_ah, identity=who.label, **limits)
        return {"ok": True}

    @app.patch("/api/batteries/{name}", response_model=models.Battery,
               responses=CONTROL_PROBLEMS, tags=["batteries"])
    async def battery_edit(name: Annotated[str, Path(min_length=1, max_length=255)],
                           changes: models.BatteryChanges, who: Operator) -> dict[str, Any]:
        """Change a registered battery: the values given (null clears a limit; chemistry,
        capacity and metadata cannot be cleared), by the rules of registering it."""
        given = changes.model_dump(exclude_unset=True)
        for required in ("chemistry", "nominal_capacity_ah", "metadata"):
            if required in given and given[required] is None:
                raise Refused(422, "bad_value", f"{required}: a battery must have one")
        return _battery(await control.edit_battery(name, given, identity=who.label))

    @app.websocket("/api/live")
    async def live(websocket: WebSocket, channels: str | None = None) -> None:
        """Live samples and channel states (docs/web.md has the messages)."""
        hub = backend.hub
        assert hub is not None
        refusal = _live_refusal(websocket, backend, control, channels)
        # Accepted either way: a refusal is a close with its code and reason, which a browser
        # shows, where a refused handshake would be a bare HTTP 403.
        await websocket.accept()
        if isinstance(refusal, tuple):
            await websocket.close(code=refusal[0], reason=refusal[1])
            return
        wanted = refusal
        client = LiveClient(wanted, websocket.send_text)
        hub.add(client)
        sender = asyncio.create_task(client.run())
        receiver = asyncio.create_task(_drain(websocket))
        try:  # until the client goes (receiver) or cannot be sent to (sender)
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hub.remove(client)
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)


def _live_refusal(websocket: WebSocket, backend: Backend, control: StationControl,
                  channels: str | None) -> tuple[int, str] | frozenset[int] | None:
    """Why a live client is refused (close code, reason), or the channels it watches (None:
    all)."""
    hub = backend.hub
    assert hub is not None
    try:
        identity = backend.access.identify(
            websocket.headers.get("authorization"), websocket.cookies.get(SESSION_COOKIE),
            websocket.client.host if websocket.client else "?")
    except Refused as err:
        return 1008, err.message
    origin = websocket.headers.get("origin")
    if identity is None:
        return 1008, "authenticate first"
    if origin is not None and not _same_origin(origin, websocket.headers.get("host")):
        return 1008, "connect from this server's own pages"
    try:
        wanted = None if not channels else frozenset(int(c) for c in channels.split(","))
    except ValueError:
        return 1008, "channels: comma-separated numbers"
    known = set(control.channel_numbers())
    if wanted is not None and not wanted <= known:
        return 1008, f"no channel {min(wanted - known)}"
    if len(hub.clients) >= backend.max_clients:
        return 1013, f"at most {backend.max_clients} clients"
    return wanted


def _without_action(handler: Callable[..., Awaitable[dict[str, Any]]]
                    ) -> Callable[..., Awaitable[dict[str, Any]]]:
    """``handler`` with its bound ``action`` default hidden from the API's parameters."""
    signature = inspect.signature(handler)
    handler.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for n, p in signature.parameters.items() if n != "action"])
    return handler


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes."""
    try:
        while True:
            await websocket.receive_text()
    except (WebSocketDisconnect, RuntimeError):
        return


def _same_origin(origin: str, host: str | None) -> bool:
    return host is not None and origin.split("://", 1)[-1] == host


def _battery(b: Any) -> dict[str, Any]:
    return {"name": b.name, "chemistry": b.chemistry,
            "nominal_capacity_ah": b.nominal_capacity_ah,
            "nominal_voltage_v": b.nominal_voltage_v, "voltage_max_v": b.voltage_max_v,
            "voltage_min_v": b.voltage_min_v, "current_max_charge_a": b.current_max_charge_a,
            "current_max_discharge_a": b.current_max_discharge_a,
            "temperature_max_c": b.temperature_max_c, "metadata": dict(b.metadata),
            "created_unix_s": b.created_unix_s}
