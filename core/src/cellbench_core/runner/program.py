"""A plan compiled into a flat program, and a cursor that walks it for one channel.

Loops become a pair of instructions around their body, so a channel's position in its plan is
just a program counter and the loop counters: small, serialisable (a restarted station resumes
from it), and ready for jumps (labels and goto) as the language grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cellbench_core.plan.model import Loop, Node, Plan, StepSpec


@dataclass(frozen=True)
class LoopBegin:
    """Start of a loop: reset its counter; a counting loop starts a new cycle."""

    loop: int
    cycle: bool


@dataclass(frozen=True)
class LoopEnd:
    """End of a loop body: count the pass and jump back to ``begin`` until ``count`` is reached."""

    loop: int
    count: int
    begin: int  # program counter of the body's first instruction
    cycle: bool


Instruction = StepSpec | LoopBegin | LoopEnd


@dataclass(frozen=True)
class Program:
    """The flat program of a plan; ``step_index[pc]`` numbers the steps in plan order."""

    instructions: tuple[Instruction, ...]
    step_index: dict[int, int]
    loops: int
    steps_total: int  # steps a channel runs from start to end (loops unrolled), for progress

    @classmethod
    def compile(cls, plan: Plan) -> Program:
        """Flatten ``plan`` into instructions."""
        out: list[Instruction] = []
        loops = 0

        def emit(nodes: tuple[Node, ...]) -> None:
            nonlocal loops
            for node in nodes:
                if isinstance(node, Loop):
                    loop = loops
                    loops += 1
                    out.append(LoopBegin(loop, node.cycle))
                    begin = len(out)
                    emit(node.body)
                    out.append(LoopEnd(loop, node.count, begin, node.cycle))
                else:
                    out.append(node)

        def executions(nodes: tuple[Node, ...]) -> int:
            return sum(n.count * executions(n.body) if isinstance(n, Loop) else 1 for n in nodes)

        emit(plan.steps)
        index = {pc: i for i, pc in enumerate(
            pc for pc, ins in enumerate(out) if isinstance(ins, StepSpec))}
        return cls(tuple(out), index, loops, executions(plan.steps))


@dataclass
class Cursor:
    """One channel's position in a program: the step it runs, loop counters and cycle count."""

    program: Program
    pc: int = -1  # the current step's instruction; -1 before the first
    counters: list[int] = field(default_factory=list)
    cycle: int = 0

    def __post_init__(self) -> None:
        if not self.counters:
            self.counters = [0] * self.program.loops

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

    def advance(self) -> tuple[StepSpec, bool] | None:
        """Move to the next step; return it and whether a new cycle began, or None at the end."""
        new_cycle = False
        pc = self.pc + 1
        instructions = self.program.instructions
        while pc < len(instructions):
            ins = instructions[pc]
            if isinstance(ins, StepSpec):
                self.pc = pc
                if new_cycle:
                    self.cycle += 1
                return ins, new_cycle
            if isinstance(ins, LoopBegin):
                self.counters[ins.loop] = 0
                new_cycle = new_cycle or ins.cycle
                pc += 1
            else:
                self.counters[ins.loop] += 1
                if self.counters[ins.loop] < ins.count:
                    new_cycle = new_cycle or ins.cycle
                    pc = ins.begin
                else:
                    pc += 1
        self.pc = len(instructions)
        return None
