"""What publishing a live event costs its caller, before and after the delivery thread.

Run: REDIS_URL=redis://127.0.0.1:6379/14 .venv/bin/python benchmarks/bench_live_events.py [-n 1000]

Sends ``-n`` "fleet.transitions" events to the channel layer group "fleet" on Redis
(under a prefix of its own) two ways, from plain sync code as the intake's flusher
and Celery tasks do:

1. one ``async_to_sync(group_send)`` per event (how events left before
   ``controlplane/core/live.py``: a fresh event loop and Redis connection each time);
2. ``events.send_to_fleet_group`` now: the caller only queues; the delivery thread's
   loop keeps its connections. Prints the caller's cost and the time until all are sent.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SWITCHYARD_REDIS_PREFIX", f"bench-live-{os.getpid()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=1000)
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        sys.exit("set REDIS_URL")
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from controlplane.circuits import events
    from controlplane.core import live

    layer = get_channel_layer()
    event = events.transitions_event(service_id=1, service="bench", transitions=[])
    started = time.perf_counter()
    for _ in range(args.n):
        async_to_sync(layer.group_send)(events.FLEET_GROUP, dict(event))
    before = (time.perf_counter() - started) / args.n
    started = time.perf_counter()
    for _ in range(args.n):
        events.send_to_fleet_group(event)
    caller = (time.perf_counter() - started) / args.n
    live.dispatcher().wait_idle(60)
    delivered = (time.perf_counter() - started) / args.n
    print(f"{args.n} events, one async_to_sync each: {before * 1000:.3f} ms per event")
    print(
        f"{args.n} events, delivery thread: the caller {caller * 1000:.4f} ms per event, "
        f"all delivered after {delivered * 1000:.3f} ms per event "
        f"(sent {live.dispatcher().sent}, dropped {live.dispatcher().dropped})"
    )


if __name__ == "__main__":
    main()
