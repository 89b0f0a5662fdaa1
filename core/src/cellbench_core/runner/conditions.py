"""End conditions of every running channel as arrays, evaluated for all channels at once.

Each channel holds up to ``groups`` condition groups of up to ``slots`` conditions; a step ends
when every used slot of any used group holds, and the first such group says what follows. The
per-sample work is a handful of numpy operations across channels, whatever plan each channel
follows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cellbench_core.plan.model import Condition, Op, Quantity
from cellbench_hal.types import FloatArray, IntArray

#: Column of each quantity in the per-sample quantity matrix.
QUANTITY_COLUMN: dict[Quantity, int] = {q: i for i, q in enumerate(Quantity)}
#: Columns after the quantities for the device and chamber signals a test's plan ends steps
#: on: at most this many different signals per test.
SIGNAL_SLOTS = 8
#: Width of the per-sample quantity matrix.
COLUMNS = len(QUANTITY_COLUMN) + SIGNAL_SLOTS


class ConditionTable:
    """End conditions of ``size`` channels; grows its shape when a step needs more room."""

    def __init__(self, size: int, groups: int = 2, slots: int = 2) -> None:
        self.quantity = np.zeros((size, groups, slots), dtype=np.int64)
        self.greater = np.zeros((size, groups, slots), dtype=bool)  # True: >=, False: <=
        self.threshold = np.zeros((size, groups, slots))
        self.used = np.zeros((size, groups, slots), dtype=bool)
        self.group_used = np.zeros((size, groups), dtype=bool)

    def set(self, rows: int | IntArray, groups: list[list[tuple[Condition, float]]],
            signal_columns: Mapping[str, int] | None = None) -> None:
        """Replace the conditions of channel ``rows`` (one, or an index array of several) with
        ``groups`` of (condition, threshold: SI, or a signal's own unit); ``signal_columns``
        places the rows' signals."""
        self._grow(len(groups), max((len(g) for g in groups), default=0))
        shape = self.quantity.shape[1:]
        quantity, threshold = np.zeros(shape, dtype=np.int64), np.zeros(shape)
        greater, used = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        group_used = np.zeros(shape[0], dtype=bool)
        for g, group in enumerate(groups):
            group_used[g] = True
            for s, (condition, value) in enumerate(group):
                q = condition.quantity
                quantity[g, s] = (QUANTITY_COLUMN[q] if isinstance(q, Quantity)
                                  else (signal_columns or {})[q.name])
                greater[g, s] = condition.op is Op.GE
                threshold[g, s] = value
                used[g, s] = True
        self.quantity[rows], self.greater[rows], self.threshold[rows] = quantity, greater, threshold
        self.used[rows], self.group_used[rows] = used, group_used

    def clear(self, row: int) -> None:
        """Channel ``row`` has no conditions (it is idle)."""
        self.used[row] = False
        self.group_used[row] = False

    def met(self, rows: IntArray, quantities: FloatArray) -> IntArray:
        """For each of ``rows`` (with its line of ``quantities``), the first condition group of
        its step that holds, or -1 while none does.

        A NaN quantity meets no condition; NaN readings are the safety limits' business.
        """
        n = len(rows)
        values = quantities[np.arange(n)[:, None, None], self.quantity[rows]]
        threshold = self.threshold[rows]
        holds = np.where(self.greater[rows], values >= threshold, values <= threshold)
        group_holds = np.all(holds | ~self.used[rows], axis=2) & self.group_used[rows]
        result: IntArray = np.where(group_holds.any(axis=1), group_holds.argmax(axis=1), -1)
        return result

    def _grow(self, groups: int, slots: int) -> None:
        size, have_groups, have_slots = self.quantity.shape
        if groups <= have_groups and slots <= have_slots:
            return
        new_groups, new_slots = max(groups, have_groups), max(slots, have_slots)

        def grown(a: np.ndarray) -> np.ndarray:
            shape = (size, new_groups, new_slots)[: a.ndim]
            out = np.zeros(shape, dtype=a.dtype)
            out[tuple(slice(0, n) for n in a.shape)] = a
            return out

        self.quantity, self.greater = grown(self.quantity), grown(self.greater)
        self.threshold, self.used = grown(self.threshold), grown(self.used)
        self.group_used = grown(self.group_used)
