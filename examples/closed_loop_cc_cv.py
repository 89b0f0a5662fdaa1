"""A closed-loop CC-CV charge computed outside the station, over rci.

The station runs a plan whose step on the channel is ``external`` (see docs/plans.md); this
client subscribes to the channel's samples and answers every sample with a setpoint it computes
itself: a constant current until the cell reaches the target voltage, then its own constant
voltage, an integral controller that trims the current to hold the voltage (the channel only
ever runs CC), until the current has fallen to the cutoff. Then it sets REST and ends the step
with NEXT; the plan goes on. The station checks every setpoint against the plan's and the
battery's limits, and switches the output off if this client goes silent for the watchdog.

    python examples/closed_loop_cc_cv.py --port 5025 --channel 1 \\
        --current 1.25 --voltage 4.1 --cutoff 0.125

The controller's gain comes from the cell's resistance, measured from the voltage step when the
constant current begins (so it needs no model of the cell).
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import dataclass

from cellbench_rci.client import RciClient, RciError

#: How much of the way to the target voltage each sample's correction goes (0 to 1: below 1
#: the controller settles without overshoot, whatever the sample period).
CV_GAIN = 0.5
#: The resistance assumed if the first samples do not show it (Ω).
FALLBACK_RESISTANCE_OHM = 0.05


class LatestSample:
    """The newest ``*SAMPLE`` push of each channel (the client's ``on_push``): a controller
    answers the newest sample, never a backlog of stale ones."""

    def __init__(self) -> None:
        self._lines: dict[int, str] = {}
        self._changed = threading.Condition()

    def put(self, line: str) -> None:
        """Take a pushed line (called on the client's reader thread)."""
        words = line.split(maxsplit=2)
        if words[0] == "*SAMPLE":
            with self._changed:
                self._lines[int(words[1])] = line
                self._changed.notify_all()

    def take(self, channel: int, timeout: float) -> str:
        """The newest sample of ``channel`` not taken yet, waiting up to ``timeout`` s for
        one; TimeoutError if none came."""
        with self._changed:
            if not self._changed.wait_for(lambda: channel in self._lines, timeout):
                raise TimeoutError(f"no sample of channel {channel} for {timeout:g} s")
            return self._lines.pop(channel)


@dataclass(frozen=True)
class ChargeResult:
    """How the charge went: samples answered, setpoints sent, the resistance measured, the
    highest voltage seen and the current when it ended."""

    samples: int
    setpoints: int
    resistance_ohm: float
    voltage_max_v: float
    final_current_a: float


def charge_cc_cv(rci: RciClient, latest: LatestSample, channel: int, current_a: float,
                 voltage_v: float, cutoff_a: float, *, silence_s: float = 30.0) -> ChargeResult:
    """Charge ``channel`` (running an external step, from its start) CC ``current_a`` to
    ``voltage_v``, then at that voltage until the current is ``cutoff_a`` or less; then REST
    and NEXT. ``latest`` is ``rci``'s ``on_push``. Raises RciError if the station refuses a
    setpoint, TimeoutError if no sample comes for ``silence_s``."""
    rci.command(f"SUBSCRIBE {channel}")
    setpoints = samples = 0
    rest_v: float | None = None  # the first sample's voltage: the cell before any setpoint
    resistance: float | None = None
    current, highest, holding = current_a, 0.0, False
    while True:
        words = latest.take(channel, silence_s).split()
        voltage, measured = float(words[5]), float(words[6])
        samples += 1
        highest = max(highest, voltage)
        if rest_v is None:
            rest_v = voltage
        elif resistance is None:  # the voltage step of the current's start: R0 (and some R1)
            step_up = voltage - rest_v
            resistance = step_up / measured if measured > 0 and step_up > 0 else \
                FALLBACK_RESISTANCE_OHM
        holding = holding or voltage >= voltage_v
        if holding:  # the controller's own CV: integral action on the voltage error
            current = min(current_a, max(0.0, current + CV_GAIN * (voltage_v - voltage)
                                         / (resistance or FALLBACK_RESISTANCE_OHM)))
            if current <= cutoff_a:
                break
        rci.command(f"SET {channel} CC {current:.6g}")
        setpoints += 1
    rci.command(f"SET {channel} REST")
    rci.command(f"UNSUBSCRIBE {channel}")
    rci.command(f"NEXT {channel}")
    return ChargeResult(samples, setpoints + 1, resistance or FALLBACK_RESISTANCE_OHM, highest,
                        current)


def main(argv: list[str] | None = None) -> int:
    """Run the charge as the command line says; print how it went."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5025)
    parser.add_argument("--token", help="an operator token, if the station asks for one")
    parser.add_argument("--channel", type=int, required=True)
    parser.add_argument("--current", type=float, required=True, help="charge current (A)")
    parser.add_argument("--voltage", type=float, required=True, help="target voltage (V)")
    parser.add_argument("--cutoff", type=float, required=True, help="end current (A)")
    args = parser.parse_args(argv)
    try:
        latest = LatestSample()
        with RciClient.connect(args.host, args.port, token=args.token,
                               on_push=latest.put) as rci:
            result = charge_cc_cv(rci, latest, args.channel, args.current, args.voltage,
                                  args.cutoff)
    except (RciError, TimeoutError, ConnectionError, OSError) as err:
        print(f"closed_loop_cc_cv: {err}", file=sys.stderr)
        return 1
    print(f"charged: {result.samples} samples, {result.setpoints} setpoints, R "
          f"{result.resistance_ohm * 1000:.1f} mOhm, max {result.voltage_max_v:.4f} V, "
          f"ended at {result.final_current_a:.4f} A")
    return 0


if __name__ == "__main__":
    sys.exit(main())
