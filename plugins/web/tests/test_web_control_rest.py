"""Control over the API beyond start and stop, against a real ``cellbench serve`` on
loopback: setpoints and keepalives of an external step (the limits and identity of rci ``SET``
and ``KEEPALIVE``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

PATIENCE_S = 60.0


def test_setpoints_over_the_api(web_station: Callable[..., Any], wait_until: Any) -> None:
    station = web_station(channels=2)
    op, view = station.headers(station.operator), station.headers(station.viewer)
    with httpx.Client(base_url=station.url, timeout=PATIENCE_S) as http:
        idle = http.post("/api/channels/1/setpoint", json={"mode": "cc", "current_a": 1},
                         headers=op)
        assert idle.status_code == 409 and idle.json()["error"] == "idle"
        http.post("/api/channels/2/start", json={"plan": "long"}, headers=op)
        not_external = http.post("/api/channels/2/keepalive", headers=op)
        assert not_external.status_code == 409
        assert not_external.json()["error"] == "not_external"
        test_id = http.post("/api/channels/1/start", json={"plan": "external"},
                            headers=op).json()["test_id"]
        wait_until(lambda: http.get("/api/channels/1", headers=view).json()["state"],
                   "the external step runs", check=lambda state: state == "running")

        assert http.post("/api/channels/1/setpoint", json={"mode": "cc", "current_a": 1.5},
                         headers=view).status_code == 403
        applied = http.post("/api/channels/1/setpoint", json={"mode": "cc", "current_a": 1.5},
                            headers=op)
        assert applied.json() == {"mode": "cc", "current_a": 1.5, "voltage_v": None,
                                  "power_w": None}, applied.text
        wait_until(lambda: http.get("/api/channels/1", headers=view).json()["current_a"],
                   "the setpoint's current", check=lambda amps: abs(amps - 1.5) < 1e-9)
        refusals = {  # each refused, the channel kept at 1.5 A
            (("mode", "cc"), ("current_a", 3.5)): ("bad_value", "safety limit current_max"),
            (("mode", "cv"), ("voltage_v", 4.3)): ("bad_value", "voltage_max 4.2 V"),
            (("mode", "cc"),): ("bad_value", "a cc step needs current_a"),
            (("mode", "cc"), ("current_a", 1), ("power_w", 2)): (
                "bad_value", "a cc setpoint takes current_a, not power_w"),
            (("mode", "cv"), ("voltage_v", 4), ("current_a", -1)): (
                "bad_value", "current limit of a cv step must be positive"),
            (("mode", "ramp"),): ("bad_request", "body.mode"),
        }
        for body, (error, text) in refusals.items():
            refused = http.post("/api/channels/1/setpoint", json=dict(body), headers=op)
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["error"] == error and text in refused.json()["message"], (
                body, refused.text)
        assert http.post("/api/channels/1/keepalive", headers=op).json() == {"ok": True}
        assert http.get("/api/channels/1", headers=view).json()["current_a"] == 1.5
        rest = http.post("/api/channels/1/setpoint", json={"mode": "rest"}, headers=op)
        assert rest.json()["mode"] == "rest"

        def setpoints() -> list[tuple[str, str]]:
            events = http.get(f"/api/stations/webtest/tests/{test_id}/events",
                              headers=view).json()
            return [(e["message"], e["data"]["identity"]) for e in events
                    if e["kind"] == "setpoint"]

        stored = wait_until(setpoints, "both setpoints stored",
                            check=lambda found: len(found) == 2)
        assert [who for _, who in stored] == ["token:oper…"] * 2
