"""MQTT live data: 1,000 channels at 1 Hz published live to the broker while the station serves
them; the delivery latency as a subscriber in another process measures it (p50/p95/p99, from
the moment the station handed a sample over to its arrival), and the station process's CPU with
the MQTT notifier and, in the same run, without it (the baseline: the same station, its samples
measured, checked and committed, nothing published).

Needs Mosquitto on 127.0.0.1:1883 (or --host/--port).

    .venv/bin/python bench/bench_mqtt.py [--channels 1000] [--seconds 20] [--warmup 5]

Prints figures; asserts nothing about time. Target: p95 < 100 ms; the notifier adds under 10 %
of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from cellbench_core.plugins import PluginManager
from cellbench_core.runner import ChannelState
from cellbench_core.service import StationService
from cellbench_core.station import Station, station_from_dict
from cellbench_core.storage import open_database
from cellbench_core.storage.queue import TestQueue
from cellbench_hal import RealClock

RESTING = """\
name: resting
steps:
  - Rest for 10 hours
"""

#: The subscriber: prints "ready", then (unix time of each sample, its arrival) as JSON once
#: a line comes on its stdin.
SUBSCRIBER = """
import json, sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
arrivals = []
ready = threading.Event()

def on_message(client, userdata, message):
    now = time.time()
    arrivals.append((json.loads(message.payload)["unix_time_s"], now))

client = mqtt.Client(CallbackAPIVersion.VERSION2)
client.on_message = on_message
client.on_subscribe = lambda *args: ready.set()
client.connect(host, port)
client.subscribe(topic, qos=0)
client.loop_start()
ready.wait(10)
print("ready", flush=True)
sys.stdin.readline()
client.loop_stop()
json.dump(arrivals, sys.stdout)
"""


def trial(channels: int, seconds: float, warmup: float, mqtt: dict[str, Any] | None
          ) -> tuple[float, int, float]:
    """Serve ``channels`` resting simulated channels in real time (with the MQTT notifier
    ``mqtt``, or none), settle ``warmup`` s once every test runs, then watch ``seconds``;
    return the station process's CPU seconds per wall second in the window, the samples taken
    in it, and the window's start (Unix time)."""
    with tempfile.TemporaryDirectory(prefix="cellbench-bench-") as folder:
        db = open_database(f"sqlite:///{Path(folder) / 'station.db'}")
        manager = PluginManager()
        manager.load()
        config: dict[str, Any] = {
            "station": {"name": "bench", "database": db.url, "sample_period": "1 s",
                        "queue_poll_interval": "0.1 s", "ring_size": 10},
            "channels": [{"driver": "sim", "settings": {"count": channels, "seed": 1}}]}
        if mqtt is not None:
            config["notifiers"] = [{"kind": "mqtt", "settings": mqtt}]
        station = Station(station_from_dict(config), manager, base_dir=Path(folder))
        queue = TestQueue(db)
        for channel in range(1, channels + 1):
            queue.add(channel, RESTING)
        service = StationService(station, db, RealClock(), manager.hook)

        async def main() -> tuple[float, int, float]:
            serving = asyncio.create_task(service.serve())
            await service.ready.wait()
            while any(service.runner.state(n) is not ChannelState.RUNNING
                      for n in range(1, channels + 1)):
                await asyncio.sleep(0.2)
            await asyncio.sleep(warmup)
            start, cpu, samples = time.time(), time.process_time(), service.runner.samples
            await asyncio.sleep(seconds)
            used = (time.process_time() - cpu) / (time.time() - start)
            taken = service.runner.samples - samples
            service.shutdown()
            await serving
            return used, taken, start

        try:
            return asyncio.run(main())
        finally:
            db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args()
    prefix = f"cbbench-{uuid.uuid4().hex[:8]}"
    print(f"{args.channels:,} channels at 1 Hz, {args.warmup:g} s settling, {args.seconds:g} s "
          f"measured; broker {args.host}:{args.port}", flush=True)

    base_cpu, base_samples, _ = trial(args.channels, args.seconds, args.warmup, None)
    print(f"without the notifier: {base_cpu:6.1%} of one core, {base_samples:,} samples",
          flush=True)

    subscriber = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, args.host, str(args.port),
         f"{prefix}/bench/channel/+/live"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    assert subscriber.stdin is not None and subscriber.stdout is not None
    if subscriber.stdout.readline() != "ready\n":
        raise SystemExit("the subscriber did not connect to the broker")
    mqtt_cpu, mqtt_samples, start = trial(
        args.channels, args.seconds, args.warmup,
        {"host": args.host, "port": args.port, "topic_prefix": prefix, "live_every": 1})
    time.sleep(1.0)  # the last samples of the window on their way
    subscriber.stdin.write("stop\n")
    subscriber.stdin.flush()
    arrivals = np.array(json.loads(subscriber.stdout.read()) or [[0.0, 0.0]])
    subscriber.wait()
    window = arrivals[(arrivals[:, 0] >= start) & (arrivals[:, 0] < start + args.seconds)]
    latency_ms = (window[:, 1] - window[:, 0]) * 1e3
    p50, p95, p99 = np.percentile(latency_ms, [50, 95, 99]) if len(window) else (np.nan,) * 3
    print(f"with the MQTT notifier: {mqtt_cpu:6.1%} of one core, {mqtt_samples:,} samples, "
          f"{len(window):,} received in the window ({len(window) / max(mqtt_samples, 1):.1%})")
    print(f"latency station -> subscriber: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
          f"p99 {p99:.1f} ms (target p95 < 100 ms)")
    print(f"the notifier adds {mqtt_cpu - base_cpu:+.1%} of one core "
          f"({mqtt_cpu / base_cpu:.2f}x the baseline; target under 10 % of one core)")


if __name__ == "__main__":
    main()
