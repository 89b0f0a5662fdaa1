"""The API beyond reading and start/stop, against a real ``cellbench serve`` on loopback:
setpoints and keepalives of an external step (the limits and identity of rci ``SET`` and
``KEEPALIVE``), downloads in the export plugin's formats, Arrow streams of samples."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from cellbench_export import BdfFormat, write_basytec, write_bdf
from cellbench_sdk.storage import TestStart, open_database
from cellbench_sdk.testing.station import station_control
from cellbench_web.app import Backend, build_app
from cellbench_web.auth import Access
from cellbench_web.data import Reader

PATIENCE_S = 60.0


def test_setpoints_downloads_and_arrow_streams(web_station: Callable[..., Any],
                                              wait_until: Any, tmp_path: Path) -> None:
    """An external step takes setpoints over the API, refused beyond the limits and stored
    with the identity; a battery is edited by the registry's rules; a finished test
    downloads in every export format, byte for byte the file ``cellbench export`` writes; its
    samples stream as Arrow, whole or in pages, equal to the JSON pages."""
    station = web_station(channels=3, speed=600)
    op, view = station.headers(station.operator), station.headers(station.viewer)
    with httpx.Client(base_url=station.url, timeout=PATIENCE_S, headers=view) as http:
        finishing = http.post("/api/channels/1/start", json={"plan": "three-cycles"},
                              headers=op).json()["test_id"]
        idle = http.post("/api/channels/2/setpoint", json={"mode": "cc", "current_a": 1},
                         headers=op)
        assert idle.status_code == 409 and idle.json()["error"] == "idle"
        assert [(c["chamber"], c["battery"]) for c in http.get("/api/channels").json()] == [
            ("oven", None), (None, None), (None, None)]
        http.post("/api/channels/3/start", json={"plan": "long"}, headers=op)
        not_external = http.post("/api/channels/3/keepalive", headers=op)
        assert not_external.status_code == 409
        assert not_external.json()["error"] == "not_external"
        http.post("/api/channels/3/stop", headers=op)  # (its samples would only cost time)
        external = http.post("/api/channels/2/start", json={"plan": "external"},
                             headers=op).json()["test_id"]
        wait_until(lambda: http.get("/api/channels/2").json()["state"],
                   "the external step runs", check=lambda state: state == "running")

        assert http.post("/api/channels/2/setpoint", json={"mode": "cc", "current_a": 1.5},
                         headers=view).status_code == 403
        applied = http.post("/api/channels/2/setpoint", json={"mode": "cc", "current_a": 1.5},
                            headers=op)
        assert applied.json() == {"mode": "cc", "current_a": 1.5, "voltage_v": None,
                                  "power_w": None}, applied.text
        wait_until(lambda: http.get("/api/channels/2").json()["current_a"],
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
            refused = http.post("/api/channels/2/setpoint", json=dict(body), headers=op)
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["error"] == error and text in refused.json()["message"], (
                body, refused.text)
        assert http.post("/api/channels/2/keepalive", headers=op).json() == {"ok": True}
        assert http.get("/api/channels/2").json()["current_a"] == 1.5
        rest = http.post("/api/channels/2/setpoint", json={"mode": "rest"}, headers=op)
        assert rest.json()["mode"] == "rest"

        def setpoints() -> list[tuple[str, str]]:
            events = http.get(f"/api/stations/webtest/tests/{external}/events").json()
            return [(e["message"], e["data"]["identity"]) for e in events
                    if e["kind"] == "setpoint"]

        stored = wait_until(setpoints, "both setpoints stored",
                            check=lambda found: len(found) == 2)
        assert [who for _, who in stored] == ["token:lab-op"] * 2
        http.post("/api/channels/2/stop", headers=op)

        # A battery edited by the registry's rules, the edit stored as a control event.
        http.post("/api/batteries", headers=op, json={
            "name": "NMC-1", "chemistry": "NMC", "nominal_capacity_ah": 2.5,
            "voltage_max_v": 4.2, "temperature_max_c": 60})
        assert http.patch("/api/batteries/NMC-1", json={"voltage_max_v": 4.1}
                          ).status_code == 403
        bad = http.patch("/api/batteries/NMC-1", json={"voltage_min_v": 4.3}, headers=op)
        assert bad.status_code == 422 and bad.json() == {
            "error": "bad_value",
            "message": "voltage_min_v (4.3 V) must be below voltage_max_v (4.2 V)"}
        capacity = http.post("/api/batteries", headers=op, json={
            "name": "NMC-2", "chemistry": "NMC", "nominal_capacity_ah": 0})
        assert capacity.json()["message"] == "nominal_capacity_ah must be positive, not 0.0"
        edited = http.patch("/api/batteries/NMC-1", headers=op,
                            json={"voltage_max_v": 4.15, "temperature_max_c": None})
        assert (edited.json()["voltage_max_v"], edited.json()["temperature_max_c"]) == (
            4.15, None)
        assert http.patch("/api/batteries/NMC-9", json={"chemistry": "LFP"},
                          headers=op).json()["error"] == "no_such_battery"
        assert http.patch("/api/batteries/NMC-1", json={"chemistry": None},
                          headers=op).status_code == 422
        wait_until(lambda: [e["message"] for e in http.get(
            "/api/stations/webtest/events", params={"kind": "control"}).json()],
            "the battery edit stored", check=lambda found: "token:lab-op: BATTERY EDIT NMC-1: "
            "temperature_max_c, voltage_max_v" in found)

        test_id = finishing
        test = f"/api/stations/webtest/tests/{test_id}"
        wait_until(lambda: http.get(test).json()["status"], "the test finished",
                   check=lambda status: status == "finished")
        assert [f["name"] for f in http.get("/api/export-formats").json()] == [
            "basytec", "bdf-csv", "bdf-parquet"]
        db = open_database(f"sqlite:///{station.folder / 'station.db'}")
        try:
            write_basytec(db, test_id, tmp_path / "t.txt")
            write_bdf(db, test_id, tmp_path / "t.csv", BdfFormat.CSV)
            write_bdf(db, test_id, tmp_path / "t.parquet", BdfFormat.PARQUET)
        finally:
            db.close()
        for name, suffix in (("basytec", ".txt"), ("bdf-csv", ".csv"),
                             ("bdf-parquet", ".parquet")):
            got = http.get(f"{test}/download/{name}")
            assert got.status_code == 200, got.text
            assert got.headers["content-disposition"] == (
                f'attachment; filename="webtest-{test_id}{suffix}"')
            assert (got.content == (tmp_path / f"t{suffix}").read_bytes()) is True, name
        unknown = http.get(f"{test}/download/xlsx")
        assert unknown.status_code == 404 and unknown.json()["error"] == "no_such_format"
        assert "basytec, bdf-csv, bdf-parquet" in unknown.json()["message"]
        assert http.get("/api/stations/webtest/tests/99/download/basytec").status_code == 404
        page = http.get(f"/stations/webtest/tests/{test_id}").text
        assert f'href="{test}/download/bdf-parquet"' in page

        columns = "seq,test_time_s,voltage_v,current_a,cycle"
        whole = pa.ipc.open_stream(http.get(f"{test}/samples.arrow",
                                            params={"columns": columns}).content).read_all()
        json_page = http.get(f"{test}/samples", params={"columns": columns,
                                                        "limit": 100_000}).json()
        assert whole.column_names == columns.split(",")
        assert whole.schema.field("cycle").type == pa.int64()
        assert [list(row.values()) for row in whole.to_pylist()] == json_page["rows"]
        pages, after, size = [], 0, max(1, whole.num_rows // 3)  # (the count varies with load)
        while after is not None:
            got = http.get(f"{test}/samples", params={"columns": columns, "limit": size,
                                                      "after_seq": after, "format": "arrow"})
            assert got.headers["content-type"] == "application/vnd.apache.arrow.stream"
            pages.append(pa.ipc.open_stream(got.content).read_all())
            following = got.headers.get("x-next-after-seq")
            after = None if following is None else int(following)
        assert len(pages) > 2 and pa.concat_tables(pages).equals(whole)
        negotiated = http.get(f"{test}/samples", params={"columns": "seq", "limit": 5},
                              headers={"Accept": "application/vnd.apache.arrow.stream"})
        assert pa.ipc.open_stream(negotiated.content).read_all().column("seq").to_pylist() == [
            1, 2, 3, 4, 5]


def test_without_the_export_plugin_downloads_say_so() -> None:
    async def main() -> None:
        async with station_control(1) as control:
            [test_id] = control.db.start_tests([TestStart(
                name="t", channel="1", driver="kit", battery=None, plan_name="p",
                plan_source="p.yaml", plan_text="", sample_period_s=1.0, station="kit",
                start_unix_s=1_700_000_000.0)])
            backend = Backend(Reader(control.db.engine, central=False), Access({}), "kit",
                              "kit", control, formats={})
            transport = httpx.ASGITransport(app=build_app(backend))
            async with httpx.AsyncClient(transport=transport, base_url="http://kit") as http:
                assert (await http.get("/api/export-formats")).json() == []
                got = await http.get(f"/api/stations/kit/tests/{test_id}/download/basytec")
                assert got.status_code == 404 and got.json() == {
                    "error": "no_export", "message": "downloads need the cellbench-export "
                    "plugin, which is not installed on this server"}
                page = (await http.get(f"/stations/kit/tests/{test_id}")).text
                assert "Test 1: t" in page and "/download/" not in page

    asyncio.run(main())
