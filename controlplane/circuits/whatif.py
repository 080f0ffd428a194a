"""What a config would have done: the last hour's 10-second traffic totals replayed
through a model of the breaker's rules (docs/dashboard.md, "Config form").

It is an estimate. The traffic tables keep per-bucket totals of the whole circuit
(every instance added up), not the calls one by one, so the replay models one breaker
that sees all of the circuit's calls, ten seconds at a time:

* **Window.** After each bucket, a count window holds the newest ``sliding_window_size``
  calls of the buckets since the window started (the oldest bucket counted in part, at
  its own failure and slow shares); a time window holds the buckets of the last
  ``window_duration`` seconds (a part of a bucket when it is shorter than ten seconds).
  Once it holds ``minimum_calls`` calls (at most the window size for a count window),
  the circuit opens when failures / calls reach ``failure_rate_threshold``, or slow
  calls / calls reach ``slow_call_rate_threshold`` (slow: a call whose latency, read
  from the bucket's histogram, is at least ``slow_call_duration``).
* **Consecutive failures** only add up across buckets whose calls all failed; a bucket
  with a success ends the streak (the order of calls inside a bucket is not known).
* **Open** lasts the open timeout (``timeout``, grown by ``timeout_multiplier`` for each
  further trip without a close, capped at ``max_timeout``; no jitter). Buckets that
  start before it ends are skipped: their calls would have been rejected.
* **Half open**: the next bucket with calls decides the probes. They close the circuit
  when ``success_threshold`` probes in a row all succeed is more likely than not at
  that bucket's failure share ((1 - share) ** success_threshold >= 0.5); else it opens
  again (a trip). A close starts a fresh window.

The replay starts closed with an empty window at the start of the hour. Overrides are
not modelled, and calls that the real breaker rejected have no outcome to replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.utils import timezone

from breakers.config import CircuitBreakerConfig
from breakers.latency import bucket_value
from controlplane.circuits.models import Traffic10s

#: Seconds one traffic bucket covers.
STEP = Traffic10s.step
#: How far back the estimate looks.
PERIOD = timedelta(hours=1)


@dataclass(frozen=True)
class Bucket:
    """One 10-second bucket of a circuit's traffic: its start (epoch seconds), the calls
    that ran, how many failed, and their latency histogram ({bucket index: count})."""

    start: float
    calls: int
    failures: int
    latency: Mapping[int, int] = field(default_factory=dict)

    def slow(self, duration: float | None) -> int:
        """Calls at least ``duration`` seconds long (0 when slow-call detection is off)."""
        if duration is None:
            return 0
        slow = sum(n for i, n in self.latency.items() if bucket_value(i) >= duration)
        return min(slow, self.calls)


@dataclass(frozen=True)
class Replay:
    """What one config would have done over the replayed buckets."""

    opens: int  # entries to open (trips, re-opens after a failed probe included)
    open_seconds: float  # time spent open (until the probe's bucket)
    calls: int  # calls replayed
    buckets: int  # buckets with calls


@dataclass(frozen=True)
class Estimate:
    """The new config's replay beside the current one's, over the same buckets."""

    current: Replay
    new: Replay
    start: datetime
    end: datetime

    @property
    def has_traffic(self) -> bool:
        return self.current.calls > 0


@dataclass
class _Window:
    """The buckets since the window started: (start, calls, failures, slow), newest last."""

    config: CircuitBreakerConfig
    items: list[tuple[float, int, int, int]] = field(default_factory=list)

    def add(self, start: float, calls: int, failures: int, slow: int) -> None:
        self.items.append((start, calls, failures, slow))
        cfg = self.config
        if cfg.window_type == "time":  # keep only the buckets the window can still reach
            since = start + STEP - cfg.window_duration - STEP
            while self.items and self.items[0][0] < since:
                del self.items[0]

    def totals(self) -> tuple[float, float, float]:
        """(calls, failures, slow) the window holds after its newest bucket."""
        cfg = self.config
        calls = failures = slow = 0.0
        if not self.items:
            return calls, failures, slow
        if cfg.window_type == "time":
            since = self.items[-1][0] + STEP - cfg.window_duration
            for start, c, f, s in self.items:
                share = min(1.0, max(0.0, (start + STEP - since) / STEP))
                calls, failures, slow = calls + c * share, failures + f * share, slow + s * share
            return calls, failures, slow
        room = float(cfg.sliding_window_size)
        for _, c, f, s in reversed(self.items):
            share = min(1.0, room / c)
            calls, failures, slow = calls + c * share, failures + f * share, slow + s * share
            room -= c * share
            if room <= 0:
                break
        return calls, failures, slow

    def trips(self) -> bool:
        cfg = self.config
        calls, failures, slow = self.totals()
        minimum = cfg.minimum_calls
        if cfg.window_type == "count":
            minimum = min(minimum, cfg.sliding_window_size)
        # A little slack for the float shares of a partly counted bucket.
        if calls <= 0 or calls + 1e-9 < minimum:
            return False
        if failures / calls >= cfg.failure_rate_threshold - 1e-12:
            return True
        return (
            cfg.slow_call_duration is not None
            and slow / calls >= cfg.slow_call_rate_threshold - 1e-12
        )


def _open_timeout(cfg: CircuitBreakerConfig, trips: int) -> float:
    """The open timeout of the ``trips``-th consecutive trip (no jitter)."""
    cap = cfg.max_timeout if cfg.max_timeout is not None else cfg.timeout
    return min(cfg.timeout * cfg.timeout_multiplier ** max(0, trips - 1), cap)


def _probes_close(cfg: CircuitBreakerConfig, bucket: Bucket) -> bool:
    share = bucket.failures / bucket.calls
    return bool((1.0 - share) ** cfg.success_threshold >= 0.5)


def replay(buckets: Iterable[Bucket], config: Mapping[str, Any], end: float) -> Replay:
    """Replay ``buckets`` (any order; missing ones had no calls) up to ``end`` (epoch
    seconds) through ``config`` (wire fields; missing ones take the library defaults)."""
    cfg = CircuitBreakerConfig.from_dict(dict(config))
    ordered = sorted(buckets, key=lambda b: b.start)
    opens = 0
    open_seconds = 0.0
    streak = 0  # consecutive failures (whole failed buckets)
    trips = 0  # consecutive trips without a close (the timeout's growth)
    open_until: float | None = None  # while open (or half open): when the timeout ends
    opened_at = 0.0
    window = _Window(cfg)

    def trip(at: float) -> None:
        nonlocal opens, trips, open_until, opened_at, streak
        opens += 1
        trips += 1
        opened_at = at
        open_until = at + _open_timeout(cfg, trips)
        streak = 0

    for b in ordered:
        if b.calls <= 0:
            continue
        bucket_end = b.start + STEP
        if open_until is not None:
            if bucket_end <= open_until:
                continue  # still open: these calls would have been rejected
            # Half open: this bucket's first calls are the probes.
            open_seconds += max(open_until, b.start) - opened_at
            if _probes_close(cfg, b):
                open_until = None
                trips = 0
                window = _Window(cfg)
            else:
                trip(bucket_end)
            continue
        window.add(b.start, b.calls, b.failures, b.slow(cfg.slow_call_duration))
        if b.failures == b.calls:
            streak += b.calls
        else:
            streak = 0
        if streak >= cfg.failure_threshold or window.trips():
            trip(bucket_end)
    if open_until is not None:
        open_seconds += max(0.0, end - opened_at)  # open (lazily) until the next call
    return Replay(
        opens=opens,
        open_seconds=open_seconds,
        calls=sum(b.calls for b in ordered),
        buckets=sum(1 for b in ordered if b.calls > 0),
    )


def recent_buckets(circuit_id: int, start: datetime, end: datetime) -> list[Bucket]:
    """The circuit's 10-second traffic rows in ``[start, end)``."""
    rows = Traffic10s.objects.filter(
        circuit_id=circuit_id, bucket__gte=start, bucket__lt=end
    ).values_list("bucket", "calls", "failures", "latency")
    out = []
    for bucket, calls, failures, latency in rows:
        histogram = orjson.loads(latency) if isinstance(latency, (str, bytes)) else latency
        out.append(
            Bucket(
                start=bucket.timestamp(),
                calls=int(calls),
                failures=int(failures),
                latency={int(k): int(n) for k, n in (histogram or {}).items()},
            )
        )
    return out


def estimate(
    circuit_id: int,
    current: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    *,
    now: datetime | None = None,
    buckets: Sequence[Bucket] | None = None,
) -> Estimate:
    """Replay the circuit's last hour once for the ``current`` config (None: the
    library defaults) and once for ``new``, over the same buckets."""
    end = now or timezone.now()
    start = end - PERIOD
    rows = list(buckets) if buckets is not None else recent_buckets(circuit_id, start, end)
    stop = end.timestamp()
    return Estimate(
        current=replay(rows, current or {}, stop),
        new=replay(rows, new, stop),
        start=start,
        end=end,
    )
