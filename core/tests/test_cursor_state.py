"""A cursor saved at any step and restored on the plan compiled again walks on exactly as the
original does, through nested loops, gotos and ``% of first`` loop conditions."""

from __future__ import annotations

import json
import random
import textwrap

import numpy as np
import pytest

from cellbench_core.plan import Quantity, parse_plan
from cellbench_core.plan.program import Program
from cellbench_core.runner.conditions import QUANTITY_COLUMN
from cellbench_core.runner.cursor import Cursor

PLAN = """\
name: flow
capacity: 2 Ah
steps:
  - Rest for 1 s
  - repeat: 5
    until: cycle_discharge_ah < 50 % of first
    steps:
      - mode: cc
        direction: charge
        current: 1 A
        label: charge
        until:
          - when: voltage >= 4.2 V
            then: next
          - when: temperature >= 45 °C
            then: end test
      - repeat: 3
        cycle: false
        steps:
          - mode: cc
            direction: discharge
            current: 1 A
            until:
              - when: voltage <= 2.5 V
                then: end loop
              - when: step_time >= 10 s
                then: next
          - mode: rest
            until:
              - when: step_time >= 5 s
                then: next
              - when: voltage >= 4.3 V
                then: goto charge
  - Rest for 2 s
"""


def walk(cursor: Cursor, rng: random.Random, q: np.ndarray) -> list[tuple[int, int]]:
    """Advance until the end by choices from ``rng``; the (pc, cycle) of every step reached."""
    seen = []
    column = QUANTITY_COLUMN[Quantity.CYCLE_DISCHARGE_AH]
    while True:
        group = rng.randrange(cursor.step.ends) if cursor.pc >= 0 else None
        q[column] = rng.uniform(0.5, 2.0)
        if cursor.advance(group, q) is None:
            return seen
        seen.append((cursor.pc, cursor.cycle))
        if len(seen) > 500:
            pytest.fail("the walk does not end")


@pytest.mark.parametrize("seed", range(20))
def test_a_restored_cursor_walks_on_as_the_original(seed: int) -> None:
    program = Program.compile(parse_plan(PLAN, "plan.yaml"))
    q = np.full(len(QUANTITY_COLUMN), np.nan)
    whole = walk(Cursor(program, capacity_ah=2.0), random.Random(seed), q.copy())
    assert len(whole) > 1
    stop = random.Random(seed + 1000).randrange(1, len(whole) + 1)
    # Walk the same choices to the step where the station dies, save, restore, walk on.
    rng = random.Random(seed)
    cursor = Cursor(program, capacity_ah=2.0)
    column = QUANTITY_COLUMN[Quantity.CYCLE_DISCHARGE_AH]
    for _ in range(stop):
        group = rng.randrange(cursor.step.ends) if cursor.pc >= 0 else None
        q[column] = rng.uniform(0.5, 2.0)
        cursor.advance(group, q)
    state = json.loads(json.dumps(cursor.state(), allow_nan=False))
    restored = Cursor.restore(Program.compile(parse_plan(PLAN, "plan.yaml")), state)
    assert restored.state() == cursor.state()
    assert restored.step_index == cursor.step_index
    assert whole[:stop] + walk(restored, rng, q) == whole


def test_a_state_that_does_not_fit_the_plan_is_refused() -> None:
    program = Program.compile(parse_plan(PLAN, "plan.yaml"))
    other = Program.compile(parse_plan("name: t\nsteps:\n" + textwrap.indent(
        "- Rest for 1 s\n", "  "), "other.yaml"))
    cursor = Cursor(program)
    cursor.advance()
    cursor.advance(0)
    with pytest.raises(ValueError, match="does not fit the plan"):
        Cursor.restore(other, cursor.state())
    with pytest.raises(ValueError, match="not readable"):
        Cursor.restore(program, {"pc": 0})
