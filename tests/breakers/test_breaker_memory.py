"""Memory stays flat however many calls are rejected (or admitted)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import Callable

import pytest
from breaker_helpers import FakeClock, ok, trip

from breakers import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from breakers.latency import BUCKET_COUNT, bucket_bounds

CALLS = 100_000
# A few KB of slack for interpreter caches; a leak of even 1 byte per call would be 100 KB.
SLACK = 16 * 1024


# Only what the library and this test allocate counts: other threads of the test process
# (servers, agents of earlier tests finishing their work) allocate too.
OURS = (
    tracemalloc.Filter(True, "*/breakers/*"),
    tracemalloc.Filter(True, __file__),
    tracemalloc.Filter(True, "*/breaker_helpers.py"),
)


def growth(run: Callable[[int], None]) -> int:
    """Bytes allocated by the library and still held after `run(CALLS)`, after a warm-up."""
    run(1000)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(OURS)
        run(CALLS)
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces(OURS)
    finally:
        tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def open_breaker(kind: str) -> CircuitBreaker:
    breaker = CircuitBreaker(
        kind, CircuitBreakerConfig(failure_threshold=1, timeout=3600, max_timeout=3600)
    )
    if kind == "forced":
        breaker.force_open("maintenance")
    else:
        trip(breaker)
    return breaker


@pytest.mark.parametrize("kind", ["open", "forced"])
def test_rejections_with_fallback_do_not_grow_memory(kind):
    breaker = open_breaker(kind)

    def run(n: int) -> None:
        for _ in range(n):
            breaker.call(ok, lambda: None)

    assert growth(run) < SLACK
    assert breaker.get_state()["rejected"] == CALLS + 1000


def test_rejections_raising_do_not_grow_memory():
    breaker = open_breaker("open")

    def run(n: int) -> None:
        for _ in range(n):
            with contextlib.suppress(CircuitOpenError):
                breaker.call(ok)

    assert growth(run) < SLACK


def test_async_rejections_do_not_grow_memory():
    breaker = open_breaker("open")

    async def reject_many(n: int) -> None:
        for _ in range(n):
            await breaker.call_async(ok, lambda: None)

    loop = asyncio.new_event_loop()
    try:
        assert growth(lambda n: loop.run_until_complete(reject_many(n))) < SLACK
    finally:
        loop.close()


@pytest.mark.parametrize("window_type", ["count", "time"])
def test_admitted_calls_keep_a_bounded_window(window_type, clock):
    config = CircuitBreakerConfig(
        window_type=window_type,
        sliding_window_size=100,
        window_duration=10,
        failure_threshold=1_000_000,
        failure_rate_threshold=1.0,
    )
    breaker = CircuitBreaker("closed", config, clock=clock)

    def run(n: int) -> None:
        for _ in range(n):
            clock.advance(0.01)  # time windows move through every bucket
            breaker.call(ok)

    assert growth(run) < SLACK
    assert breaker.get_state()["successes"] == CALLS + 1000


def every_bucket_duration(k: int) -> float:
    """A duration in bucket k % BUCKET_COUNT."""
    return bucket_bounds(k % BUCKET_COUNT)[0]


def call_lasting(breaker: CircuitBreaker, clock: FakeClock, seconds: float) -> None:
    """One call that lasts exactly ``seconds`` by ``clock``."""
    clock.now = 0.0

    def lasting() -> None:
        clock.advance(seconds)

    breaker.call(lasting)


def test_the_latency_histogram_holds_at_most_one_counter_per_bucket(clock):
    breaker = CircuitBreaker("histogram", CircuitBreakerConfig(), clock=clock)

    def run(n: int) -> None:
        for k in range(n):
            call_lasting(breaker, clock, every_bucket_duration(k))

    assert growth(run) < SLACK
    assert len(breaker.traffic()["latency"]) == BUCKET_COUNT


# A breaker's whole footprint: its window (10 outcomes), locks, counters and a
# histogram with every one of its 142 buckets in use (a few dozen is usual).
BYTES_PER_BREAKER = 20 * 1024


def test_memory_per_breaker_with_every_latency_bucket_in_use(clock):
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot().filter_traces(OURS)
        breakers = [CircuitBreaker(f"b{i}", clock=clock) for i in range(100)]
        for breaker in breakers:
            for k in range(BUCKET_COUNT):
                call_lasting(breaker, clock, every_bucket_duration(k))
        gc.collect()
        after = tracemalloc.take_snapshot().filter_traces(OURS)
    finally:
        tracemalloc.stop()
    per_breaker = sum(s.size_diff for s in after.compare_to(before, "filename")) / 100
    assert all(len(b.traffic()["latency"]) == BUCKET_COUNT for b in breakers)
    print(f"{per_breaker:.0f} bytes per breaker with {BUCKET_COUNT} latency buckets in use")
    assert per_breaker < BYTES_PER_BREAKER
