"""Call paths: call, call_async, the decorator, fallbacks, exception rules, listeners."""

from __future__ import annotations

import asyncio
import functools
import logging
import re

import pytest
from breaker_helpers import Boom, fail, ok, trip

from breakers import (
    CallEvent,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    CircuitState,
)

# The wire timestamp format (breakers.wire): UTC, microseconds, "Z".
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


# -- sync call -------------------------------------------------------------------------


def test_call_passes_arguments_and_returns_the_result(make_breaker):
    breaker = make_breaker()
    assert breaker.call(lambda a, b=0: a + b, None, 2, b=3) == 5
    assert breaker.call(func=lambda: "kw") == "kw"


def test_failure_reraises_the_original_exception(make_breaker):
    breaker = make_breaker()
    error = Boom("exact")

    def raise_it() -> None:
        raise error

    with pytest.raises(Boom) as info:
        breaker.call(raise_it)
    assert info.value is error


def test_fallback_gets_the_same_arguments_on_failure_and_rejection(make_breaker):
    breaker = make_breaker(failure_threshold=2)
    seen = []

    def fallback(*args, **kwargs):
        seen.append((args, kwargs))
        return "fallback"

    assert breaker.call(fail, fallback, 1, key="v") == "fallback"
    assert breaker.call(func=fail, fallback=fallback) == "fallback"
    assert breaker.state is CircuitState.OPEN
    assert breaker.call(ok, fallback, 2) == "fallback"  # rejected
    assert seen == [((1,), {"key": "v"}), ((), {}), ((2,), {})]
    state = breaker.get_state()
    assert (state["failures"], state["rejected"], state["calls"]) == (2, 1, 2)


def test_rejection_without_fallback_raises_circuit_open_error(make_breaker):
    breaker = make_breaker(failure_threshold=1, timeout=7)
    trip(breaker)
    with pytest.raises(CircuitOpenError, match=r"circuit 'b' is open; retry after 7.000s"):
        breaker.call(ok)
    called = []
    with pytest.raises(CircuitOpenError):
        breaker.call(called.append, None, 1)
    assert called == []


def test_circuit_open_error_pickles_with_its_attributes():
    import pickle

    error = pickle.loads(pickle.dumps(CircuitOpenError("x", CircuitState.OPEN, 1.5)))
    assert (error.name, error.state, error.retry_after) == ("x", CircuitState.OPEN, 1.5)


# -- exception classification ---------------------------------------------------------------


def test_only_failure_exceptions_count_other_exceptions_count_as_success(make_breaker):
    breaker = make_breaker(failure_threshold=1, failure_exceptions=(OSError,))

    def bad_value() -> None:
        raise ValueError("caller bug")

    with pytest.raises(ValueError):
        breaker.call(bad_value, lambda: "unused")  # not a failure: no fallback
    assert breaker.state is CircuitState.CLOSED
    assert breaker.get_state()["successes"] == 1

    def io() -> None:
        raise ConnectionError

    assert breaker.call(io, lambda: "fb") == "fb"
    assert breaker.state is CircuitState.OPEN


def test_ignored_exceptions_count_as_neither(make_breaker):
    breaker = make_breaker(failure_threshold=2, ignore_exceptions=(KeyError,))
    trip(breaker, 1)

    def missing() -> None:
        raise KeyError("k")

    for _ in range(3):
        with pytest.raises(KeyError):
            breaker.call(missing, lambda: "unused")
    # Not a success either: the failure streak is still 1.
    assert breaker.get_state()["failure_count"] == 1
    state = breaker.get_state()
    assert (state["successes"], state["failures"], state["calls"]) == (0, 1, 4)
    trip(breaker, 1)
    assert breaker.state is CircuitState.OPEN


def test_predicate_decides_failures(make_breaker):
    class HTTPError(Exception):
        def __init__(self, status: int) -> None:
            self.status = status

    breaker = make_breaker(
        failure_threshold=1, failure_predicate=lambda exc: getattr(exc, "status", 500) >= 500
    )

    def not_found() -> None:
        raise HTTPError(404)

    def unavailable() -> None:
        raise HTTPError(503)

    with pytest.raises(HTTPError):
        breaker.call(not_found)
    assert breaker.state is CircuitState.CLOSED
    with pytest.raises(HTTPError):
        breaker.call(unavailable)
    assert breaker.state is CircuitState.OPEN


def test_a_raising_predicate_counts_a_failure_and_is_logged(make_breaker, caplog):
    breaker = make_breaker(failure_threshold=1, failure_predicate=lambda exc: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="breakers"), pytest.raises(Boom):
        breaker.call(fail)
    assert breaker.state is CircuitState.OPEN
    assert "failure predicate" in caplog.text


