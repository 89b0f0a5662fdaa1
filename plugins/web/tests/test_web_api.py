"""The HTTP API and the live WebSocket against a real ``cellbench serve`` on loopback: reading,
control with roles, control events with the token's label, paging and streaming samples,
downsampled series; a schemathesis fuzz of the served OpenAPI document."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

PATIENCE_S = 60.0
#: The checked-in OpenAPI document (test_openapi.py keeps it current).
OPENAPI = Path(__file__).parents[1] / "openapi.json"
#: Fuzz cases per operation: enough to reach every parameter's edges, few enough to be fast.
FUZZ_EXAMPLES = 8


def test_control_with_roles_and_events(web_station: Callable[..., Any],
                                       wait_until: Any) -> None:
    station = web_station()
    op, view = station.headers(station.operator), station.headers(station.viewer)
    with httpx.Client(base_url=station.url, timeout=PATIENCE_S) as http:
        refused = http.get("/api/channels")
        assert refused.status_code == 401 and refused.json()["error"] == "unauthenticated"
        assert http.get("/api/station", headers=view).json()["role"] == "viewer"
        info = http.get("/api/station", headers=op).json()
        assert (info["name"], info["channels"], info["live"], info["role"]) == (
            "webtest", 4, True, "operator")
        assert http.get("/api/plans", headers=view).json() == {
            "plans": ["bad.yaml", "external.yaml", "long.yaml", "three-cycles.yaml",
                      "trip.yaml"]}

        bad = http.post("/api/channels/1/start", json={"plan": "bad"}, headers=op)
        assert bad.status_code == 422 and bad.json()["error"] == "bad_plan"
        assert "bad.yaml:4: steps[0]: expected a number" in bad.json()["message"]
        assert http.post("/api/channels/1/start", json={"plan": "long"},
                         headers=view).status_code == 403
        started = http.post("/api/channels/1/start", json={"plan": "long"}, headers=op)
        assert started.status_code == 200, started.text
        test_id = started.json()["test_id"]
        busy = http.post("/api/channels/1/start", json={"plan": "long"}, headers=op)
        assert busy.status_code == 409 and busy.json()["error"] == "busy"
        assert http.post("/api/channels/9/stop", headers=op).status_code == 404
        assert http.post("/api/channels/2/stop", headers=op).json()["error"] == "idle"
        viewer_stop = http.post("/api/channels/1/stop", headers=view)
        assert viewer_stop.status_code == 403 and "viewer" in viewer_stop.json()["message"]

        with connect(station.url.replace("http", "ws") + "/api/live",
                     open_timeout=PATIENCE_S) as anonymous:
            with pytest.raises(ConnectionClosed) as closed:
                anonymous.recv(PATIENCE_S)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                1008, "authenticate first")
        with connect(station.url.replace("http", "ws") + "/api/live?channels=1",
                     additional_headers=view, open_timeout=PATIENCE_S) as live:
            hello = json.loads(live.recv(PATIENCE_S))
            assert hello["type"] == "hello" and [c["number"] for c in hello["channels"]] == [1]
            assert hello["channels"][0]["state"] == "running"
            message = json.loads(live.recv(PATIENCE_S))
            while message["type"] != "samples":
                message = json.loads(live.recv(PATIENCE_S))
            row = dict(zip(hello["fields"], message["rows"][0], strict=True))
            assert row["channel"] == 1 and row["test_id"] == test_id
            assert row["current_a"] < 0  # discharging

            for action in ("pause", "resume", "next"):
                done = http.post(f"/api/channels/1/{action}", headers=op)
                assert done.json() == {"ok": True}, (action, done.text)
            states = []
            while "charge" not in " ".join(states):  # the next step arrives as a change
                message = json.loads(live.recv(PATIENCE_S))
                if message["type"] == "channels":
                    states += [c["step_text"].lower() for c in message["channels"]]
        assert http.get("/api/channels/1", headers=view).json()["step_no"] == 2

        queued = http.post("/api/queue", json={"channel": 3, "plan": "long"}, headers=op)
        entry = queued.json()["entry_id"]
        listed = http.get("/api/queue", headers=view).json()
        assert [(e["id"], e["channel"]) for e in listed] == [(entry, 3)]
        assert http.post("/api/batteries", headers=op, json={
            "name": "NMC-1", "chemistry": "NMC", "nominal_capacity_ah": 2.5,
            "voltage_max_v": 4.2}).json() == {"ok": True}
        again = http.post("/api/batteries", headers=op, json={
            "name": "NMC-1", "chemistry": "NMC", "nominal_capacity_ah": 2.5})
        assert again.status_code == 409
        assert [(b["name"], b["voltage_max_v"]) for b in
                http.get("/api/batteries", headers=view).json()] == [("NMC-1", 4.2)]
        assert http.post("/api/channels/1/stop", headers=op).json() == {"ok": True}
        wait_until(lambda: http.get(f"/api/stations/webtest/tests/{test_id}",
                                    headers=view).json()["status"], "the test stopped",
                   check=lambda status: status == "stopped")
        events = http.get(f"/api/stations/webtest/tests/{test_id}/events", headers=view).json()
        control = [e["message"] for e in events if e["kind"] == "control"]
        assert control == [f"token:lab-op: START 1 long: test {test_id}",
                           "token:lab-op: PAUSE 1", "token:lab-op: RESUME 1",
                           "token:lab-op: NEXT 1", "token:lab-op: STOP 1"]
    station.process.send_signal(signal.SIGTERM)
    assert station.process.wait(PATIENCE_S) == 0
    with sqlite3.connect(station.folder / "station.db") as db:
        identities = {json.loads(d)["identity"] for (d,) in db.execute(
            "SELECT data FROM events WHERE kind = 'control'")}
    assert identities == {"token:lab-op"}


def test_read_a_finished_test_then_fuzz(web_station: Callable[..., Any],
                                        wait_until: Any) -> None:
    """Reading a finished test on an open (token-less) station, then schemathesis fuzzing
    every operation of the served OpenAPI document: no server error, and no status code,
    content type or body outside the document."""
    station = web_station(tokens=False, speed=2000)
    with httpx.Client(base_url=station.url, timeout=PATIENCE_S) as http:
        open_station = http.get("/api/station").json()
        assert open_station["role"] == "operator"  # no tokens: loopback only, all operators
        no_csrf = http.post("/api/channels/2/start", json={"plan": "three-cycles"})
        assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf"
        page = http.get("/").text
        csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
        test_id = http.post("/api/channels/2/start", json={"plan": "three-cycles"},
                            headers={"X-CSRF-Token": csrf}).json()["test_id"]
        base = f"/api/stations/webtest/tests/{test_id}"
        wait_until(lambda: http.get(base).json()["status"], "the test finished",
                   check=lambda status: status == "finished", timeout=PATIENCE_S)

        listed = http.get("/api/tests", params={"status": "finished", "search": "three"})
        assert [(t["station"], t["id"], t["channel"]) for t in listed.json()] == [
            ("webtest", test_id, "2")]
        assert http.get("/api/tests", params={"status": "stopped"}).json() == []
        assert "Charge at 1C" in http.get(base).json()["plan_text"]
        cycles = http.get(base + "/cycles").json()
        assert [c["cycle"] for c in cycles] == [1, 2, 3]
        steps = http.get(base + "/steps").json()
        assert [(st["step_no"], st["cycle"]) for st in steps] == [
            (1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3)]
        for cycle in cycles:  # the cycle table sums its steps
            mine = [st for st in steps if st["cycle"] == cycle["cycle"]]
            for name in ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh"):
                assert cycle[name] == pytest.approx(sum(st[name] or 0 for st in mine))
            assert cycle["discharge_ah"] > 0.05
            assert cycle["coulombic_efficiency"] == pytest.approx(
                cycle["discharge_ah"] / cycle["charge_ah"])

        # 12 minutes of 1 s samples: several pages (fewer samples where a loaded machine's
        # virtual clock skipped ahead between ticks, but still more than one page).
        first = http.get(base + "/samples", params={"limit": 20}).json()
        assert first["columns"][0] == "seq" and len(first["rows"]) == 20
        assert first["next_after_seq"] == first["rows"][-1][0] == 20
        paged = first["rows"]
        after = first["next_after_seq"]
        while after is not None:
            page_of = http.get(base + "/samples", params={"after_seq": after,
                                                          "limit": 20}).json()
            assert len(page_of["rows"]) == 20 or page_of["next_after_seq"] is None
            paged += page_of["rows"]
            after = page_of["next_after_seq"]
        with http.stream("GET", base + "/samples.ndjson") as streamed:
            assert streamed.headers["content-type"] == "application/x-ndjson"
            lines = [json.loads(line) for line in streamed.iter_lines()]
        assert lines[0] == {"columns": first["columns"]}
        assert lines[1:] == paged
        seqs = [row[0] for row in paged]
        assert seqs == list(range(1, len(seqs) + 1))

        voltage = first["columns"].index("voltage_v")
        series = http.get(base + "/series", params={"columns": "voltage_v,current_a",
                                                    "buckets": 20}).json()
        assert 1 <= len(series["t_min"]) <= 20
        values = [row[voltage] for row in paged]
        assert min(series["voltage_v_min"]) == min(values)
        assert max(series["voltage_v_max"]) == max(values)
        assert [m["step_no"] for m in series["marks"]] == [1, 2, 3, 4, 5, 6]
        # A zoom inside the samples (where they begin depends on how the clock ran).
        times = [row[first["columns"].index("test_time_s")] for row in paged]
        start_s, end_s = times[len(times) // 4], times[len(times) // 2]
        zoomed = http.get(base + "/series", params={
            "columns": "voltage_v", "buckets": 10, "start_s": start_s, "end_s": end_s}).json()
        assert zoomed["start_s"] == start_s and zoomed["end_s"] == end_s
        assert all(start_s <= t <= end_s for t in zoomed["t_min"] + zoomed["t_max"])
        unknown = http.get(base + "/series", params={"columns": "nonsense"})
        assert unknown.status_code == 422 and "nonsense" in unknown.json()["message"]
        assert http.get("/api/stations/webtest/tests/999/cycles").status_code == 404
        assert http.get("/api/stations/other/tests/1").status_code == 404
        served = http.get("/api/openapi.json").json()
    assert served == json.loads(OPENAPI.read_text(encoding="utf-8"))
    _fuzz(served, station.url, {"X-CSRF-Token": csrf})


def _fuzz(document: dict[str, Any], url: str, headers: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_dict(document)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=url, headers=headers, timeout=PATIENCE_S)
            case.validate_response(response, checks=checks)

        check()
