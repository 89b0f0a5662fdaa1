"""The pages: server-rendered HTML that small scripts (static/app.js) keep live over the
WebSocket and draw plots in with uPlot (vendored in static/, MIT, no CDN: labs are often
offline). Page logins and their CSRF tokens are made here."""

from __future__ import annotations

import asyncio
import datetime
import math
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cellbench_web.auth import SESSION_COOKIE, Identity, Refused, Role
from cellbench_web.data import NotFound, TestFilter

if TYPE_CHECKING:
    from cellbench_web.app import Backend

#: The largest login form accepted (bytes).
MAX_FORM = 4096
STATUSES = ("running", "finished", "stopped", "failed", "interrupted")
#: The battery form's fields (the API's names), their labels and input types.
BATTERY_FIELDS = (
    ("chemistry", "chemistry", "text"), ("nominal_capacity_ah", "capacity / Ah", "number"),
    ("nominal_voltage_v", "nominal / V", "number"), ("voltage_max_v", "U max / V", "number"),
    ("voltage_min_v", "U min / V", "number"),
    ("current_max_charge_a", "charge I max / A", "number"),
    ("current_max_discharge_a", "discharge I max / A", "number"),
    ("temperature_max_c", "T max / °C", "number"))


def _time(unix_s: float | None) -> str:
    if unix_s is None:
        return ""
    return datetime.datetime.fromtimestamp(unix_s, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _page(title: str, body: str, identity: Identity | None, backend: Backend,
          scripts: tuple[str, ...] = ()) -> HTMLResponse:
    who = ""
    if identity is not None:
        who = (f'<span class="who">{escape(identity.label)} ({identity.role.name.lower()})'
               '</span>')
        if not backend.access.open:
            who += ('<form method="post" action="/logout" class="inline">'
                    '<button>log out</button></form>')
    csrf = identity.csrf if identity is not None and identity.csrf else ""
    role = identity.role.name.lower() if identity is not None else ""
    tags = "".join(f'<script src="/static/{name}"></script>' for name in scripts)
    return HTMLResponse(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{escape(csrf)}"><meta name="role" content="{role}">
<title>{escape(title)} · cellbench</title>
<link rel="stylesheet" href="/static/uPlot.min.css"><link rel="stylesheet" href="/static/web.css">
</head><body>
<header><a href="/" class="brand">cellbench · {escape(backend.name)}</a>
<nav><a href="/">{"station" if backend.control else "stations"}</a> <a href="/tests">tests</a>
<a href="/api/docs">API</a></nav>{who}</header>
<main>{body}</main>{tags}<script src="/static/app.js"></script></body></html>""",
        headers={"Content-Security-Policy": "default-src 'self'; style-src 'self' "
                 "'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:",
                 "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"})


def add_routes(app: FastAPI, backend: Backend) -> None:
    """Add the pages and the login to ``app``."""
    identify = app.state.viewer
    reader = backend.reader

    def who(request: Request) -> Identity | None:
        try:
            result: Identity = identify(request)
        except Refused:  # not authenticated: the page sends to the login
            return None
        return result

    def login_first(request: Request) -> RedirectResponse:
        return RedirectResponse("/login?" + urlencode({"next": request.url.path}), 303)

    @app.get("/", include_in_schema=False, response_model=None)
    async def home(request: Request) -> Response:
        identity = who(request)
        if identity is None:
            return login_first(request)
        if backend.control is None:
            return await _stations_page(backend, identity)
        return _station_page(backend, identity)

    @app.get("/tests", include_in_schema=False, response_model=None)
    async def tests_page(request: Request) -> Response:
        identity = who(request)
        if identity is None:
            return login_first(request)
        q = request.query_params
        try:
            since = _day(q.get("since"))
            until = _day(q.get("until"))
            until = None if until is None else until + 86400
        except ValueError as err:
            return _page("tests", f'<p class="error">{escape(str(err))}</p>', identity,
                         backend)
        where = TestFilter(q.get("station") or None, q.get("battery") or None,
                           q.get("status") if q.get("status") in STATUSES else None,
                           since, until, (q.get("search") or "")[:255] or None, 200, 0)
        found = await asyncio.to_thread(reader.tests, where)
        return _page("tests", _tests_body(found, dict(q)), identity, backend,
                     ("uPlot.iife.min.js",))

    @app.get("/stations/{station}/tests/{test_id}", include_in_schema=False,
             response_model=None)
    async def test_page(request: Request, station: str, test_id: int) -> Response:
        identity = who(request)
        if identity is None:
            return login_first(request)
        try:
            test = await asyncio.to_thread(reader.test, station, test_id)
            cycles = await asyncio.to_thread(reader.cycles, station, test_id)
            events = await asyncio.to_thread(reader.events, station, test_id)
        except NotFound as err:
            return _page("not found", f'<p class="error">{escape(str(err))}</p>', identity,
                         backend)
        return _page(f"test {test_id}", _test_body(test, cycles, events, backend), identity,
                     backend,
                     ("uPlot.iife.min.js",))

    @app.get("/login", include_in_schema=False)
    async def login_form(request: Request) -> HTMLResponse:
        return _login_page(backend, request.query_params.get("next", "/"), "")

    @app.post("/login", include_in_schema=False, response_model=None)
    async def login(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            return _login_page(backend, "/", "log in from this server's own page", 403)
        body = await request.body()
        if len(body) > MAX_FORM:
            return _login_page(backend, "/", "the form is too large", 413)
        form = parse_qs(body.decode("utf-8", "replace"))
        token = form.get("token", [""])[0].strip()
        target = form.get("next", ["/"])[0]
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # only this server's pages: no open redirect
        try:
            session, _ = backend.access.login(token, request.client.host if request.client
                                              else "?")
        except Refused as err:
            await asyncio.sleep(err.delay_s)  # a wrong token: guessing goes slower
            return _login_page(backend, target, err.message, err.status)
        response = RedirectResponse(target, 303)
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict",
                            secure=backend.secure_cookies,
                            max_age=int(backend.access.session_lifetime_s))
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> RedirectResponse:
        backend.access.logout(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response


def _day(text: str | None) -> float | None:
    if not text:
        return None
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"date {text[:20]!r}: expected YYYY-MM-DD") from None
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp()


def _login_page(backend: Backend, target: str, problem: str, status: int = 200
                ) -> HTMLResponse:
    error = f'<p class="error">{escape(problem)}</p>' if problem else ""
    page = _page("log in", f"""<h1>Log in</h1>{error}
<form method="post" action="/login" class="login">
<input type="hidden" name="next" value="{escape(target)}">
<label>token <input type="password" name="token" autocomplete="current-password" required>
</label><button>log in</button></form>""", None, backend)
    page.status_code = status
    return page


def _station_page(backend: Backend, identity: Identity) -> HTMLResponse:
    control = backend.control
    assert control is not None
    rows = []
    for view in control.channels(control.channel_numbers()):
        rows.append(f'<tr data-channel="{view.number}" class="{view.state.value}">'
                    f'<td>{view.number}</td><td class="state">{view.state.value}</td>'
                    f'<td class="test">{_test_link(backend.name, view.test_id)}</td>'
                    f'<td class="battery">{escape(view.battery or "")}</td>'
                    f'<td class="chamber">{escape(view.chamber or "")}</td>'
                    f'<td class="step">{view.step_no} {escape(view.step_text)}</td>'
                    f'<td class="cycle">{view.cycle}</td>'
                    f'<td class="v">{_num(view.voltage_v, 5)}</td>'
                    f'<td class="i">{_num(view.current_a, 4)}</td>'
                    f'<td class="t">{_num(view.temperature_c, 3)}</td>'
                    f'<td class="actions"></td></tr>')
    operator = identity.role >= Role.OPERATOR
    plan_fields = """<label>channel <input name="channel" type="number" min="1" required></label>
<label>plan <select name="plan" class="plans"></select></label>
<label>battery <input name="battery" placeholder="(none)"></label>"""
    start = (f"""<form id="start" class="card"><h2>Start a plan</h2>{plan_fields}
<button>start</button><p class="error" id="start-error"></p></form>
<form id="queue-form" class="card"><h2>Queue a plan</h2>{plan_fields}
<button>queue</button><p class="error" id="queue-error"></p></form>""" if operator else "")
    # The registry's rules check the values (the server's error names the field).
    fields = "".join(
        f'<label>{label} <input name="{name}" type="{kind}" step="any"></label>'
        for name, label, kind in BATTERY_FIELDS)
    battery_form = (f"""<form id="battery-form" class="card"><h2 id="battery-title">Register a
battery</h2><label>name <input name="name" required></label>{fields}
<button id="battery-save">register</button> <button type="button" id="battery-new">new</button>
<p class="error" id="battery-error"></p></form>""" if operator else "")
    return _page("station", f"""<h1>{escape(backend.name)}</h1>
<div class="filters"><label>state <select id="state-filter"><option value="">all</option>
<option>idle</option><option>running</option><option>paused</option></select></label>
<label>battery <input id="battery-filter" list="battery-names" placeholder="any"></label>
<label>chamber <input id="chamber-filter" placeholder="any"></label>
<label>search <input id="search" placeholder="test, step"></label>
<span id="live-status">connecting…</span></div>
<table id="channels" class="grid"><thead><tr><th>ch</th><th>state</th><th>test</th>
<th>battery</th><th>chamber</th>
<th>step</th><th>cycle</th><th>U / V</th><th>I / A</th><th>T / °C</th><th></th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
{start}
<section class="card"><h2>Channel <span id="plot-channel">–</span></h2>
<div id="live-plot"></div></section>
<section class="card"><h2>Queue</h2><table class="grid" id="queue"><thead><tr><th>entry</th>
<th>channel</th><th>plan</th><th>battery</th><th>status</th><th>test</th><th></th></tr>
</thead><tbody></tbody></table></section>
<section class="card"><h2>Batteries</h2><datalist id="battery-names"></datalist>
<table class="grid" id="batteries"><thead><tr><th>name</th>{"".join(
        f"<th>{label}</th>" for _, label, _ in BATTERY_FIELDS)}<th></th></tr></thead>
<tbody></tbody></table></section>
{battery_form}""", identity, backend, ("uPlot.iife.min.js",))


def _test_link(station: str, test_id: int | None) -> str:
    if test_id is None:
        return ""
    return f'<a href="/stations/{escape(quote(station, safe=""))}/tests/{test_id}">{test_id}</a>'


async def _stations_page(backend: Backend, identity: Identity) -> HTMLResponse:
    reader = backend.reader
    sections = []
    for station in await asyncio.to_thread(reader.stations):
        name = station["name"]
        channels = await asyncio.to_thread(reader.channels, name)
        rows = "".join(
            f'<tr><td>{escape(c["name"])}</td><td>{escape(c["driver"])}</td>'
            f'<td>{_test_link(name, c["test_id"])}</td><td>{escape(c["test_name"] or "")}</td>'
            f'<td>{escape(c["status"] or "")}</td><td>{_time(c["start_unix_s"])}</td></tr>'
            for c in channels)
        sections.append(f"""<section class="card station" data-station="{escape(name)}">
<h2>{escape(name)}</h2><p>{station["tests"]} tests, the newest started
{_time(station["last_start_unix_s"])}</p><table class="grid"><thead><tr><th>channel</th>
<th>driver</th><th>test</th><th>name</th><th>status</th><th>started</th></tr></thead>
<tbody>{rows}</tbody></table></section>""")
    body = "".join(sections) or "<p>No tests in this database yet.</p>"
    return _page("stations", f"<h1>Stations</h1>{body}", identity, backend)


def _tests_body(found: list[dict[str, Any]], query: dict[str, str]) -> str:
    def value(name: str) -> str:
        return escape(query.get(name, ""))

    options = "".join(f'<option{" selected" if query.get("status") == s else ""}>{s}</option>'
                      for s in STATUSES)
    rows = "".join(
        f'<tr><td><input type="checkbox" class="compare" value="{escape(t["station"])}/'
        f'{t["id"]}"></td><td>{escape(t["station"])}</td><td>{_test_link(t["station"], t["id"])}'
        f'</td><td>{escape(t["name"])}</td><td>{escape(t["channel"] or "")}</td>'
        f'<td>{escape(t["battery"] or "")}</td><td>{escape(t["status"])}</td>'
        f'<td>{_time(t["start_unix_s"])}</td><td>{_time(t["end_unix_s"])}</td></tr>'
        for t in found)
    return f"""<h1>Tests</h1>
<form method="get" action="/tests" class="filters">
<label>station <input name="station" value="{value("station")}"></label>
<label>battery <input name="battery" value="{value("battery")}"></label>
<label>status <select name="status"><option value="">any</option>{options}</select></label>
<label>from <input name="since" type="date" value="{value("since")}"></label>
<label>to <input name="until" type="date" value="{value("until")}"></label>
<label>search <input name="search" value="{value("search")}"></label>
<button>filter</button></form>
<table class="grid" id="tests"><thead><tr><th></th><th>station</th><th>test</th><th>name</th>
<th>channel</th><th>battery</th><th>status</th><th>started</th><th>ended</th></tr></thead>
<tbody>{rows}</tbody></table>
<p><button id="compare">compare the ticked tests' voltage</button></p>
<div id="compare-plot"></div>"""


def _test_body(test: dict[str, Any], cycles: list[dict[str, Any]],
               events: list[dict[str, Any]], backend: Backend) -> str:
    station, test_id = escape(test["station"]), test["id"]
    cycle_rows = "".join(
        f'<tr><td>{c["cycle"]}</td><td>{_num(c["charge_ah"])}</td>'
        f'<td>{_num(c["discharge_ah"])}</td><td>{_num(c["charge_wh"])}</td>'
        f'<td>{_num(c["discharge_wh"])}</td><td>{_num(c["coulombic_efficiency"])}</td>'
        f'<td>{_num(c["energy_efficiency"])}</td><td>{escape(c["end_reasons"] or "")}</td></tr>'
        for c in cycles)
    event_rows = "".join(
        f'<tr class="{escape(e["kind"])}"><td>{_time(e["unix_time_s"])}</td>'
        f'<td>{escape(e["kind"])}</td><td>{escape(e["message"])}</td></tr>' for e in events)
    base = f"/api/stations/{escape(quote(test['station'], safe=''))}/tests/{test_id}"
    # Without the export plugin there is nothing to offer (the API says why: 404 no_export).
    files = "".join(f'<a href="{base}/download/{escape(name)}" download>'
                    f'{escape(form.title)}</a> ' for name, form in sorted(backend.formats.items()))
    return f"""<h1>Test {test_id}: {escape(test["name"])}</h1>
<p class="meta">station {station} · channel {escape(test["channel"] or "")} · battery
{escape(test["battery"] or "–")} · plan {escape(test["plan_name"])} ·
<span class="status">{escape(test["status"])}</span>
{escape(test["end_reason"] or "")} · started {_time(test["start_unix_s"])}</p>
<p class="downloads">Download: {files}<a href="{base}/samples.ndjson">samples (NDJSON)</a>
<a href="{base}/samples.arrow">samples (Arrow)</a></p>
<section class="card"><h2>Voltage, current, temperature</h2>
<p class="hint">drag to zoom (the server sends min/max per pixel column); double-click to
zoom out</p><div id="test-plot" data-series="{base}/series"></div></section>
<section class="card"><h2>Cycles</h2><div id="fade-plot"></div>
<table class="grid" id="cycles" data-cycles="{base}/cycles"><thead><tr><th>cycle</th>
<th>charge / Ah</th><th>discharge / Ah</th><th>charge / Wh</th><th>discharge / Wh</th>
<th>coulombic eff.</th><th>energy eff.</th><th>end reasons</th></tr></thead>
<tbody>{cycle_rows}</tbody></table></section>
<section class="card"><h2>Events</h2><table class="grid" id="events"><tbody>{event_rows}
</tbody></table></section>"""
