"""The per-step counters both file formats derive from a test's samples."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class StepCounter:
    """Derives from consecutive samples what the sample table leaves implicit: where a step
    starts, the executed-step count, and charge and energy since the start of the test.

    A sample starts a new step when its step index, plan line or cycle differs from the
    previous sample's, or its step time does not increase. Feed chunks in ``seq`` order; the
    counter carries its state from one chunk to the next.
    """

    step_no: int = 0
    _previous: tuple[int, int, int, float] | None = None
    _ah_before: float = 0.0  # charge of all finished steps
    _wh_before: float = 0.0
    _last_ah: float = 0.0  # charge of the current step so far
    _last_wh: float = 0.0

    def update(self, columns: dict[str, np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each sample: whether it starts a step, the step count (from 1), and the net
        charge [Ah] and energy [Wh] since the start of the test (positive when charging)."""
        rows = len(columns["seq"])
        starts = np.zeros(rows, dtype=bool)
        count = np.zeros(rows, dtype=np.int64)
        net_ah = np.zeros(rows)
        net_wh = np.zeros(rows)
        keys = zip(columns["step_index"].tolist(), columns["plan_line"].tolist(),
                   columns["cycle"].tolist(), columns["step_time_s"].tolist(), strict=True)
        ahs, whs = columns["ah"].tolist(), columns["wh"].tolist()
        for i, key in enumerate(keys):
            previous = self._previous
            if previous is None or key[:3] != previous[:3] or key[3] <= previous[3]:
                starts[i] = True
                self.step_no += 1
                self._ah_before += self._last_ah
                self._wh_before += self._last_wh
                self._last_ah = self._last_wh = 0.0
            self._previous = key
            # A sample without a valid Ah or Wh value keeps the step's last valid one.
            if math.isfinite(ahs[i]):
                self._last_ah = ahs[i]
            if math.isfinite(whs[i]):
                self._last_wh = whs[i]
            count[i] = self.step_no
            net_ah[i] = self._ah_before + self._last_ah
            net_wh[i] = self._wh_before + self._last_wh
        return starts, count, net_ah, net_wh
