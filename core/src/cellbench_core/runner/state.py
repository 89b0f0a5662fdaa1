"""What the runner's parts share: one row of numpy arrays per test, and the bookkeeping around them.

Every module of the runner works on one :class:`RunState` with plain functions: the tick loop
(tick.py), step transitions (transitions.py), attached devices and chambers (attached.py), crash
resume (resume.py). A row is one test's channel; the arrays hold what the per-sample hot path
reads and writes for all rows at once, so it stays vectorised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from cellbench_core.dispatch import EventDispatcher
from cellbench_core.runner.conditions import COLUMNS, SIGNAL_SLOTS, ConditionTable
from cellbench_core.runner.limits import LIMITS
from cellbench_core.runner.records import ChamberBand, Control, ExternalHold, Run, SteppedRamp
from cellbench_core.storage import Database, SampleRows, SampleWriter, TestEnd
from cellbench_hal import (
    ChamberState,
    ChannelDriver,
    ClimateChamber,
    Clock,
    DeviceError,
    OsiDevice,
)
from cellbench_hal.types import FloatArray, IntArray


class SignalMap(NamedTuple):
    """The signals running tests read, as arrays: per (row, signal) pair its row, its column of
    the row's quantities, and the index of the signal's name in ``names``."""

    names: list[str]
    rows: IntArray
    columns: IntArray
    signal: IntArray


def rows_of(runs: Sequence[Run]) -> IntArray:
    """The rows of ``runs``, as an index array."""
    return np.fromiter((run.row for run in runs), dtype=np.int64, count=len(runs))


class RunState:
    """The state of one :class:`~cellbench_core.runner.engine.Runner` (internal to the runner)."""

    def __init__(self, db: Database, writer: SampleWriter, clock: Clock,
                 events: EventDispatcher, *, device_timeout_s: float,
                 on_event: Callable[[object], None] | None = None) -> None:
        self.db, self.writer, self.clock, self.events = db, writer, clock, events
        self.device_timeout_s = device_timeout_s
        self.on_event = on_event
        self.ticks = 0
        self.samples = 0
        #: Changes whenever what the runner reports may have changed (see Runner.generation).
        self.generation = 0
        self.runs: list[Run] = []
        self.run_of: dict[int, Run] = {}  # channel number -> its latest test's run
        self.ended: list[TestEnd] = []  # tests ended this tick, recorded together
        self.stop: dict[int | None, str] = {}  # channel number (None: all) -> reason
        self.actions: list[tuple[Run, Control]] = []  # pause/resume/next, for the next tick
        # Rows in a chamber step -> since when their chamber has been stable (None: it is not),
        # when the wait began, and whether the step's setpoint is set (False: the channel waits
        # for the others in its chamber).
        self.waits: dict[int, tuple[float | None, float, bool]] = {}
        self.observer: Callable[[IntArray, SampleRows], None] | None = None
        # The station's devices and chambers that running tests see, by name: the channels
        # each serves, and whether its last read failed (logged once per failure).
        self.attached: dict[str, tuple[OsiDevice | ClimateChamber, set[int]]] = {}
        self.failing: set[str] = set()
        # Chambers reporting a fault now (name -> what), and the rows their faults paused.
        self.chamber_faults: dict[str, str] = {}
        # This tick's read of each attached chamber, by name: what chamber waits go by.
        self.chamber_reads: dict[str, ChamberState | DeviceError] = {}
        self.fault_paused: dict[int, str] = {}
        # Chambers whose last chamber step found them stable: the band they are held to.
        self.bands: dict[str, ChamberBand] = {}
        # Chambers ramping their temperature setpoint by the station's hand, by name.
        self.ramps: dict[str, SteppedRamp] = {}
        # Rows in an external step: the setpoint they hold and their watchdog (external.py).
        self.external: dict[int, ExternalHold] = {}
        self.signals_now: dict[str, float] = {}  # this tick's signal values
        # Per signal that running tests end steps on or limit: their rows and its column in
        # each row; and the same as arrays for the tick (None: to be made again, see
        # signal_map), and the rows whose tests limit signals.
        self.signal_users: dict[str, dict[int, int]] = {}
        self._signal_map: SignalMap | None = None
        self.signal_limited: set[int] = set()
        # Per driver: its name, and the run row of each of its channels (-1: not in this run).
        self.drivers: dict[int, tuple[ChannelDriver, str]] = {}
        self.row_of: dict[int, IntArray] = {}
        self.allocate(0)

    def use_signals(self, row: int, columns: Mapping[str, int]) -> None:
        """Row ``row``'s test reads ``columns`` (signal name -> its column of the quantities)."""
        for name, column in columns.items():
            self.signal_users.setdefault(name, {})[row] = column
        self._signal_map = None

    def drop_signals(self, row: int, names: Iterable[str]) -> None:
        """Row ``row``'s test reads signals ``names`` no more."""
        for name in names:
            users = self.signal_users.get(name, {})
            users.pop(row, None)
            if not users:
                self.signal_users.pop(name, None)
        self.signal_limited.discard(row)
        self._signal_map = None

    @property
    def signal_map(self) -> SignalMap:
        """:attr:`signal_users` as arrays: the names, and per (row, signal) pair the row, the
        column and the index of the name; made again only after tests start or end."""
        if self._signal_map is None:
            names = sorted(self.signal_users)
            pairs = [(row, column, k) for k, name in enumerate(names)
                     for row, column in self.signal_users[name].items()]
            rows, columns, signal = (np.array(part, dtype=np.int64)
                                     for part in zip(*pairs, strict=True)) if pairs else (
                np.zeros(0, dtype=np.int64) for _ in range(3))
            self._signal_map = SignalMap(names, rows, columns, signal)
        return self._signal_map

    def announce(self, hook_name: str, event: object) -> None:
        """Tell ``on_event`` at once, then the plugins through the dispatcher."""
        if self.on_event is not None:
            self.on_event(event)
        self.events.fire(hook_name, event)

    def allocate(self, n: int) -> None:
        """Make ``n`` empty rows."""
        def zeros() -> FloatArray:
            return np.zeros(n)

        self.active = np.zeros(n, dtype=bool)
        self.paused = np.zeros(n, dtype=bool)  # as applied (see Run.paused)
        self.channel_no = np.zeros(n, dtype=np.int64)
        self.seen = np.zeros(n, dtype=np.int64)
        self.test_id = np.zeros(n, dtype=np.int64)
        self.seq = np.zeros(n, dtype=np.int64)
        self.step_index = np.zeros(n, dtype=np.int64)
        self.plan_line = np.zeros(n, dtype=np.int64)
        self.cycle = np.zeros(n, dtype=np.int64)
        self.last_t, self.test_t0, self.step_t0, self.cycle_t0 = (zeros() for _ in range(4))
        self.step_ah, self.step_wh, self.cycle_ah, self.cycle_wh = (zeros() for _ in range(4))
        self.total_ah, self.total_wh = zeros(), zeros()
        self.v, self.i, self.temp = zeros(), zeros(), np.full(n, np.nan)
        # Safety limits by LIMITS column, as upper bounds of the signed readings (see
        # tick.process); the delay each needs, and since when a reading has been beyond it (NaN:
        # it is not).
        self.bound = np.full((n, len(LIMITS)), np.inf)
        self.delay = np.zeros((n, len(LIMITS)))
        self.beyond_since = np.full((n, len(LIMITS)), np.nan)
        # The same for the limits on signals, by signal slot: the upper bounds of the reading
        # and of its negative (see records.SignalPlan), one pair per slot.
        self.signal_bound = np.full((n, 2 * SIGNAL_SLOTS), np.inf)
        self.signal_delay = np.zeros((n, 2 * SIGNAL_SLOTS))
        self.signal_since = np.full((n, 2 * SIGNAL_SLOTS), np.nan)
        self.conditions = ConditionTable(n)
        # Charge and discharge counters, both positive: [row, scope (step, cycle, test), Ah/Wh].
        self.charged, self.discharged = np.zeros((n, 3, 2)), np.zeros((n, 3, 2))
        # The previous sample of the running step (NaN at a step's start), for dV/dt and dT/dt.
        self.prev_t, self.prev_v, self.prev_temp = (np.full(n, np.nan) for _ in range(3))
        # The cell temperature's range over the running step (NaN until a reading).
        self.step_temp_min, self.step_temp_max = np.full(n, np.nan), np.full(n, np.nan)
        # Every quantity of each channel's last sample, for loop conditions.
        self.q_last = np.full((n, COLUMNS), np.nan)

    def grow(self, n: int) -> None:
        """Make room for ``n`` rows, keeping those there are (every array attribute of the
        state and of its condition table has one entry per row along its first axis)."""
        have = len(self.active)
        if n <= have:
            return
        old = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        conditions = self.conditions
        self.allocate(max(n, 2 * have))  # doubling: a serving station adds rows one by one
        size = len(self.active)
        for k, v in old.items():
            getattr(self, k)[:have] = v
        for k, v in vars(conditions).items():
            if isinstance(v, np.ndarray):
                grown = np.zeros((size, *v.shape[1:]), dtype=v.dtype)
                grown[:have] = v
                setattr(self.conditions, k, grown)

