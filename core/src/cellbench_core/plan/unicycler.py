"""Plans from aurora-unicycler protocols, written as our plan YAML.

aurora-unicycler's CyclingProtocol JSON: ``sample`` (name, capacity_mAh), ``record`` (sampling,
which the station's channel decides here, so it is not imported), ``safety`` (limits) and
``method`` (steps). Its currents are positive when charging, like ours; ``rate_C`` wins over
``current_mA`` and a zero value means "not set", as in aurora-unicycler itself. A ``loop``
repeats the steps from its ``tag`` (or 1-based step number) up to it, ``cycle_count`` passes in
all: our ``repeat``.
"""

from __future__ import annotations

import json
import math
from typing import NoReturn

import yaml

from cellbench_core.plan.model import PlanError
from cellbench_core.plan.parser import parse_plan

_SAFETY_LIMITS = {"max_voltage_V": "voltage_max", "min_voltage_V": "voltage_min"}


def from_unicycler(text: str, name: str | None = None, source: str = "<unicycler>") -> str:
    """Our plan YAML for an aurora-unicycler protocol JSON ``text`` (named ``name``, else by its
    sample name); raises :class:`PlanError` naming the JSON path (``method[3].rate_C``) of what
    has no equivalent or is invalid."""
    try:
        data = json.loads(text, parse_constant=lambda word: _fail(source, "", f"{word} is not a "
                                                                   "number"))
    except json.JSONDecodeError as error:
        raise PlanError(source, error.lineno, "", f"not JSON: {error.msg}") from None
    if not isinstance(data, dict):
        _fail(source, "", "expected a JSON object (an aurora-unicycler protocol)")
    unknown = sorted(set(data) - {"unicycler", "sample", "record", "safety", "method"})
    if unknown:
        _fail(source, unknown[0], "not an aurora-unicycler protocol key")
    sample = _object(data, "sample", source)
    # "$NAME" is aurora-unicycler's placeholder for a sample not named yet.
    sample_name = str(sample.get("name") or "").replace("$NAME", "").strip()
    plan: dict[str, object] = {"name": name or sample_name or "Imported protocol"}
    capacity = _number(sample, "capacity_mAh", "sample", source)
    if capacity is not None:
        plan["capacity"] = f"{_g(capacity)} mAh"
    limits = _limits(_object(data, "safety", source), source)
    if limits:
        plan["limits"] = limits
    method = data.get("method")
    if not isinstance(method, list) or not method:
        _fail(source, "method", "expected a non-empty list of steps")
    origins: dict[str, str] = {}  # our step's path -> the protocol step's JSON path
    plan["steps"] = _unicycler_steps(method, source, origins)
    out = yaml.safe_dump(plan, sort_keys=False, allow_unicode=True, width=math.inf)
    try:
        parse_plan(out, source)
    except PlanError as error:
        # Name the protocol's step (or part) the error is about, not the YAML written from it.
        step = max((ours for ours in origins if error.field.startswith(ours)), key=len,
                   default=None)
        where = origins[step] if step else {"limits": "safety", "capacity": "sample"}.get(
            error.field.partition(".")[0], error.field)
        raise PlanError(source, 0, where, error.message) from None
    return out


def _fail(source: str, path: str, message: str) -> NoReturn:
    raise PlanError(source, 0, path, message)


def _g(value: float) -> str:
    """A number as plan text: short, but exact to 12 significant digits."""
    return f"{value:.12g}"


def _object(data: dict[str, object], key: str, source: str) -> dict[str, object]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        _fail(source, key, "expected an object")
    return value


def _number(data: dict[str, object], key: str, path: str, source: str) -> float | None:
    """``data[key]`` as a finite number, or None when absent, empty or zero (unset)."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        _fail(source, f"{path}.{key}", f"expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        _fail(source, f"{path}.{key}", f"expected a number, got {value!r}")
    if not math.isfinite(number):
        _fail(source, f"{path}.{key}", f"{value!r} is not a finite number")
    return number or None


def _rate(data: dict[str, object], key: str, path: str, source: str) -> float | None:
    """A C-rate: a number, or aurora-unicycler's fraction text (``C/5``, ``D/2`` = -0.5 C)."""
    value = data.get(key)
    if isinstance(value, str) and "/" in value:
        head, _, tail = value.replace(" ", "").partition("/")
        sign = -1.0 if head.startswith("D") else 1.0
        head = head.removeprefix("C").removeprefix("D") or "1"
        try:
            number = sign * float(head) / float(tail)
        except (ValueError, ZeroDivisionError):
            _fail(source, f"{path}.{key}", f"not a C-rate: {value!r}")
        if not math.isfinite(number):
            _fail(source, f"{path}.{key}", f"not a C-rate: {value!r}")
        return number or None
    return _number(data, key, path, source)


