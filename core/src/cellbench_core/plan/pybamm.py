"""Plans from PyBaMM experiment strings, written as our plan YAML.

PyBaMM experiment strings (``"Discharge at 1C until 2.5 V"``, ``"Rest for 1 hour"``) are what
our text steps were modelled on; the import drops PyBaMM's sampling-period suffix
(``"(1 minute period)"``) and turns a negative value after ``at`` into the opposite verb:
PyBaMM's currents and powers are positive when discharging, ours when charging, so
``"Discharge at -1 A"`` (PyBaMM) is ``"Charge at 1 A"`` (ours).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

import yaml

from cellbench_core.plan.model import PlanError
from cellbench_core.plan.parser import parse_plan

_PERIOD = re.compile(r"\s*\(\s*[^()]*\bperiod\s*\)\s*$", re.IGNORECASE)
_NEGATIVE = re.compile(r"^\s*(?P<verb>charge|discharge)(?P<at>\s+at\s+)-\s*", re.IGNORECASE)
_DRIVE_CYCLE = re.compile(r"^\s*run\b", re.IGNORECASE)
_FLIP = {"charge": "Discharge", "discharge": "Charge"}


def pybamm_steps(text: str) -> list[str]:
    """The experiment strings in ``text``: a JSON list of strings, or one string per line
    (blank lines and lines starting with ``#`` skipped)."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise ValueError(f"line {error.lineno}: not a JSON list of strings: {error.msg}")\
                from None
        if not (isinstance(items, list) and all(isinstance(item, str) for item in items)):
            raise ValueError("expected a JSON list of experiment strings")
        return items
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def from_pybamm(steps: Sequence[str], name: str, source: str = "<pybamm>", *,
                capacity: str | None = None, limits: Mapping[str, str] | None = None) -> str:
    """Our plan YAML for PyBaMM experiment ``steps``, with the battery's ``capacity`` (for the
    C-rates PyBaMM experiments mostly use, like ``'2.5 Ah'``) and safety ``limits`` (like
    ``{"voltage_min": "2.5 V"}``) if given; raises :class:`PlanError` naming the step (``source``
    and its 1-based number), the capacity or the limit that has no equivalent or does not
    parse."""
    if not steps:
        raise PlanError(source, 0, "", "no experiment steps")
    converted = [_step(step, source, number) for number, step in enumerate(steps, 1)]
    plan: dict[str, object] = {"name": name}
    if capacity is not None:
        plan["capacity"] = capacity
    if limits:
        plan["limits"] = dict(limits)
    plan["steps"] = converted
    text = yaml.safe_dump(plan, sort_keys=False, allow_unicode=True, width=math.inf)
    try:
        parse_plan(text, source)
    except PlanError as error:
        # Step n is on the n-th line after "steps:"; the lines above hold name, capacity, limits.
        number = error.line - text.splitlines().index("steps:") - 1
        if number <= 0:
            raise PlanError(source, 0, error.field, error.message) from None
        where = f"step {number} ({steps[number - 1]!r})" if number <= len(steps) else "plan"
        raise PlanError(source, number, f"steps[{number - 1}]",
                        f"{where}: {error.message}") from None
    return text


def _step(step: str, source: str, number: int) -> str:
    text = _PERIOD.sub("", " ".join(step.split()))
    if _DRIVE_CYCLE.match(text):
        raise PlanError(source, number, f"steps[{number - 1}]", f"step {number} ({step!r}): "
                        "PyBaMM drive cycles have no string form here; write the cycle as a CSV "
                        "table and use a profile step (mode: profile)")
    negative = _NEGATIVE.match(text)
    if negative:
        verb = _FLIP[negative["verb"].casefold()]
        text = f"{verb}{negative['at']}{text[negative.end():]}"
    return text
