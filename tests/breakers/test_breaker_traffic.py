"""Cumulative counters and the latency histogram of a breaker: exact under threads and
tasks, nothing measured for rejected calls."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import Counter

import pytest
from breaker_helpers import Boom, FakeClock, fail, ok, trip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from breakers import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from breakers.latency import bucket_index

# Durations spanning many buckets (and both open-ended ones).
DURATIONS = (0.0, 0.00005, 0.0001, 0.00042, 0.003, 0.0171, 0.25, 1.9, 33.0, 60.0, 400.0)
NEVER_TRIPS = {
    "failure_threshold": 1_000_000,
    "failure_rate_threshold": 1.0,
    "minimum_calls": 100_000,
    "sliding_window_size": 100_000,
}


class PerThreadClock:
    """A clock each thread moves on its own: a call's duration is what it advanced.

    Every call starts at 0.0 (``restart``), so durations are exact floats."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self) -> float:
        return getattr(self._local, "now", 0.0)

    def restart(self) -> None:
        self._local.now = 0.0

    def advance(self, seconds: float) -> None:
        self._local.now = self() + seconds


def test_a_new_breaker_counted_nothing(make_breaker):
    assert make_breaker().traffic() == {
        "calls": 0,
        "successes": 0,
        "failures": 0,
        "slow_calls": 0,
        "rejected": 0,
        "fallbacks": 0,
        "latency": {},
    }


def test_every_call_that_ran_is_measured_once(make_breaker, clock):
    breaker = make_breaker(failure_threshold=100, slow_call_duration=1.0)

    def lasting(seconds: float, raise_: bool = False):
        def run() -> str:
            clock.advance(seconds)
            if raise_:
                raise Boom
            return "ok"

        return run

    breaker.call(lasting(0.002))
    breaker.call(lasting(1.5))  # slow
    assert breaker.call(lasting(0.02, raise_=True), lambda: "fb") == "fb"
    with pytest.raises(KeyboardInterrupt):
        breaker.call(lambda: (clock.advance(0.3), (_ for _ in ()).throw(KeyboardInterrupt))[1])
    traffic = breaker.traffic()
    assert traffic["latency"] == {
        bucket_index(0.002): 1,
        bucket_index(1.5): 1,
        bucket_index(0.02): 1,
        bucket_index(0.3): 1,
    }
    assert (traffic["calls"], traffic["successes"], traffic["failures"]) == (4, 2, 1)
    assert (traffic["slow_calls"], traffic["fallbacks"], traffic["rejected"]) == (1, 1, 0)
    assert breaker.get_state()["fallbacks"] == 1


@pytest.mark.parametrize("how", ["tripped", "forced"])
def test_nothing_is_measured_for_a_rejected_call(make_breaker, how):
    breaker = make_breaker(failure_threshold=1, timeout=60)
    if how == "forced":
        breaker.force_open()
    else:
        trip(breaker)
    before = breaker.traffic()
    for _ in range(10):
        assert breaker.call(ok, lambda: "fallback") == "fallback"
    for _ in range(5):
        with pytest.raises(CircuitOpenError):
            breaker.call(ok)
    after = breaker.traffic()
    assert after["latency"] == before["latency"]
    assert after["calls"] == before["calls"]
    assert after["rejected"] - before["rejected"] == 15
    assert after["fallbacks"] - before["fallbacks"] == 10


def test_a_fallback_that_raises_did_not_answer(make_breaker):
    breaker = make_breaker(failure_threshold=1, timeout=60)
    trip(breaker)

    def broken_fallback() -> str:
        raise RuntimeError("fallback down")

    with pytest.raises(RuntimeError):
        breaker.call(ok, broken_fallback)
    assert breaker.traffic()["fallbacks"] == 0
    assert breaker.traffic()["rejected"] == 1


def test_counters_are_exact_under_many_threads():
    threads, rounds = 8, 300
    clock = PerThreadClock()
    breaker = CircuitBreaker("threads", CircuitBreakerConfig(**NEVER_TRIPS), clock=clock)
    rejecting = CircuitBreaker("rejecting", clock=clock)
    rejecting.force_open()
    decorated_calls: list[int] = []

    @breaker
    def decorated(seconds: float) -> int:
        clock.advance(seconds)
        return 1

    def succeed(seconds: float) -> int:
        clock.advance(seconds)
        return 1

    def failing(seconds: float) -> int:
        clock.advance(seconds)
        raise Boom

    start = threading.Barrier(threads)

    def worker(k: int) -> None:
        start.wait()
        for r in range(rounds):
            seconds = DURATIONS[(k + r) % len(DURATIONS)]
            clock.restart()
            breaker.call(succeed, None, seconds)
            clock.restart()
            decorated(seconds)
            clock.restart()
            assert breaker.call(failing, lambda s: -1, seconds) == -1
            clock.restart()
            with contextlib.suppress(Boom):
                breaker.call(failing, None, seconds)
            assert rejecting.call(succeed, lambda s: 0, seconds) == 0
        decorated_calls.append(rounds)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not any(t.is_alive() for t in pool) and len(decorated_calls) == threads

    n = threads * rounds
    expected = Counter()
    for k in range(threads):
        for r in range(rounds):
            expected[bucket_index(DURATIONS[(k + r) % len(DURATIONS)])] += 4
    traffic = breaker.traffic()
    assert traffic["latency"] == dict(expected)
    assert (traffic["calls"], traffic["successes"], traffic["failures"]) == (4 * n, 2 * n, 2 * n)
    assert traffic["fallbacks"] == n and traffic["rejected"] == 0
    assert traffic["calls"] == sum(traffic["latency"].values())
    rejected = rejecting.traffic()
    assert (rejected["rejected"], rejected["fallbacks"], rejected["calls"]) == (n, n, 0)
    assert rejected["latency"] == {}


