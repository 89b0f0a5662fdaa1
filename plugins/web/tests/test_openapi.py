"""The checked-in OpenAPI document (openapi.json) is the one the code makes (the fuzz in
test_web_api.py checks that a serving station serves it)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from cellbench_sdk.testing.station import station_control
from cellbench_web.app import Backend, build_app
from cellbench_web.auth import Access
from cellbench_web.data import Reader

#: The checked-in document. ``CELLBENCH_WRITE_OPENAPI=1 pytest plugins/web -k openapi``
#: rewrites it after a change to the API.
OPENAPI = Path(__file__).parents[1] / "openapi.json"


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