def _limits(safety: dict[str, object], source: str) -> dict[str, str]:
    unknown = sorted(set(safety) - {*_SAFETY_LIMITS, "max_current_mA", "min_current_mA",
                                    "max_capacity_mAh", "delay_s"})
    if unknown:
        _fail(source, f"safety.{unknown[0]}", "not an aurora-unicycler safety parameter")
    if _number(safety, "max_capacity_mAh", "safety", source) is not None:
        _fail(source, "safety.max_capacity_mAh", "no equivalent: a plan's limits have no "
              "capacity; end the steps on step_ah instead")
    delay = _number(safety, "delay_s", "safety", source)
    suffix = f" for {_g(delay)} s" if delay else ""
    limits = {ours: f"{_g(value)} V{suffix}" for key, ours in _SAFETY_LIMITS.items()
              if (value := _number(safety, key, "safety", source)) is not None}
    # Our current limit is on the magnitude: the larger of the charge and discharge bounds.
    currents = [abs(value) for key in ("max_current_mA", "min_current_mA")
                if (value := _number(safety, key, "safety", source)) is not None]
    if currents:
        limits["current_max"] = f"{_g(max(currents))} mA{suffix}"
    return limits


def _unicycler_steps(method: list[object], source: str, origins: dict[str, str]
                     ) -> list[object]:
    """The method's steps, tags dropped and each loop's range wrapped in a ``repeat``."""
    tags: dict[str, int] = {}
    for index, step in enumerate(method):
        if not isinstance(step, dict):
            _fail(source, f"method[{index}]", "expected an object")
        if step.get("step") == "tag":
            tags[str(step.get("tag"))] = index
    loops: dict[int, tuple[int, int]] = {}  # a loop's index -> (its first step's index, passes)
    for index, step in enumerate(method):
        assert isinstance(step, dict)
        if step.get("step") != "loop":
            continue
        path = f"method[{index}]"
        target, count = step.get("loop_to", 1), step.get("cycle_count")
        if isinstance(target, str):
            if target not in tags:
                _fail(source, f"{path}.loop_to", f"no tag {target!r}")
            start = tags[target] + 1
        elif isinstance(target, int) and not isinstance(target, bool) and 0 < target <= index:
            start = target - 1
        else:
            _fail(source, f"{path}.loop_to", f"expected a tag or a step number before the loop, "
                  f"got {target!r}")
        if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
            _fail(source, f"{path}.cycle_count", f"expected a count > 0, got {count!r}")
        if start >= index:
            _fail(source, f"{path}.loop_to", "the loop has no steps")
        loops[index] = (start, count)
    return _build(method, 0, len(method), loops, source, "steps", origins)


def _build(method: list[object], low: int, high: int, loops: dict[int, tuple[int, int]],
           source: str, path: str, origins: dict[str, str]) -> list[object]:
    """Our steps (at ``path``) for ``method[low:high]``; loops that start there and end inside
    nest. ``origins`` gets each of our steps' path and the protocol step it came from."""
    steps: list[object] = []
    index = low
    while index < high:
        # The outermost loop starting here (the one ending last) wraps the others.
        end = max((end for end, (start, _) in loops.items() if start == index and end < high),
                  default=None)
        if end is not None:
            count = loops[end][1]
            inner = {key: value for key, value in loops.items() if key != end}
            ours = f"{path}[{len(steps)}]"
            origins[ours] = f"method[{end}]"
            steps.append({"repeat": count, "steps": _build(method, index, end, inner, source,
                                                           f"{ours}.steps", origins)})
            index = end + 1
            continue
        step = method[index]
        assert isinstance(step, dict)
        if step.get("step") == "loop":
            _fail(source, f"method[{index}].loop_to", "loops cross: this loop starts inside "
                  "another loop and ends outside it")
        converted = _unicycler_step(step, f"method[{index}]", source)
        if converted is not None:
            origins[f"{path}[{len(steps)}]"] = f"method[{index}]"
            steps.append(converted)
        index += 1
    return steps


