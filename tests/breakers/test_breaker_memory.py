"""Memory stays flat however many calls are rejected (or admitted)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tracemalloc
from collections.abc import Callable

import pytest
from breaker_helpers import ok, trip

from breakers import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError

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
