"""Sliding windows of call outcomes.

Outcomes are small ints: bit 0 set for a failure, bit 1 set for a slow call. Recording
an outcome must be safe without a lock, because the success path of a closed breaker
takes none:

* the count window is a plain ``collections.deque`` with ``maxlen``: ``append`` is a
  single C call, atomic under the GIL, and its memory is bounded by construction;
* the time window keeps a fixed ring of buckets whose counters are ``itertools.count``
  objects (``next()`` is atomic too); only moving to a new bucket takes a lock.

Reading a window (``window_counts``) happens on rare paths: failures, slow calls,
threshold evaluation and state reports.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable

__all__ = [
    "FAILURE",
    "SLOW",
    "SLOW_FAILURE",
    "SUCCESS",
    "TimeWindow",
    "Window",
    "count_value",
    "new_window",
    "window_counts",
]

SUCCESS = 0
FAILURE = 1
SLOW = 2
SLOW_FAILURE = FAILURE | SLOW

#: Buckets of a time window; the window covers between (n-1)/n and all of its duration.
TIME_BUCKETS = 20
#: Epoch of a bucket that never held a call (below any epoch a clock can produce).
_UNUSED = -(1 << 62)


def count_value(counter: itertools.count) -> int:  # type: ignore[type-arg]
    """Current value of an ``itertools.count`` without consuming it."""
    # repr is "count(N)"; this is the only stable read-only accessor across versions.
    return int(repr(counter)[6:-1])


class _Bucket:
    __slots__ = ("calls", "epoch", "failures", "settled", "slow")

    def __init__(self, epoch: int, calls: int = 0, failures: int = 0, slow: int = 0) -> None:
        self.epoch = epoch
        self.calls = itertools.count(calls)
        self.failures = itertools.count(failures)
        self.slow = itertools.count(slow)
        self.settled: tuple[int, int, int] | None = None

    def read(self) -> tuple[int, int, int]:
        return count_value(self.calls), count_value(self.failures), count_value(self.slow)


class TimeWindow:
    """Outcomes of the calls made in the last `duration` seconds, in a ring of buckets."""

    __slots__ = ("_buckets", "_clock", "_lock", "_scale", "duration")

    def __init__(self, duration: float, clock: Callable[[], float]) -> None:
        self.duration = duration
        self._clock = clock
        self._scale = TIME_BUCKETS / duration  # bucket epochs per second
        self._buckets = [_Bucket(_UNUSED) for _ in range(TIME_BUCKETS)]
        self._lock = threading.Lock()

    def _bucket(self, epoch: int) -> _Bucket:
        bucket = self._buckets[epoch % TIME_BUCKETS]
        if bucket.epoch != epoch:
            with self._lock:
                bucket = self._buckets[epoch % TIME_BUCKETS]
                if bucket.epoch < epoch:
                    # A fresh object, so a late writer still holding the expired bucket
                    # cannot leak its count into the new period.
                    bucket = self._buckets[epoch % TIME_BUCKETS] = _Bucket(epoch)
        return bucket

    def append(self, outcome: int) -> None:
        """Record one outcome now."""
        bucket = self._bucket(math.floor(self._clock() * self._scale))
        next(bucket.calls)
        if outcome:
            if outcome & FAILURE:
                next(bucket.failures)
            if outcome & SLOW:
                next(bucket.slow)

    def counts(self) -> tuple[int, int, int]:
        """(calls, failures, slow calls) currently inside the window."""
        current = math.floor(self._clock() * self._scale)
        oldest = current - TIME_BUCKETS + 1
        calls = failures = slow = 0
        for bucket in list(self._buckets):
            if bucket.epoch < oldest:
                continue
            if bucket.epoch < current:
                # A past bucket no longer changes (but for a call racing the bucket
                # switch), so it is read once: evaluation costs O(1) counter reads.
                if bucket.settled is None:
                    bucket.settled = bucket.read()
                values = bucket.settled
            else:
                values = bucket.read()
            calls += values[0]
            failures += values[1]
            slow += values[2]
        return calls, failures, slow

    def __len__(self) -> int:
        return self.counts()[0]

    def resized(self, duration: float) -> TimeWindow:
        """A window of another duration that keeps the outcomes of this one."""
        window = TimeWindow(duration, self._clock)
        oldest = math.floor(self._clock() * window._scale) - TIME_BUCKETS + 1
        merged: dict[int, list[int]] = {}
        for bucket in list(self._buckets):
            if bucket.epoch == _UNUSED:
                continue
            # Place each old bucket where its start time falls in the new ring.
            epoch = math.floor(bucket.epoch / self._scale * window._scale)
            if epoch < oldest:
                continue
            totals = merged.setdefault(epoch, [0, 0, 0])
            for i, value in enumerate(bucket.read()):
                totals[i] += value
        for epoch, (calls, failures, slow) in merged.items():
            slot = epoch % TIME_BUCKETS
            if window._buckets[slot].epoch < epoch:
                window._buckets[slot] = _Bucket(epoch, calls, failures, slow)
        return window


Window = deque[int] | TimeWindow


def new_window(
    window_type: str,
    size: int,
    duration: float,
    clock: Callable[[], float],
    previous: Window | None = None,
) -> Window:
    """A window for the given settings, keeping the outcomes of `previous` if compatible.

    A count window keeps the most recent outcomes that fit the new size; a time window
    keeps what falls inside the new duration. Switching between count and time windows
    starts empty, as one cannot be converted to the other.
    """
    if window_type == "count":
        items: Iterable[int] = previous if isinstance(previous, deque) else ()
        return deque(items, maxlen=size)
    if isinstance(previous, TimeWindow):
        if previous.duration == duration:
            return previous
        return previous.resized(duration)
    return TimeWindow(duration, clock)


def window_counts(window: Window) -> tuple[int, int, int]:
    """(calls, failures, slow calls) in a window."""
    if isinstance(window, deque):
        # copy() is one C call: a consistent snapshot even while other threads append.
        snapshot = window.copy()
        slow_failures = snapshot.count(SLOW_FAILURE)
        return (
            len(snapshot),
            snapshot.count(FAILURE) + slow_failures,
            snapshot.count(SLOW) + slow_failures,
        )
    return window.counts()
