"""The OpenAPI document: the checked-in openapi.json is what the app serves, and schemathesis
fuzzing every operation of a real serving station finds no server error and no response
outside the document."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from cellbench_sdk.testing.station import station_control
from cellbench_web.app import Backend, build_app
from cellbench_web.auth import Access
from cellbench_web.data import Reader

#: The checked-in document. ``CELLBENCH_WRITE_OPENAPI=1 pytest plugins/web -k openapi``
#: rewrites it after a change to the API.
OPENAPI = Path(__file__).parents[1] / "openapi.json"
#: Cases per operation: enough to reach every parameter's edges, few enough to stay fast.
EXAMPLES = 8


def current_document() -> dict[str, Any]:
    """The OpenAPI document of a serving station's app, as the code makes it now."""
    async def make() -> dict[str, Any]:
        async with station_control(1) as control:
            backend = Backend(Reader(control.db.engine, central=False), Access({}), "kit",
                              "kit", control)
            return build_app(backend).openapi()

    return asyncio.run(make())


def test_the_checked_in_document_is_current() -> None:
    document = current_document()
    if os.environ.get("CELLBENCH_WRITE_OPENAPI"):
        OPENAPI.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n",
                           encoding="utf-8")
    assert json.loads(OPENAPI.read_text(encoding="utf-8")) == document, (
        "the API changed: rewrite openapi.json with CELLBENCH_WRITE_OPENAPI=1")


def test_fuzz_finds_no_server_error(web_station: Callable[..., Any]) -> None:
    station = web_station(speed=2000)
    headers = station.headers(station.operator)
    served = httpx.get(station.url + "/api/openapi.json", headers=headers, timeout=30).json()
    assert served == json.loads(OPENAPI.read_text(encoding="utf-8"))
    # A test with samples, steps and cycles for the fuzz to find (test ids start at 1).
    started = httpx.post(station.url + "/api/channels/1/start", json={"plan": "three-cycles"},
                         headers=headers, timeout=30)
    assert started.json() == {"test_id": 1}
    schema = schemathesis.openapi.from_dict(served)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    tried = 0
    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=station.url, headers=headers, timeout=30)
            case.validate_response(response, checks=checks)

        check()
        tried += 1
    assert tried == len(operations)
