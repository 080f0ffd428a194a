"""Threads and asyncio: probe limits and exact counts under contention."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import threading

import pytest
from breaker_helpers import Boom, ok, trip

from breakers import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    # Switch threads far more often than the default 5 ms so races would show up.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def half_open_breaker(clock, max_calls: int = 3) -> CircuitBreaker:
    config = CircuitBreakerConfig(
        failure_threshold=1, timeout=5, half_open_max_calls=max_calls, success_threshold=max_calls
    )
    breaker = CircuitBreaker("probe", config, clock=clock)
    trip(breaker)
    clock.advance(5)
    return breaker


@pytest.mark.parametrize("max_calls", [1, 3])
def test_threads_half_open_admits_exactly_max_calls_of_20(clock, max_calls):
    breaker = half_open_breaker(clock, max_calls)
    callers = 20
    start = threading.Barrier(callers)
    release = threading.Event()
    admitted: list[int] = []
    rejected: list[CircuitOpenError] = []
    lock = threading.Lock()

    def probe(i: int) -> int:
        with lock:
            admitted.append(i)
        assert release.wait(10)
        return i

    def caller(i: int) -> None:
        start.wait()
        try:
            breaker.call(probe, None, i)
        except CircuitOpenError as exc:
            with lock:
                rejected.append(exc)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    # Hold the admitted probes in flight until every other caller has been answered.
    for _ in range(1000):
        with lock:
            if len(rejected) == callers - max_calls:
                break
        threading.Event().wait(0.005)
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(admitted) == max_calls
    assert len(rejected) == callers - max_calls
    assert all(exc.state is CircuitState.HALF_OPEN for exc in rejected)
    assert breaker.state is CircuitState.CLOSED  # max_calls successes = success_threshold
    assert breaker.get_state()["rejected"] == callers - max_calls


@pytest.mark.parametrize("max_calls", [1, 3])
async def test_asyncio_half_open_admits_exactly_max_calls_of_20(clock, max_calls):
    breaker = half_open_breaker(clock, max_calls)
    release = asyncio.Event()
    admitted: list[int] = []

    async def probe(i: int) -> int:
        admitted.append(i)
        await release.wait()
        return i

    tasks = [asyncio.create_task(breaker.call_async(probe, None, i)) for i in range(20)]
    while sum(t.done() for t in tasks) < 20 - max_calls:
        await asyncio.sleep(0)
    assert len(admitted) == max_calls
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    rejected = [r for r in results if isinstance(r, CircuitOpenError)]
    assert len(rejected) == 20 - max_calls
    assert sorted(r for r in results if isinstance(r, int)) == sorted(admitted)
    assert breaker.state is CircuitState.CLOSED


def run_threads(count: int, target) -> None:
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        target(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()


def test_exact_counts_after_8_threads_of_mixed_calls():
    # Thresholds that cannot be reached by 1 failure in 10, so every call is admitted.
    config = CircuitBreakerConfig(
        failure_threshold=1_000_000,
        failure_rate_threshold=1.0,
        sliding_window_size=100,
        minimum_calls=100,
    )
    breaker = CircuitBreaker("exact", config)
    threads, per_thread = 8, 5000

    def raise_boom() -> None:
        raise Boom

    @breaker
    def decorated(i: int) -> int:
        return i

    def work(t: int) -> None:
        for i in range(per_thread):
            if i % 10 == 0:
                with contextlib.suppress(Boom):
                    breaker.call(raise_boom)
            elif i % 2:
                breaker.call(ok)
            else:
                decorated(i)

    run_threads(threads, work)
    state = breaker.get_state()
    total = threads * per_thread
    assert state["state"] == "closed"
    assert state["failures"] == total // 10
    assert state["successes"] == total - total // 10
    assert state["calls"] == total
    assert state["rejected"] == 0


async def test_exact_counts_with_many_tasks():
    config = CircuitBreakerConfig(
        failure_threshold=1_000_000,
        failure_rate_threshold=1.0,
        sliding_window_size=100,
        minimum_calls=100,
    )
    breaker = CircuitBreaker("tasks", config)

    async def maybe_fail(i: int) -> int:
        await asyncio.sleep(0)
        if i % 4 == 0:
            raise Boom
        return i

    async def worker(k: int, n: int) -> None:
        for i in range(n):
            with contextlib.suppress(Boom):
                await breaker.call_async(maybe_fail, None, i + k)

    await asyncio.gather(*(worker(k, 400) for k in range(50)))
    state = breaker.get_state()
    assert (state["calls"], state["failures"], state["successes"]) == (20_000, 5000, 15_000)


def test_concurrent_failures_trip_exactly_once():
    config = CircuitBreakerConfig(failure_threshold=5, timeout=60)
    breaker = CircuitBreaker("storm", config)
    events = []
    breaker.add_transition_listener(events.append)
    outcomes = {"failed": 0, "rejected": 0}
    lock = threading.Lock()

    def raise_boom() -> None:
        raise Boom

    def work(t: int) -> None:
        for _ in range(500):
            try:
                breaker.call(raise_boom)
            except Boom:
                key = "failed"
            except CircuitOpenError:
                key = "rejected"
            with lock:
                outcomes[key] += 1

    run_threads(8, work)
    state = breaker.get_state()
    assert [e.to_state for e in events] == [CircuitState.OPEN]
    assert state["trip_count"] == 1
    assert state["failures"] == outcomes["failed"]
    assert state["rejected"] == outcomes["rejected"]
    assert outcomes["failed"] + outcomes["rejected"] == 4000
    assert outcomes["failed"] >= 5


def test_threads_through_half_open_cycles_keep_a_consistent_history():
    # Threads hammer a breaker that keeps tripping and probing; every transition must
    # continue from the previous one and every call must be accounted for once.
    config = CircuitBreakerConfig(
        failure_threshold=3, timeout=0.001, half_open_max_calls=2, success_threshold=2
    )
    breaker = CircuitBreaker("cycles", config)
    events = []
    breaker.add_transition_listener(events.append)

    def sometimes(i: int) -> int:
        if i % 3:  # two in three fail: above the 0.5 failure rate
            raise Boom
        return i

    def work(t: int) -> None:
        for i in range(2000):
            with contextlib.suppress(Boom, CircuitOpenError):
                breaker.call(sometimes, None, i + t)

    run_threads(8, work)
    state = breaker.get_state()
    assert state["trip_count"] >= 2
    assert state["calls"] + state["rejected"] == 16_000
    assert state["successes"] + state["failures"] == state["calls"]
    assert events[0].from_state is CircuitState.CLOSED
    # Listeners get the changes in the order they happened: each continues the last.
    for previous, event in itertools.pairwise(events):
        assert event.from_state is previous.to_state, (previous, event)
    allowed = {
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    }
    assert all((e.from_state, e.to_state) in allowed for e in events)
    assert sum(e.to_state is CircuitState.OPEN for e in events) == state["trip_count"]


def test_time_window_counts_are_exact_under_threads():
    config = CircuitBreakerConfig(
        window_type="time",
        window_duration=3600,
        failure_threshold=1_000_000,
        failure_rate_threshold=1.0,
        minimum_calls=100_000,
    )
    breaker = CircuitBreaker("timed", config)

    def raise_boom() -> None:
        raise Boom

    def work(t: int) -> None:
        for i in range(2000):
            if i % 4 == 0:
                with contextlib.suppress(Boom):
                    breaker.call(raise_boom)
            else:
                breaker.call(ok)

    run_threads(8, work)
    state = breaker.get_state()
    assert (state["calls"], state["failures"]) == (16_000, 4000)
    assert state["failure_rate"] == 0.25  # every call is inside the hour-long window