def test_base_exceptions_are_not_failures(make_breaker):
    breaker = make_breaker(failure_threshold=1)

    def exit_now() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        breaker.call(exit_now, lambda: "unused")
    assert breaker.state is CircuitState.CLOSED
    assert breaker.get_state()["failures"] == 0
    assert breaker.get_state()["calls"] == 1


# -- decorator -------------------------------------------------------------------------------


def test_decorator_wraps_sync_functions(make_breaker):
    breaker = make_breaker(failure_threshold=2)

    @breaker
    def double(x: int) -> int:
        """Double it."""
        if x < 0:
            raise Boom
        return 2 * x

    assert double(4) == 8
    assert double.__name__ == "double" and double.__doc__ == "Double it."
    for _ in range(2):
        with pytest.raises(Boom):
            double(-1)
    with pytest.raises(CircuitOpenError):
        double(4)
    assert breaker.get_state()["rejected"] == 1


async def test_decorator_wraps_async_functions(make_breaker):
    breaker = make_breaker(failure_threshold=1)

    @breaker
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        if x < 0:
            raise Boom
        return x + 1

    assert asyncio.iscoroutinefunction(fetch)
    assert await fetch(1) == 2
    with pytest.raises(Boom):
        await fetch(-1)
    with pytest.raises(CircuitOpenError):
        await fetch(1)


def test_decorated_function_uses_the_full_path_when_not_fast(make_breaker, clock):
    breaker = make_breaker(failure_threshold=1, timeout=1, success_threshold=1)

    @breaker
    def ping() -> str:
        return "pong"

    trip(breaker)
    clock.advance(1)
    assert ping() == "pong"
    assert breaker.state is CircuitState.CLOSED


# -- async call ------------------------------------------------------------------------------


async def test_call_async_with_coroutine_functions_and_lambdas(make_breaker):
    breaker = make_breaker()

    async def add(a: int, b: int) -> int:
        return a + b

    assert await breaker.call_async(add, None, 1, 2) == 3
    # The seed's usage: a lambda returning a coroutine, sync or async fallbacks.
    assert await breaker.call_async(func=lambda: add(2, 2), fallback=lambda: -1) == 4
    assert await breaker.call_async(lambda: 5) == 5  # plain values are accepted too


async def test_call_async_fallbacks_sync_and_async(make_breaker):
    breaker = make_breaker(failure_threshold=2)

    async def afail() -> None:
        raise Boom

    async def afallback(x: int) -> str:
        return f"async {x}"

    assert await breaker.call_async(afail, lambda x: f"sync {x}", 1) == "sync 1"
    assert await breaker.call_async(afail, afallback, 2) == "async 2"
    assert breaker.state is CircuitState.OPEN
    assert await breaker.call_async(afail, afallback, 3) == "async 3"
    assert await breaker.call_async(afail, lambda x: x, 4) == 4
    with pytest.raises(CircuitOpenError):
        await breaker.call_async(afail)
    assert breaker.get_state()["rejected"] == 3


