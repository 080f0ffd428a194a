"""The design promises of the hot paths: what a call may lock, read and keep."""

from __future__ import annotations

import threading

import pytest
from breaker_helpers import FakeClock, fail, ok, trip

from breakers import CircuitBreaker, CircuitBreakerConfig


class CountingClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


class CountingLock:
    """A real lock that counts how often it is taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acquired = 0

    def __enter__(self) -> bool:
        self.acquired += 1
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)


def instrumented(**fields: object) -> tuple[CircuitBreaker, CountingClock, CountingLock]:
    clock = CountingClock()
    breaker = CircuitBreaker("hot", CircuitBreakerConfig(**fields), clock=clock)
    lock = CountingLock()
    breaker._lock = lock  # type: ignore[assignment]
    return breaker, clock, lock


@pytest.mark.parametrize("path", ["call", "decorator"])
def test_closed_successes_take_no_lock_and_read_the_clock_twice(path):
    breaker, clock, lock = instrumented()
    run = breaker(ok) if path == "decorator" else (lambda: breaker.call(ok))
    for _ in range(20):  # fill the window past minimum_calls, use the latency bucket
        run()
    lock.acquired = clock.reads = 0
    for _ in range(1000):
        run()
    assert (lock.acquired, clock.reads) == (0, 2000)
    assert breaker.get_state()["successes"] == 1020


@pytest.mark.parametrize("path", ["call", "decorator"])
def test_a_latency_bucket_used_for_the_first_time_takes_the_lock_once(path):
    breaker, clock, lock = instrumented()

    def step() -> str:
        clock.advance(0.25)  # every call lasts 0.25 s
        return "ok"

    run = breaker(step) if path == "decorator" else (lambda: breaker.call(step))
    for _ in range(20):
        run()
    lock.acquired = 0

    def longer() -> str:
        clock.advance(2.0)
        return "ok"

    run_longer = breaker(longer) if path == "decorator" else (lambda: breaker.call(longer))
    for _ in range(10):
        run_longer()
    assert lock.acquired == 1
    assert sum(breaker.traffic()["latency"].values()) == 30


async def test_async_closed_successes_take_no_lock_and_read_the_clock_twice():
    breaker, clock, lock = instrumented()

    async def work() -> int:
        return 1

    decorated = breaker(work)
    for _ in range(20):
        await breaker.call_async(work)
    lock.acquired = clock.reads = 0
    for _ in range(500):
        await breaker.call_async(work)
        await decorated()
    assert (lock.acquired, clock.reads) == (0, 2000)


def test_only_the_first_success_after_a_failure_takes_the_lock():
    breaker, _clock, lock = instrumented(failure_threshold=100, minimum_calls=5)
    for _ in range(10):
        breaker.call(ok)
    trip(breaker, 1)
    lock.acquired = 0
    for _ in range(100):
        breaker.call(ok)
    assert lock.acquired == 1  # resets the failure streak once
    assert breaker.get_state()["failure_count"] == 0


def test_slow_call_detection_reads_the_clock_twice_per_call():
    breaker, clock, lock = instrumented(slow_call_duration=1.0)
    for _ in range(20):
        breaker.call(ok)
    clock.reads = lock.acquired = 0
    for _ in range(100):
        breaker.call(ok)
    assert clock.reads == 200
    assert lock.acquired == 0


def test_call_listeners_read_no_more_clock_than_the_latency_does():
    breaker, clock, _lock = instrumented()
    events: list[object] = []
    breaker.add_call_listener(events.append)
    clock.reads = 0
    breaker.call(ok)
    assert clock.reads == 2 and len(events) == 1
    breaker.remove_call_listener(events.append)
    clock.reads = 0
    breaker.call(ok)
    assert clock.reads == 2 and len(events) == 1


def test_a_rejection_reads_the_clock_once_and_takes_no_lock():
    breaker, clock, lock = instrumented(failure_threshold=1, timeout=60)
    trip(breaker)
    clock.reads = lock.acquired = 0
    for _ in range(100):
        assert breaker.call(fail, lambda: "fallback") == "fallback"
    assert (clock.reads, lock.acquired) == (100, 0)
    breaker.force_open()
    clock.reads = lock.acquired = 0
    for _ in range(100):
        breaker.call(ok, lambda: None)
    assert (clock.reads, lock.acquired) == (0, 0)
