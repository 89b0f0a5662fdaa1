"""The cursor that walks a compiled plan for one channel.

The program itself (loops flattened, actions turned into jumps, the flow checked) is compiled by
the plan package, :mod:`cellbench_core.plan.program`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cellbench_core.plan.expr import Scope, resolve
from cellbench_core.plan.model import Condition, Message, Op, Quantity, SetStep, StepSpec
from cellbench_core.plan.program import LoopBegin, LoopEnd, Passed, Program
from cellbench_core.runner.conditions import QUANTITY_COLUMN
from cellbench_hal.types import FloatArray


@dataclass
class Cursor:
    """One channel's position in a program: the step it runs, loop counters and cycle count.

    ``first[loop]`` holds the quantities at the end of the loop's first pass, for loop conditions
    relative to it; ``capacity_ah`` resolves C-rates. ``variables`` holds what the plan's set
    steps have set so far (SI values).
    """

    program: Program
    pc: int = -1  # the current step's instruction; -1 before the first
    counters: list[int] = field(default_factory=list)
    cycle: int = 0
    capacity_ah: float | None = None
    first: dict[int, FloatArray] = field(default_factory=dict)
    variables: dict[str, float] = field(default_factory=dict)
    passed: list[Passed] = field(default_factory=list)  # by the last advance, in order

    def __post_init__(self) -> None:
        if not self.counters:
            self.counters = [0] * self.program.loops

    def state(self) -> dict[str, Any]:
        """The position as plain JSON-able data, for :meth:`restore` (after a crash)."""
        return {"pc": self.pc, "counters": list(self.counters), "cycle": self.cycle,
                "capacity_ah": self.capacity_ah, "variables": dict(self.variables),
                "first": {str(loop): [None if np.isnan(x) else float(x) for x in q]
                          for loop, q in self.first.items()}}

    @classmethod
    def restore(cls, program: Program, state: Mapping[str, Any]) -> Cursor:
        """The cursor :meth:`state` described, on ``program`` (the same plan compiled again);
        ValueError if the state does not fit the program."""
        try:
            pc, counters = int(state["pc"]), [int(n) for n in state["counters"]]
            capacity = state["capacity_ah"]
            first = {int(loop): np.array([np.nan if x is None else float(x) for x in q])
                     for loop, q in state["first"].items()}
            # A test started before plans had variables has none stored.
            variables = {str(name): float(value)
                         for name, value in state.get("variables", {}).items()}
            cursor = cls(program, pc, counters, int(state["cycle"]),
                         None if capacity is None else float(capacity), first, variables)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"a stored plan position is not readable: {err!r}") from None
        if not isinstance(program.instructions[pc] if 0 <= pc < len(program.instructions)
                          else None, StepSpec) or len(counters) != program.loops:
            raise ValueError(f"the stored plan position (instruction {pc}, {len(counters)} "
                             "loops) does not fit the plan")
        return cursor

    @property
    def step(self) -> StepSpec:
        """The step the channel runs now."""
        ins = self.program.instructions[self.pc]
        assert isinstance(ins, StepSpec)
        return ins

    @property
    def step_index(self) -> int:
        """Index of the current step in plan order (0-based)."""
        return self.program.step_index[self.pc]

    def advance(self, group: int | None = None,
                quantities: FloatArray | None = None) -> tuple[StepSpec, bool] | None:
        """Move on from the current step as its end condition group ``group`` says (None: to the
        next step); return the new step and whether a new cycle began, or None at the end.

        ``quantities`` (the last sample's, by :data:`QUANTITY_COLUMN`) decide loop conditions.
        """
        if self.pc < 0 or group is None:
            pc = self.pc + 1
        else:
            pc = self.program.continue_at[self.pc][group]
        new_cycle = False
        self.passed = []
        instructions = self.program.instructions
        while 0 <= pc < len(instructions):
            ins = instructions[pc]
            if isinstance(ins, StepSpec):
                self.pc = pc
                if new_cycle:
                    self.cycle += 1
                return ins, new_cycle
            if isinstance(ins, Message | SetStep):
                self.passed.append(ins)
                pc += 1
            elif isinstance(ins, LoopBegin):
                self.counters[ins.loop] = 0
                new_cycle = new_cycle or ins.cycle
                pc += 1
            else:
                self.counters[ins.loop] += 1
                if self._repeat(ins, quantities):
                    new_cycle = new_cycle or ins.cycle
                    pc = ins.begin
                else:
                    pc += 1
        self.pc = len(instructions)
        return None

    def _repeat(self, end: LoopEnd, quantities: FloatArray | None) -> bool:
        passes = self.counters[end.loop]
        if end.count is not None and passes >= end.count:
            return False
        if not end.until:
            return True
        q = quantities if quantities is not None else np.full(len(QUANTITY_COLUMN), np.nan)
        if passes == 1:
            self.first[end.loop] = q.copy()
        first = self.first.get(end.loop)
        return not any(all(self._holds(c, q, first) for c in group) for group in end.until)

    def _holds(self, condition: Condition, q: FloatArray, first: FloatArray | None) -> bool:
        quantity = condition.quantity
        assert isinstance(quantity, Quantity)  # the parser keeps signals out of loops
        column = QUANTITY_COLUMN[quantity]
        threshold = resolve(condition.value, Scope(self.variables, self.capacity_ah))
        if condition.of_first:
            threshold *= first[column] if first is not None else np.nan
        value = q[column]
        return bool(value >= threshold if condition.op is Op.GE else value <= threshold)