async def test_counters_are_exact_under_many_tasks():
    tasks, rounds = 50, 40
    now: contextvars.ContextVar[float] = contextvars.ContextVar("now", default=0.0)

    def clock() -> float:
        return now.get()

    breaker = CircuitBreaker("tasks", CircuitBreakerConfig(**NEVER_TRIPS), clock=clock)
    tripped = CircuitBreaker(
        "tripped", CircuitBreakerConfig(failure_threshold=1, timeout=3600), clock=FakeClock()
    )
    with contextlib.suppress(Boom):
        tripped.call(fail)

    async def succeed(seconds: float) -> int:
        now.set(now.get() + seconds)
        await asyncio.sleep(0)
        return 1

    async def failing(seconds: float) -> int:
        now.set(now.get() + seconds)
        await asyncio.sleep(0)
        raise Boom

    async def async_fallback(seconds: float) -> int:
        await asyncio.sleep(0)
        return -1

    decorated = breaker(succeed)

    async def worker(k: int) -> None:
        for r in range(rounds):
            seconds = DURATIONS[(k + r) % len(DURATIONS)]
            now.set(0.0)  # every call starts at 0.0: exact durations
            await breaker.call_async(succeed, None, seconds)
            now.set(0.0)
            await decorated(seconds)
            now.set(0.0)
            assert await breaker.call_async(failing, async_fallback, seconds) == -1
            now.set(0.0)
            with contextlib.suppress(Boom):
                await breaker.call_async(failing, None, seconds)
            assert await tripped.call_async(succeed, async_fallback, seconds) == -1

    await asyncio.gather(*(worker(k) for k in range(tasks)))
    n = tasks * rounds
    expected = Counter()
    for k in range(tasks):
        for r in range(rounds):
            expected[bucket_index(DURATIONS[(k + r) % len(DURATIONS)])] += 4
    traffic = breaker.traffic()
    assert traffic["latency"] == dict(expected)
    assert (traffic["calls"], traffic["successes"], traffic["failures"]) == (4 * n, 2 * n, 2 * n)
    assert traffic["fallbacks"] == n
    rejected = tripped.traffic()
    assert (rejected["rejected"], rejected["fallbacks"]) == (n, n)
    assert rejected["latency"] == {bucket_index(0.0): 1}  # the failure that tripped it


def test_counters_survive_reset_and_transitions(make_breaker, clock):
    breaker = make_breaker(failure_threshold=2, timeout=10, success_threshold=1)
    breaker.call(ok)
    trip(breaker)
    breaker.call(ok, lambda: None)  # rejected
    clock.advance(11)
    breaker.call(ok)  # the probe closes it
    breaker.reset()
    traffic = breaker.traffic()
    assert (traffic["calls"], traffic["successes"], traffic["failures"]) == (4, 2, 2)
    assert (traffic["rejected"], traffic["fallbacks"]) == (1, 1)
    assert traffic["latency"] == {0: 4}  # the fake clock stood still: below 100 us


def test_the_traffic_read_agrees_with_get_state(make_breaker):
    breaker = make_breaker(failure_threshold=3)
    breaker.call(ok)
    trip(breaker, 2)
    state, traffic = breaker.get_state(), breaker.traffic()
    for name in ("calls", "successes", "failures", "slow_calls", "rejected", "fallbacks"):
        assert state[name] == traffic[name], name


def test_a_slow_probe_is_measured_like_any_call():
    clock = FakeClock()
    breaker = CircuitBreaker(
        "probe",
        CircuitBreakerConfig(failure_threshold=1, timeout=1, slow_call_duration=0.5),
        clock=clock,
    )
    trip(breaker)
    clock.advance(2)

    def slow() -> str:
        clock.advance(0.75)
        return "ok"

    breaker.call(slow)
    assert breaker.traffic()["latency"] == {0: 1, bucket_index(0.75): 1}
    assert breaker.traffic()["slow_calls"] == 1


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seconds=st.floats(min_value=0.0, max_value=1e4, allow_nan=False))
def test_each_path_counts_a_call_in_the_bucket_of_its_duration(seconds):
    clock = FakeClock(0.0)

    def lasting() -> str:
        clock.advance(seconds)
        return "ok"

    async def alasting() -> str:
        clock.advance(seconds)
        return "ok"

    breaker = CircuitBreaker("any", CircuitBreakerConfig(**NEVER_TRIPS), clock=clock)
    decorated, adecorated = breaker(lasting), breaker(alasting)
    for run in (lambda: breaker.call(lasting), decorated):
        clock.now = 0.0
        run()

    async def both() -> None:
        for run in (lambda: breaker.call_async(alasting), adecorated):
            clock.now = 0.0
            await run()

    asyncio.run(both())
    assert breaker.traffic()["latency"] == {bucket_index(seconds): 4}
