"""A plan compiled into a flat program: what the runner walks, and the check of the plan's flow.

Loops become a pair of instructions around their body, so a channel's position in its plan is
just a program counter and the loop counters: small, serialisable (a restarted station resumes
from it), and ready for jumps. Every action of a step (next, goto, end loop, end test) becomes
the program counter the walk continues at, so following one is the same as moving on.

Compiling also checks the plan's flow: every goto names a label, jumps into no loop from outside
it, ``end loop`` sits inside a loop, and every step the plan can reach has some way to the end.
The parser compiles every plan it reads for that check; the cursor that walks a program for one
channel is the runner's (:mod:`cellbench_core.runner.cursor`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from cellbench_core.plan.model import (
    ActionKind,
    Condition,
    Loop,
    Message,
    Node,
    Plan,
    SetStep,
    StepSpec,
)

#: Where the walk continues when the test ends.
END = -1


class ProgramError(ValueError):
    """The plan's flow is wrong; names the plan line and the field at fault there, and the step
    or action (``node``) at fault."""

    def __init__(self, line: int, field: str, message: str, node: object = None) -> None:
        self.line, self.field, self.message, self.node = line, field, message, node
        super().__init__(f"line {line}: {field}: {message}" if field else f"line {line}: {message}")


@dataclass(frozen=True)
class LoopBegin:
    """Start of a loop: reset its counter; a counting loop starts a new cycle."""

    loop: int
    cycle: bool


@dataclass(frozen=True)
class LoopEnd:
    """End of a loop body: count the pass and jump back to ``begin`` until ``count`` passes are
    done or ``until`` holds."""

    loop: int
    count: int | None
    begin: int  # program counter of the body's first instruction
    cycle: bool
    until: tuple[tuple[Condition, ...], ...] = ()


#: What a walk passes on its way to the next step (messages and set steps): the engine acts on
#: them in order before the step starts.
Passed = Message | SetStep
Instruction = StepSpec | LoopBegin | LoopEnd | Passed


@dataclass(frozen=True)
class Program:
    """The flat program of a plan; ``step_index[pc]`` numbers the steps in plan order and
    ``continue_at[pc][group]`` is where the walk goes on when the step's group ``group`` holds."""

    instructions: tuple[Instruction, ...]
    step_index: dict[int, int]
    loops: int
    steps_total: int  # steps from start to end when every loop runs its count (or one pass)
    continue_at: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @cached_property
    def chamber_steps(self) -> bool:
        """Whether any step sets the climate chamber (its chamber then waits for the test)."""
        return any(isinstance(ins, StepSpec) and ins.chamber is not None
                   for ins in self.instructions)

    @classmethod
    def compile(cls, plan: Plan) -> Program:
        """Flatten ``plan`` into instructions; raise :class:`ProgramError` on a flow error."""
        out: list[Instruction] = []
        loops = 0
        enclosing: dict[int, tuple[int, ...]] = {}  # step pc -> LoopEnd pcs, innermost last
        ends: dict[int, int] = {}  # a loop's marker -> its LoopEnd pc, known once emitted

        def emit(nodes: tuple[Node, ...], around: tuple[int, ...]) -> None:
            nonlocal loops
            for node in nodes:
                if isinstance(node, Loop):
                    loop = loops
                    loops += 1
                    out.append(LoopBegin(loop, node.cycle))
                    begin = len(out)
                    marker = -2 - loop  # stands for this loop's LoopEnd pc until it is known
                    emit(node.body, (*around, marker))
                    out.append(LoopEnd(loop, node.count, begin, node.cycle, node.until))
                    ends[marker] = len(out) - 1
                else:
                    if isinstance(node, StepSpec):
                        enclosing[len(out)] = around
                    out.append(node)

        def executions(nodes: tuple[Node, ...]) -> int:
            return sum((n.count or 1) * executions(n.body) if isinstance(n, Loop)
                       else int(isinstance(n, StepSpec)) for n in nodes)

        emit(plan.steps, ())
        enclosing = {pc: tuple(ends[m] for m in around) for pc, around in enclosing.items()}
        steps = [pc for pc, ins in enumerate(out) if isinstance(ins, StepSpec)]
        labels = {ins.label: pc for pc, ins in enumerate(out)
                  if isinstance(ins, StepSpec) and ins.label is not None}
        continue_at = {pc: _targets(out, pc, enclosing, labels) for pc in steps}
        program = cls(tuple(out), {pc: i for i, pc in enumerate(steps)}, loops,
                      executions(plan.steps), continue_at)
        program._check_exits()
        return program

    def landings(self, start: int) -> set[int]:
        """The steps (or :data:`END`) a walk from ``start`` can stop at, whatever loops do."""
        found: set[int] = set()
        todo, seen = [start], set()
        while todo:
            pc = todo.pop()
            if pc in seen:
                continue
            seen.add(pc)
            if pc == END or pc >= len(self.instructions):
                found.add(END)
                continue
            ins = self.instructions[pc]
            if isinstance(ins, StepSpec):
                found.add(pc)
            elif isinstance(ins, LoopEnd):
                todo.append(pc + 1)
                if ins.count is None or ins.count > 1:
                    todo.append(ins.begin)
            else:
                todo.append(pc + 1)
        return found

    def leading_chamber_steps(self) -> tuple[StepSpec, ...]:
        """The chamber steps every run of the plan meets first, in the order it meets them, as
        far as that is known without running it: the walk follows the plan until a jump (a
        goto, an ``end loop``, a loop's next pass) could skip or repeat a chamber step."""
        chamber_at = [pc for pc, ins in enumerate(self.instructions)
                      if isinstance(ins, StepSpec) and ins.chamber is not None]

        def skips_none(a: int, b: int) -> bool:  # no chamber step between two pcs (a < b)
            return not any(a < pc < b for pc in chamber_at)

        met: list[StepSpec] = []
        pc = 0
        while pc < len(self.instructions):
            ins = self.instructions[pc]
            if isinstance(ins, StepSpec):
                if ins.chamber is not None:
                    met.append(ins)
                if not all(skips_none(min(pc, t - 1), max(pc + 1, t)) for t in
                           self.continue_at[pc] if t != END):
                    break
            elif (isinstance(ins, LoopEnd) and (ins.count is None or ins.count > 1)
                  and not skips_none(ins.begin - 1, pc)):
                break  # the next pass meets the body's chamber steps again
            pc += 1
        return tuple(met)

    def _check_exits(self) -> None:
        """Every step the plan can reach must have a way to the end."""
        successors = {pc: set().union(*(self.landings(target) for target in targets))
                      for pc, targets in self.continue_at.items()}
        # The steps with a way to the end: walked back from the end once (linear in the plan's
        # size; a plan of 40,000 steps is checked in a blink).
        predecessors: dict[int, list[int]] = {}
        for pc, after in successors.items():
            for landing in after:
                predecessors.setdefault(landing, []).append(pc)
        reach_end = {END}
        todo = [END]
        while todo:
            for pc in predecessors.get(todo.pop(), ()):
                if pc not in reach_end:
                    reach_end.add(pc)
                    todo.append(pc)
        reachable: set[int] = set()
        todo = list(self.landings(0))
        while todo:
            pc = todo.pop()
            if pc in reachable or pc == END:
                continue
            reachable.add(pc)
            todo.extend(successors[pc])
        stuck = sorted(reachable - reach_end)
        if stuck:
            step = self.instructions[stuck[-1]]  # the step that jumps back, as a rule
            assert isinstance(step, StepSpec)
            raise ProgramError(step.line, "until", "the plan can never end from this step: every "
                               "way on leads back here (give the loop a count, or a condition "
                               "that leaves it)", step)


def _targets(out: list[Instruction], pc: int, enclosing: dict[int, tuple[int, ...]],
             labels: dict[str, int]) -> tuple[int, ...]:
    step = out[pc]
    assert isinstance(step, StepSpec)
    targets = []
    for group in range(step.ends):
        action = step.action(group)
        where = action.line or step.line
        field = "" if action.line else "until"
        if action.kind is ActionKind.NEXT:
            targets.append(pc + 1)
        elif action.kind is ActionKind.END_TEST:
            targets.append(END)
        elif action.kind is ActionKind.END_LOOP:
            if not enclosing[pc]:
                raise ProgramError(where, field, "'end loop' needs a loop around the step",
                                   action if action.line else step)
            targets.append(enclosing[pc][-1] + 1)
        else:
            assert action.label is not None
            target = labels.get(action.label)
            if target is None:
                raise ProgramError(where, field, f"goto {action.label!r}: no step has "
                                   "this label", action if action.line else step)
            if enclosing[target] != enclosing[pc][: len(enclosing[target])]:
                raise ProgramError(where, field, f"goto {action.label!r} jumps into a loop "
                                   "from outside it; jump to a step of the same or an outer loop",
                                   action if action.line else step)
            targets.append(target)
    return tuple(targets)