async def test_cancellation_is_not_a_failure_and_frees_the_probe(make_breaker, clock):
    breaker = make_breaker(
        failure_threshold=1, timeout=1, half_open_max_calls=1, success_threshold=1
    )
    trip(breaker)
    clock.advance(1)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(breaker.call_async(hang))
    await started.wait()
    with pytest.raises(CircuitOpenError):  # the only slot is taken
        await breaker.call_async(asyncio.sleep, None, 0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.get_state()["failures"] == 1
    await breaker.call_async(asyncio.sleep, None, 0)
    assert breaker.state is CircuitState.CLOSED


async def test_async_slow_calls_and_half_open(make_breaker, clock):
    breaker = make_breaker(
        failure_threshold=1, timeout=1, success_threshold=1, slow_call_duration=0.5
    )

    async def slow() -> str:
        clock.advance(1)
        return "slow"

    async def afail() -> None:
        raise Boom

    assert await breaker.call_async(slow) == "slow"
    with pytest.raises(Boom):
        await breaker.call_async(afail)
    clock.advance(1)
    assert await breaker.call_async(slow) == "slow"
    assert breaker.state is CircuitState.CLOSED
    assert breaker.get_state()["slow_calls"] == 2


# -- call listeners ------------------------------------------------------------------------------


def test_call_listeners_see_every_outcome_with_durations(make_breaker, clock):
    breaker = make_breaker(
        failure_threshold=1,
        ignore_exceptions=(KeyError,),
        slow_call_duration=2,
        failure_exceptions=(Boom,),
    )
    events: list[CallEvent] = []
    breaker.add_call_listener(events.append)

    def slow() -> str:
        clock.advance(3)
        return "late"

    def missing() -> None:
        raise KeyError

    def caller_bug() -> None:
        raise SystemError("not the dependency's fault")

    breaker.call(slow)
    with pytest.raises(KeyError):
        breaker.call(missing)
    with pytest.raises(SystemError):
        breaker.call(caller_bug)
    bug = events.pop()  # not a failure: a success that carries its exception
    assert bug.outcome == "success"
    assert bug.exception is not None and bug.exception.args == ("not the dependency's fault",)
    trip(breaker, 1)
    breaker.call(ok, lambda: None)
    assert [e.outcome for e in events] == ["success", "ignored", "failure", "rejected"]
    assert events[0].duration == 3.0 and events[0].slow is True
    assert isinstance(events[1].exception, KeyError)
    assert isinstance(events[2].exception, Boom) and events[2].slow is False
    assert events[3].duration is None and events[3].state is CircuitState.OPEN
    assert all(e.breaker == "b" for e in events)


async def test_call_listeners_on_async_calls(make_breaker):
    breaker = make_breaker()
    events: list[CallEvent] = []
    breaker.add_call_listener(events.append)
    await breaker.call_async(asyncio.sleep, None, 0)
    assert [e.outcome for e in events] == ["success"]
    breaker.remove_call_listener(events.append)
    await breaker.call_async(asyncio.sleep, None, 0)
    assert len(events) == 1


def test_a_raising_call_listener_never_breaks_the_call(make_breaker, caplog):
    breaker = make_breaker()

    def bad(event: CallEvent) -> None:
        raise RuntimeError("listener bug")

    breaker.add_call_listener(bad)
    with caplog.at_level(logging.ERROR, logger="breakers"):
        assert breaker.call(ok) == "ok"
        with pytest.raises(Boom):
            breaker.call(fail)
    assert caplog.text.count("call listener") == 2
    breaker.remove_call_listener(bad)
    assert breaker.call(ok) == "ok"


# -- state report --------------------------------------------------------------------------------


def test_get_state_has_the_seed_keys_and_the_counters(make_breaker, clock):
    breaker = make_breaker("feature_store", failure_threshold=2, timeout=30, slow_call_duration=1)
    state = breaker.get_state()
    assert state == {
        "name": "feature_store",
        "state": "closed",
        "failure_count": 0,
        "success_count": 0,
        "last_failure": None,
        "calls": 0,
        "successes": 0,
        "failures": 0,
        "slow_calls": 0,
        "rejected": 0,
        "fallbacks": 0,
        "failure_rate": 0.0,
        "trip_count": 0,
        "state_since": state["state_since"],
        "retry_after": None,
        "config_version": 0,
    }
    assert ISO_Z.match(state["state_since"])
    breaker.call(ok)
    trip(breaker, 2)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    state = breaker.get_state()
    assert state["state"] == "open"
    assert ISO_Z.match(state["last_failure"])
    assert (state["calls"], state["successes"], state["failures"], state["rejected"]) == (
        3,
        1,
        2,
        1,
    )
    assert state["failure_rate"] == pytest.approx(2 / 3)
    assert state["trip_count"] == 1 and state["retry_after"] == 30.0
    assert state["failure_count"] == 2


def test_bad_constructor_arguments(clock):
    with pytest.raises(ValueError, match=r"^name must be"):
        CircuitBreaker("")
    with pytest.raises(TypeError):
        CircuitBreaker("x", {"timeout": 1})  # type: ignore[arg-type]
    assert CircuitBreaker("x").config == CircuitBreakerConfig()


def test_the_default_clock_is_monotonic_time():
    breaker = CircuitBreaker("real", CircuitBreakerConfig(failure_threshold=1, timeout=0.05))
    trip(breaker)
    assert 0 < breaker.get_state()["retry_after"] <= 0.05
    import time

    time.sleep(0.06)
    assert breaker.call(ok) == "ok"
    assert breaker.state is CircuitState.HALF_OPEN


def test_partial_objects_and_methods_are_accepted(make_breaker):
    breaker = make_breaker()
    assert breaker.call(functools.partial(pow, 2), None, 5) == 32
    assert breaker.call("a-b".split, None, "-") == ["a", "b"]


async def test_call_async_awaits_any_awaitable_and_returns_plain_values(make_breaker):
    import types

    breaker = make_breaker()

    class Ready:
        def __await__(self):
            yield from ()
            return "custom"

    class Plain:
        pass

    @types.coroutine
    def generator_coroutine():
        yield from ()
        return "generator"

    def plain_generator():
        yield 1

    future = asyncio.get_running_loop().create_future()
    future.set_result("future")
    plain = Plain()
    for _ in range(2):  # the second round answers from the remembered types
        assert await breaker.call_async(lambda: Ready()) == "custom"
        assert await breaker.call_async(lambda: future) == "future"
        assert await breaker.call_async(generator_coroutine) == "generator"
        assert await breaker.call_async(lambda: plain) is plain
        gen = await breaker.call_async(plain_generator)
        assert list(gen) == [1]  # a plain generator is a value, not awaited
        assert await breaker.call_async(ok, None) == "ok"
        assert await breaker.call_async(fail, lambda: Ready()) == "custom"
