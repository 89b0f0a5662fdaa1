"""Long answers in bounded pieces: an interface (rci, web) that renders a record per channel or
per sample for a client does it :data:`ITEMS_PER_TURN` at a time, letting the event loop turn
in between, so that the runner's tick (and every other client) never waits for a long answer::

    from cellbench_sdk.turns import in_turns

    made = in_turns(numbers, lambda n: render(control.channel(n)))
    lines = made if isinstance(made, list) else await made
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

__all__ = ["ITEMS_PER_TURN", "in_turns"]

_T = TypeVar("_T")
_R = TypeVar("_R")

#: Items rendered per turn of the event loop.
ITEMS_PER_TURN = 256


def in_turns(items: Sequence[_T], render: Callable[[_T], _R]) -> list[_R] | Awaitable[list[_R]]:
    """``render`` of each of ``items``: at once (a list) if they fit one turn, else an
    awaitable that renders them over several turns of the event loop."""
    if len(items) <= ITEMS_PER_TURN:
        return [render(item) for item in items]

    async def rendered() -> list[_R]:
        made: list[_R] = []
        for start in range(0, len(items), ITEMS_PER_TURN):
            if start:
                await asyncio.sleep(0)
            made.extend(render(item) for item in items[start:start + ITEMS_PER_TURN])
        return made

    return rendered()
