"""Shadow evaluation: a candidate config beside the live one, never enforcing.

The equivalence properties feed one call sequence to a live breaker that lets every call
through (forced closed, or a config that cannot open) with a candidate beside it, and
the same sequence to a real breaker with the candidate config: the candidate's would-be
transitions (from, to, reason, clock reading) and rejections must be the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
from breaker_helpers import FakeClock, ok
from hypothesis import given, settings
from hypothesis import strategies as st

from breakers import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState
from breakers.breaker import SHADOW_TRANSITIONS_KEPT


class Failure(Exception):
    """Counted as a failure (the configs' failure_exceptions)."""


class Ignored(Exception):
    """Ignored (the configs' ignore_exceptions)."""


class Answered(Exception):
    """Not a failure: the dependency answered."""


CODE = {"failure_exceptions": (Failure,), "ignore_exceptions": (Ignored,)}
RAISES = {"failure": Failure, "ignored": Ignored, "answered": Answered}
#: A live config that cannot open on fewer than a thousand calls.
NEVER_OPENS = CircuitBreakerConfig(
    failure_threshold=1_000_000,
    sliding_window_size=100_000,
    minimum_calls=100_000,
    **CODE,  # type: ignore[arg-type]
)
JITTER = 0.37  # the injected "random" source of both worlds

candidates = st.fixed_dictionaries(
    {
        "failure_threshold": st.integers(1, 4),
        "success_threshold": st.integers(1, 3),
        "timeout": st.sampled_from([0.5, 1.0, 2.5]),
        "half_open_max_calls": st.integers(1, 3),
        "failure_rate_threshold": st.sampled_from([0.2, 0.5, 0.75, 1.0]),
        "sliding_window_size": st.integers(1, 8),
        "minimum_calls": st.integers(1, 8),
        "window_type": st.sampled_from(["count", "time"]),
        "window_duration": st.sampled_from([1.0, 4.0, 10.0]),
        "slow_call_duration": st.sampled_from([None, None, 0.3, 1.0]),
        "slow_call_rate_threshold": st.sampled_from([0.3, 1.0]),
        "timeout_multiplier": st.sampled_from([1.0, 2.0]),
        "timeout_jitter": st.sampled_from([0.0, 0.2]),
    }
)
steps = st.lists(
    st.tuples(
        st.sampled_from(["success", "success", "failure", "failure", "ignored", "answered"]),
        st.sampled_from([0.0, 0.05, 0.4, 1.2]),  # how long the call lasts
        st.sampled_from([0.0, 0.0, 0.1, 0.7, 3.0]),  # time before the call starts
    ),
    max_size=60,
)
live_modes = st.sampled_from(["forced_closed", "never_opens"])

Step = tuple[str, float, float]
Seen = list[tuple[str, str, str, float]]


def recorder(breaker: CircuitBreaker, clock: FakeClock) -> Seen:
    seen: Seen = []
    breaker.add_transition_listener(
        lambda e: seen.append((e.from_state.value, e.to_state.value, e.reason, clock.now))
    )
    return seen


def work(outcome: str, duration: float, clock: FakeClock) -> Callable[[], str]:
    def run() -> str:
        clock.advance(duration)
        if outcome in RAISES:
            raise RAISES[outcome]()
        return "ok"

    return run


def awork(outcome: str, duration: float, clock: FakeClock) -> Callable[[], Any]:
    async def run() -> str:
        clock.advance(duration)
        await asyncio.sleep(0)
        if outcome in RAISES:
            raise RAISES[outcome]()
        return "ok"

    return run


def live_with_candidate(mode: str, wire: dict[str, Any]) -> tuple[CircuitBreaker, FakeClock, Seen]:
    clock = FakeClock()
    live = CircuitBreaker("db", NEVER_OPENS, clock=clock, rand=lambda: JITTER)
    if mode == "forced_closed":
        live.force_closed("shadow test")
    live.shadow(CircuitBreakerConfig(**wire, **CODE), 7)  # type: ignore[arg-type]
    assert live.shadow_breaker is not None
    return live, clock, recorder(live.shadow_breaker, clock)


def reference(wire: dict[str, Any]) -> tuple[CircuitBreaker, FakeClock, Seen]:
    clock = FakeClock()
    real = CircuitBreaker(
        "db",
        CircuitBreakerConfig(**wire, **CODE),  # type: ignore[arg-type]
        clock=clock,
        rand=lambda: JITTER,
    )
    return real, clock, recorder(real, clock)


def check_equivalent(
    live: CircuitBreaker, seen: Seen, real: CircuitBreaker, real_seen: Seen
) -> None:
    report = live.shadow_report()
    assert report is not None
    assert seen == real_seen
    assert report["rejected"] == real.traffic()["rejected"]
    assert report["unobserved"] == 0
    assert report["state"] is real.state
    assert report["opened"] == sum(1 for t in real_seen if t[1] == "open")
    assert report["half_opened"] == sum(1 for t in real_seen if t[1] == "half_open")
    assert report["closed"] == sum(1 for t in real_seen if t[1] == "closed")
    assert report["transition_count"] == len(real_seen)
    kept = [(e.from_state.value, e.to_state.value, e.reason) for e in report["transitions"]]
    assert kept == [t[:3] for t in real_seen][-SHADOW_TRANSITIONS_KEPT:]
    assert all(e.config_version == 7 for e in report["transitions"])
    # The live breaker let everything through and never changed state on its own.
    assert live.traffic()["rejected"] == 0
    assert live.state in (CircuitState.CLOSED, CircuitState.FORCED_CLOSED)


@settings(max_examples=600, deadline=None)
@given(wire=candidates, sequence=steps, mode=live_modes, decorated=st.booleans())
def test_the_candidate_does_what_a_breaker_with_its_config_does(
    wire: dict[str, Any], sequence: list[Step], mode: str, decorated: bool
) -> None:
    live, clock, seen = live_with_candidate(mode, wire)
    real, real_clock, real_seen = reference(wire)
    for outcome, duration, gap in sequence:
        clock.advance(gap)
        real_clock.advance(gap)
        fn = work(outcome, duration, clock)
        with contextlib.suppress(Failure, Ignored, Answered):
            (live(fn)() if decorated else live.call(fn))
        try:
            real.call(work(outcome, duration, real_clock))
        except CircuitOpenError:
            real_clock.advance(duration)  # the call would have lasted as long
        except (Failure, Ignored, Answered):
            pass
        assert clock.now == real_clock.now
    check_equivalent(live, seen, real, real_seen)


@settings(max_examples=300, deadline=None)
@given(wire=candidates, sequence=steps, mode=live_modes, decorated=st.booleans())
def test_the_candidate_does_what_a_breaker_with_its_config_does_in_asyncio(
    wire: dict[str, Any], sequence: list[Step], mode: str, decorated: bool
) -> None:
    live, clock, seen = live_with_candidate(mode, wire)
    real, real_clock, real_seen = reference(wire)

    async def drive() -> None:
        for outcome, duration, gap in sequence:
            clock.advance(gap)
            real_clock.advance(gap)
            fn = awork(outcome, duration, clock)
            with contextlib.suppress(Failure, Ignored, Answered):
                await (live(fn)() if decorated else live.call_async(fn))
            try:
                await real.call_async(awork(outcome, duration, real_clock))
            except CircuitOpenError:
                real_clock.advance(duration)
            except (Failure, Ignored, Answered):
                pass

    asyncio.run(drive())
    check_equivalent(live, seen, real, real_seen)


def failing() -> None:
    raise Failure


def test_what_the_candidate_sees_while_the_live_breaker_rejects() -> None:
    clock = FakeClock()
    live = CircuitBreaker("db", CircuitBreakerConfig(**CODE), clock=clock)  # type: ignore[arg-type]
    live.shadow(CircuitBreakerConfig(failure_threshold=1, timeout=5, **CODE), 3)  # type: ignore[arg-type]
    live.force_open("drill")
    # The candidate is closed: it would have let these through, their outcome is unknown.
    for _ in range(4):
        assert live.call(ok, lambda: "fallback") == "fallback"
    report = live.shadow_report()
    assert report is not None
    assert (report["unobserved"], report["rejected"], report["state"]) == (4, 0, "closed")
    live.release()
    with pytest.raises(Failure):
        live.call(failing)  # trips the candidate (1 failure), not the live breaker
    assert live.state is CircuitState.CLOSED
    assert live.shadow_breaker is not None and live.shadow_breaker.state is CircuitState.OPEN
    live.force_open("drill")
    for _ in range(3):
        live.call(ok, lambda: None)  # the candidate is open: it would have rejected them
    clock.advance(5)
    live.call(ok, lambda: None)  # its timeout elapsed: a probe it admits, then frees
    report = live.shadow_report()
    assert report is not None
    assert (report["rejected"], report["unobserved"], report["opened"]) == (3, 5, 1)
    assert report["state"] == "half_open" and report["half_opened"] == 1
    live.release()
    for _ in range(3):  # the freed slot and the probes that close it (success_threshold 3)
        live.call(ok)
    report = live.shadow_report()
    assert report is not None and report["state"] == "closed" and report["closed"] == 1
    assert [(e.from_state, e.to_state, e.reason) for e in report["transitions"]] == [
        ("closed", "open", "failure_threshold"),
        ("open", "half_open", "timeout_elapsed"),
        ("half_open", "closed", "probes_succeeded"),
    ]


def test_the_live_breaker_is_unchanged_by_its_candidate() -> None:
    clock = FakeClock()
    live = CircuitBreaker("db", CircuitBreakerConfig(failure_threshold=3), clock=clock)
    live.shadow(CircuitBreakerConfig(failure_threshold=1), 2)
    for _ in range(2):
        with pytest.raises(Failure):
            live.call(failing)
    assert live.state is CircuitState.CLOSED  # the candidate opened after the first
    assert live.call(ok) == "ok"  # and rejects nothing for real
    assert live.traffic()["rejected"] == 0
    report = live.shadow_report()
    assert report is not None and report["rejected"] == 2 and report["opened"] == 1


def test_clear_shadow_ends_the_evaluation_and_restores_the_fast_path() -> None:
    live = CircuitBreaker("db")
    assert live.shadow_report() is None and live.shadow_breaker is None
    live.shadow(CircuitBreakerConfig(), 4)
    assert not live._fast
    live.call(ok)
    live.clear_shadow()
    assert live._fast and live.shadow_report() is None and live.shadow_breaker is None


def test_a_new_candidate_starts_fresh() -> None:
    live = CircuitBreaker("db")
    live.shadow(CircuitBreakerConfig(failure_threshold=1), 4)
    with pytest.raises(ZeroDivisionError):
        live.call(lambda: 1 / 0)
    live.shadow(CircuitBreakerConfig(failure_threshold=1), 5)
    report = live.shadow_report()
    assert report is not None
    assert (report["config_version"], report["state"], report["opened"]) == (5, "closed", 0)


@pytest.mark.parametrize(
    ("config", "version", "named"),
    [
        ({"failure_threshold": 1}, 1, "config"),
        (CircuitBreakerConfig(), -1, "version"),
        (CircuitBreakerConfig(), True, "version"),
        (CircuitBreakerConfig(), "2", "version"),
    ],
)
def test_bad_input_names_the_parameter(config: Any, version: Any, named: str) -> None:
    with pytest.raises(ValueError, match=f"^{named} must be"):
        CircuitBreaker("db").shadow(config, version)


def test_closed_successes_beside_a_candidate_take_no_lock_and_read_the_clock_twice() -> None:
    from test_breaker_hot_path import CountingLock, instrumented

    live, clock, lock = instrumented()
    live.shadow(CircuitBreakerConfig(), 1)
    candidate = live.shadow_breaker
    assert candidate is not None
    candidate_lock = CountingLock()
    candidate._lock = candidate_lock  # type: ignore[assignment]
    for _ in range(20):
        live.call(ok)
    lock.acquired = candidate_lock.acquired = clock.reads = 0
    for _ in range(1000):
        live.call(ok)
    assert (lock.acquired, candidate_lock.acquired, clock.reads) == (0, 0, 2000)


def test_threads_beside_a_candidate_count_every_call_once() -> None:
    live = CircuitBreaker("db", CircuitBreakerConfig(failure_threshold=10**6))
    live.shadow(
        CircuitBreakerConfig(
            failure_threshold=10**6, minimum_calls=10**5, sliding_window_size=10**5
        ),
        1,
    )

    def hammer() -> None:
        for i in range(2000):
            with contextlib.suppress(Failure):
                live.call(failing if i % 7 == 0 else ok)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    candidate = live.shadow_breaker
    assert candidate is not None
    assert len(candidate._outcomes) == 8000
    assert candidate.get_state()["failures"] == 4 * len(range(0, 2000, 7))