def _unicycler_step(step: dict[str, object], path: str, source: str) -> object:
    """One aurora-unicycler step as our step (None for a tag, which only marks a loop start)."""
    kind = step.get("step")
    allowed = {"step", "id", *_STEP_KEYS.get(str(kind), ())}
    if kind not in _STEP_KEYS:
        _fail(source, f"{path}.step", f"unknown step kind {kind!r}")
    unknown = sorted(set(step) - allowed)
    if unknown:
        _fail(source, f"{path}.{unknown[0]}", f"not a parameter of a {kind} step")
    time_s = _number(step, "until_time_s", path, source)
    duration = [f"for {_g(time_s)} s"] if time_s is not None else []
    if kind == "tag":
        return None
    if kind == "open_circuit_voltage":
        if time_s is None:
            _fail(source, f"{path}.until_time_s", "missing: a rest needs a duration")
        return f"Rest for {_g(time_s)} s"
    if kind == "constant_current":
        rate = _rate(step, "rate_C", path, source)
        current = _number(step, "current_mA", path, source)
        value = f"{_g(abs(rate))}C" if rate is not None else \
            f"{_g(abs(current))} mA" if current is not None else None
        if value is None:
            _fail(source, f"{path}.rate_C", "missing: set rate_C or current_mA (non-zero)")
        signed = rate if rate is not None else current
        assert signed is not None
        voltage = _number(step, "until_voltage_V", path, source)
        ends = duration + ([f"until {_g(voltage)} V"] if voltage is not None else [])
        if not ends:
            _fail(source, f"{path}.until_voltage_V", "missing: the step needs until_time_s or "
                  "until_voltage_V")
        verb = "Charge" if signed > 0 else "Discharge"
        return f"{verb} at {value} {' or '.join(ends)}"
    if kind == "constant_voltage":
        voltage = _number(step, "voltage_V", path, source)
        if voltage is None:
            _fail(source, f"{path}.voltage_V", "missing: a constant voltage step needs voltage_V")
        rate = _rate(step, "until_rate_C", path, source)
        current = _number(step, "until_current_mA", path, source)
        end = f"until {_g(abs(rate))}C" if rate is not None else \
            f"until {_g(abs(current))} mA" if current is not None else None
        ends = duration + ([end] if end else [])
        if not ends:
            _fail(source, f"{path}.until_time_s", "missing: the step needs until_time_s, "
                  "until_rate_C or until_current_mA")
        return f"Hold at {_g(voltage)} V {' or '.join(ends)}"
    if kind == "voltage_scan":
        start = _number(step, "start_voltage_V", path, source)
        end_v = _number(step, "end_voltage_V", path, source)
        rate_mv = _number(step, "scan_rate_mV_per_s", path, source)
        if start is None or end_v is None or rate_mv is None or rate_mv < 0 or start == end_v:
            _fail(source, path, "a voltage scan needs start_voltage_V, end_voltage_V (different) "
                  "and scan_rate_mV_per_s > 0")
        return {"mode": "ramp", "from": f"{_g(start)} V", "to": f"{_g(end_v)} V",
                "over": f"{_g(abs(end_v - start) * 1000 / rate_mv)} s"}
    _fail(source, f"{path}.step", f"no equivalent: cellbench plans have no {kind} step")


_STEP_KEYS: dict[str, tuple[str, ...]] = {
    "tag": ("tag",),
    "loop": ("loop_to", "cycle_count"),
    "open_circuit_voltage": ("until_time_s",),
    "constant_current": ("rate_C", "current_mA", "until_time_s", "until_voltage_V"),
    "constant_voltage": ("voltage_V", "until_time_s", "until_rate_C", "until_current_mA"),
    "voltage_scan": ("start_voltage_V", "end_voltage_V", "scan_rate_mV_per_s"),
    "impedance_spectroscopy": ("amplitude_V", "amplitude_mA", "start_frequency_Hz",
                               "end_frequency_Hz", "points_per_decade", "measures_per_point",
                               "drift_correction"),
}
