"""Request rates of the agent endpoints: token buckets, in memory, per web process.

A bucket holds up to ``burst`` requests and refills at ``rate`` per second; a request
takes one, or is refused (429, ``Retry-After``) with the seconds until one is back.
Checking costs a dict lookup and a few float operations: no I/O, O(1), cheap enough for
the sync's hot path. The buckets live in each web process, so with N processes behind
a load balancer a client may get up to N times the rate; that is the bound documented
(docs/api.md): the limit is there to stop a runaway client, not to meter a fair one.

Three limits (settings, docs/api.md "Rate limits"):

* per agent token, the sync (``sync``) and the watch (``watch``) each:
  ``SWITCHYARD_AGENT_RATE_PER_SECOND`` / ``SWITCHYARD_AGENT_RATE_BURST`` (1,000/s,
  burst 5,000): a budget for a whole fleet sharing the token;
* per instance (agent token and the instance id the agent sends), the watch
  (``watch_instance``): ``SWITCHYARD_AGENT_WATCH_RATE_PER_SECOND`` /
  ``SWITCHYARD_AGENT_WATCH_RATE_BURST`` (2/s, burst 30): an agent asks once per change
  or per hold (25 s), so one asking dozens of times a second is spinning.

Only authenticated requests are counted (the key is the token's stored hash), so
unknown tokens cannot fill the table.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable

from django.conf import settings
from django.http import JsonResponse

from controlplane.core.errors import NON_FIELD, error_response

# Keys remembered per limiter; past it the table is emptied (every bucket full again).
MAX_KEYS = 100_000


class RateLimiter:
    """Token buckets by key. ``rate`` 0 means no limit. ``clock`` is injectable (tests)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if rate < 0:
            raise ValueError(f"rate must be at least 0, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[Hashable, list[float]] = {}  # key -> [tokens, when]
        self._lock = threading.Lock()

    def take(self, key: Hashable) -> float:
        """Take one request for ``key``: 0.0 if allowed, else the seconds to wait."""
        if not self.rate:
            return 0.0
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self._max_keys:
                    self._buckets.clear()
                self._buckets[key] = [self.burst - 1.0, now]
                return 0.0
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


_limiters: dict[tuple[str, int, int], RateLimiter] = {}
_limiters_lock = threading.Lock()

_SETTINGS = {
    "sync": ("SWITCHYARD_AGENT_RATE_PER_SECOND", "SWITCHYARD_AGENT_RATE_BURST"),
    "watch": ("SWITCHYARD_AGENT_RATE_PER_SECOND", "SWITCHYARD_AGENT_RATE_BURST"),
    "watch_instance": (
        "SWITCHYARD_AGENT_WATCH_RATE_PER_SECOND",
        "SWITCHYARD_AGENT_WATCH_RATE_BURST",
    ),
}


def limiter(kind: str) -> RateLimiter:
    """This process's limiter of ``kind`` (``sync``, ``watch``, ``watch_instance``), at
    the rate and burst the settings give now."""
    rate_name, burst_name = _SETTINGS[kind]
    key = (kind, getattr(settings, rate_name), getattr(settings, burst_name))
    found = _limiters.get(key)
    if found is None:
        with _limiters_lock:
            found = _limiters.setdefault(key, RateLimiter(key[1], key[2]))
    return found


def forget() -> None:
    """Drop every bucket (tests)."""
    with _limiters_lock:
        _limiters.clear()


def retry_after(wait: float) -> str:
    """The ``Retry-After`` value of a wait: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))


def too_many(wait: float, what: str) -> tuple[int, dict[str, str], dict[str, str]]:
    """A 429's status, error fields and headers: ``what`` says whose budget ran out."""
    seconds = retry_after(wait)
    reason = f"too many requests {what}; retry after {seconds} s"
    return 429, {NON_FIELD: reason}, {"Retry-After": seconds}


def too_many_response(wait: float, what: str) -> JsonResponse:
    status, errors, headers = too_many(wait, what)
    response = error_response(status, errors)
    for name, value in headers.items():
        response[name] = value
    return response
