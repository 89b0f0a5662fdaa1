"""The conformance checks of cellbench-sdk for an interface, run against web."""

import asyncio
from typing import Any, ClassVar

from cellbench_sdk.control import StationControl
from cellbench_sdk.testing import InterfaceContract


class TestWebInterface(InterfaceContract):
    """Every check of an interface against what the descriptor builds, served by a small
    station of the kit. The classes' attributes and hooks: docs/plugins.md of cellbench."""

    # The module the entry point names, and the descriptor's name.
    plugin = "cellbench_web.plugin"
    name = "web"
    # Settings to check with, by a name that shows in the test ids (port 0: any free port).
    cases: ClassVar[dict[str, dict[str, Any]]] = {"any port": {"port": 0}}

    async def exercise(self, interface: Any, control: StationControl) -> None:
        # Talk to the started interface as its clients do.
        reader, writer = await asyncio.open_connection(*interface.address)
        writer.write(b"PING\nCHANNELS?\nWHAT\n")
        replies = [await reader.readline() for _ in range(3)]
        writer.close()
        assert replies == [b"OK PONG\n", b"OK 1,2\n", b"ERR unknown command\n"]
