"""Every state transition of CircuitBreaker, driven by a fake clock."""

from __future__ import annotations

import logging

import pytest
from breaker_helpers import Boom, fail, ok, trip

from breakers import CircuitBreakerConfig, CircuitOpenError, CircuitState, TransitionEvent


def record(breaker):
    events: list[TransitionEvent] = []
    breaker.add_transition_listener(events.append)
    return events


# -- CLOSED -> OPEN -------------------------------------------------------------------


def test_consecutive_failures_open_the_circuit(make_breaker):
    breaker = make_breaker(failure_threshold=3)
    events = record(breaker)
    trip(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.get_state()["failure_count"] == 2
    trip(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    [event] = events
    assert (event.from_state, event.to_state, event.reason) == (
        "closed",
        "open",
        "failure_threshold",
    )
    assert (event.calls, event.failures, event.failure_rate) == (3, 3, 1.0)
    assert event.breaker == "b" and event.config_version == 0


def test_a_success_resets_the_failure_streak(make_breaker):
    breaker = make_breaker(failure_threshold=3, minimum_calls=100, sliding_window_size=100)
    for _ in range(5):
        trip(breaker, 2)
        assert breaker.call(ok) == "ok"
        assert breaker.get_state()["failure_count"] == 0
    assert breaker.state is CircuitState.CLOSED
    assert breaker.get_state()["failures"] == 10


def test_failure_rate_opens_once_minimum_calls_reached(make_breaker):
    breaker = make_breaker(
        failure_threshold=100, failure_rate_threshold=0.5, sliding_window_size=10, minimum_calls=6
    )
    events = record(breaker)
    for _ in range(2):
        breaker.call(ok)
        trip(breaker, 1)
    breaker.call(ok)  # 5 calls, 2 failures: below minimum_calls, not evaluated
    assert breaker.state is CircuitState.CLOSED
    trip(breaker, 1)  # 6 calls, 3 failures = 0.5
    assert breaker.state is CircuitState.OPEN
    assert events[0].reason == "failure_rate"
    assert (events[0].calls, events[0].failures, events[0].failure_rate) == (6, 3, 0.5)


def test_reaching_minimum_calls_with_a_success_evaluates_the_rate(make_breaker):
    breaker = make_breaker(failure_threshold=100, failure_rate_threshold=0.5, minimum_calls=4)
    trip(breaker, 2)
    breaker.call(ok)
    assert breaker.state is CircuitState.CLOSED
    breaker.call(ok)  # 4 calls, 2 failures: the success completes the minimum
    assert breaker.state is CircuitState.OPEN


def test_rate_below_threshold_keeps_closed(make_breaker):
    breaker = make_breaker(
        failure_threshold=100, failure_rate_threshold=0.5, sliding_window_size=10, minimum_calls=10
    )
    for _ in range(50):  # 40 % failures, spread out
        for _ in range(3):
            breaker.call(ok)
        trip(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.get_state()["failure_rate"] == pytest.approx(0.4)


def test_count_window_slides(make_breaker):
    breaker = make_breaker(
        failure_threshold=100, failure_rate_threshold=0.5, sliding_window_size=4, minimum_calls=4
    )
    trip(breaker, 1)
    for _ in range(4):
        breaker.call(ok)  # pushes the failure out
    assert breaker.get_state()["failure_rate"] == 0.0
    trip(breaker, 1)
    assert breaker.state is CircuitState.CLOSED  # 1 of 4
    trip(breaker, 1)
    assert breaker.state is CircuitState.OPEN  # 2 of 4


def test_minimum_calls_above_window_size_means_the_window_size(make_breaker):
    breaker = make_breaker(failure_threshold=100, sliding_window_size=4, minimum_calls=50)
    breaker.call(ok)
    breaker.call(ok)
    trip(breaker, 2)
    assert breaker.state is CircuitState.OPEN


def test_time_window_forgets_old_outcomes(make_breaker, clock):
    breaker = make_breaker(
        failure_threshold=100,
        window_type="time",
        window_duration=10,
        minimum_calls=4,
        failure_rate_threshold=0.5,
    )
    trip(breaker, 3)
    clock.advance(11)  # those failures leave the window
    assert breaker.get_state()["failure_rate"] == 0.0
    for _ in range(3):
        breaker.call(ok)
    trip(breaker, 1)
    assert breaker.state is CircuitState.CLOSED  # 1 of 4 in the window
    clock.advance(5)
    trip(breaker, 2)
    assert breaker.state is CircuitState.OPEN  # 3 of 6
    assert breaker.get_state()["failures"] == 6


def test_slow_calls_open_the_circuit(make_breaker, clock):
    breaker = make_breaker(
        slow_call_duration=1.0, slow_call_rate_threshold=0.5, minimum_calls=4, failure_threshold=100
    )
    events = record(breaker)

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    breaker.call(ok)
    breaker.call(ok)
    assert breaker.call(slow) == "late"
    assert breaker.state is CircuitState.CLOSED
    breaker.call(slow)
    assert breaker.state is CircuitState.OPEN
    assert events[0].reason == "slow_call_rate"
    state = breaker.get_state()
    assert state["slow_calls"] == 2 and state["successes"] == 4 and state["failures"] == 0


def test_slow_failures_count_as_both(make_breaker, clock):
    breaker = make_breaker(slow_call_duration=0.5, failure_threshold=100)

    def slow_fail() -> None:
        clock.advance(1.0)
        raise Boom

    with pytest.raises(Boom):
        breaker.call(slow_fail)
    state = breaker.get_state()
    assert state["slow_calls"] == 1 and state["failures"] == 1


# -- OPEN -> HALF_OPEN -> CLOSED / OPEN ------------------------------------------------


def test_open_rejects_until_timeout_then_half_opens_lazily(make_breaker, clock):
    breaker = make_breaker(failure_threshold=1, timeout=10)
    events = record(breaker)
    trip(breaker)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.name == "b"
    assert info.value.state is CircuitState.OPEN
    assert info.value.retry_after == 10.0
    clock.advance(9.5)
    assert breaker.get_state()["retry_after"] == pytest.approx(0.5)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    clock.advance(0.5)
    assert breaker.state is CircuitState.OPEN  # no timer: nothing happens until a call
    assert breaker.call(ok) == "ok"
    assert breaker.state is CircuitState.HALF_OPEN
    assert [e.reason for e in events] == ["failure_threshold", "timeout_elapsed"]
    assert breaker.get_state()["rejected"] == 2


def test_success_threshold_probes_close_the_circuit(make_breaker, clock):
    breaker = make_breaker(failure_threshold=1, timeout=5, success_threshold=3)
    events = record(breaker)
    trip(breaker)
    clock.advance(5)
    breaker.call(ok)
    breaker.call(ok)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.get_state()["success_count"] == 2
    breaker.call(ok)
    assert breaker.state is CircuitState.CLOSED
    close = events[-1]
    assert (close.reason, close.calls, close.failures) == ("probes_succeeded", 3, 0)
    assert breaker.get_state()["failure_rate"] == 0.0  # a fresh window


def test_a_failed_probe_reopens(make_breaker, clock):
    breaker = make_breaker(failure_threshold=1, timeout=5, success_threshold=3)
    events = record(breaker)
    trip(breaker)
    clock.advance(5)
    breaker.call(ok)
    trip(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    assert events[-1].reason == "probe_failed"
    assert breaker.get_state()["trip_count"] == 2
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)


def test_half_open_admits_only_max_calls_in_flight(make_breaker, clock):
    breaker = make_breaker(
        failure_threshold=1, timeout=1, half_open_max_calls=2, success_threshold=4
    )
    trip(breaker)
    clock.advance(1)
    inner: list[object] = []

    def probe(depth: int) -> str:
        # Each probe starts another while still in flight.
        if depth < 3:
            try:
                inner.append(breaker.call(probe, None, depth + 1))
            except CircuitOpenError as exc:
                inner.append(exc)
        return "probed"

    assert breaker.call(probe, None, 1) == "probed"
    third, second = inner  # the innermost call finishes first
    assert second == "probed"  # the second probe was admitted
    assert isinstance(third, CircuitOpenError)  # the third was not
    assert third.state is CircuitState.HALF_OPEN and third.retry_after == 0.0
    # Both slots are free again once the probes finish.
    assert breaker.call(ok) == "ok"
    assert breaker.call(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED


def test_ignored_exception_in_half_open_frees_the_slot(make_breaker, clock):
    breaker = make_breaker(
        failure_threshold=1, timeout=1, half_open_max_calls=1, ignore_exceptions=(KeyError,)
    )
    trip(breaker)
    clock.advance(1)

    def missing() -> None:
        raise KeyError("k")

    for _ in range(3):
        with pytest.raises(KeyError):
            breaker.call(missing)
        assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.call(ok) == "ok"


def test_keyboard_interrupt_frees_the_slot_and_is_not_a_failure(make_breaker, clock):
    breaker = make_breaker(failure_threshold=1, timeout=1, half_open_max_calls=1)
    trip(breaker)
    clock.advance(1)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        breaker.call(interrupted)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.get_state()["failures"] == 1
    assert breaker.call(ok) == "ok"


# -- growing open timeouts --------------------------------------------------------------


def test_open_timeout_grows_per_consecutive_trip_up_to_the_cap(make_breaker, clock):
    breaker = make_breaker(failure_threshold=1, timeout=10, timeout_multiplier=2, max_timeout=35)
    trip(breaker)
    seen = []
    for _ in range(4):
        seen.append(breaker.get_state()["retry_after"])
        clock.advance(seen[-1])
        trip(breaker, 1)  # the probe fails
    assert seen == [10.0, 20.0, 35.0, 35.0]
    assert breaker.get_state()["trip_count"] == 5


def test_timeout_growth_restarts_after_a_successful_close(make_breaker, clock):
    breaker = make_breaker(
        failure_threshold=1, timeout=10, timeout_multiplier=3, success_threshold=1
    )
    trip(breaker)
    clock.advance(10)
    trip(breaker, 1)
    assert breaker.get_state()["retry_after"] == 30.0
    clock.advance(30)
    breaker.call(ok)
    assert breaker.state is CircuitState.CLOSED
    trip(breaker, 1)
    assert breaker.get_state()["retry_after"] == 10.0


def test_huge_growth_does_not_overflow(make_breaker, clock):
    breaker = make_breaker(
        failure_threshold=1, timeout=1, timeout_multiplier=100, max_timeout=604_800
    )
    trip(breaker)
    for _ in range(200):
        clock.advance(breaker.get_state()["retry_after"])
        trip(breaker, 1)
    assert breaker.get_state()["retry_after"] == 604_800.0


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 8.0), (0.5, 10.0), (0.75, 11.0)])
def test_jitter_spreads_the_timeout(clock, draw, expected):
    from breakers import CircuitBreaker

    config = CircuitBreakerConfig(failure_threshold=1, timeout=10, timeout_jitter=0.2)
    breaker = CircuitBreaker("j", config, clock=clock, rand=lambda: draw)
    trip(breaker)
    assert breaker.get_state()["retry_after"] == pytest.approx(expected)


def test_jitter_never_exceeds_the_cap(clock):
    from breakers import CircuitBreaker

    config = CircuitBreakerConfig(
        failure_threshold=1, timeout=10, max_timeout=10, timeout_jitter=1.0
    )
    breaker = CircuitBreaker("j", config, clock=clock, rand=lambda: 0.999)
    trip(breaker)
    assert breaker.get_state()["retry_after"] == 10.0


# -- operator overrides ------------------------------------------------------------------


def test_forced_open_rejects_everything_and_never_half_opens(make_breaker, clock):
    breaker = make_breaker(timeout=1)
    events = record(breaker)
    breaker.force_open("db failover")
    assert breaker.state is CircuitState.FORCED_OPEN
    assert breaker.forced_reason == "db failover"
    clock.advance(10_000)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.state is CircuitState.FORCED_OPEN
    assert info.value.retry_after is None
    assert breaker.call(ok, lambda: "fallback") == "fallback"
    assert breaker.state is CircuitState.FORCED_OPEN
    breaker.force_open()  # idempotent
    assert [e.reason for e in events] == ["forced_open"]
    assert breaker.get_state()["rejected"] == 2


def test_forced_open_from_open_and_release_to_a_fresh_closed(make_breaker, clock):
    breaker = make_breaker(failure_threshold=2, timeout=1)
    events = record(breaker)
    trip(breaker)
    breaker.force_open()
    clock.advance(5)
    with pytest.raises(CircuitOpenError):
        breaker.call(ok)
    breaker.release()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.forced_reason is None
    state = breaker.get_state()
    assert state["failure_count"] == 0 and state["failure_rate"] == 0.0
    trip(breaker, 1)
    assert breaker.state is CircuitState.CLOSED  # the streak restarted
    assert [e.reason for e in events] == ["failure_threshold", "forced_open", "released"]


def test_forced_closed_admits_all_records_and_never_trips(make_breaker, clock):
    breaker = make_breaker(failure_threshold=1, minimum_calls=1)
    events = record(breaker)
    trip(breaker)
    breaker.force_closed("testing")
    for _ in range(20):
        trip(breaker, 1)
        breaker.call(ok)
    assert breaker.state is CircuitState.FORCED_CLOSED
    state = breaker.get_state()
    assert state["failures"] == 21 and state["successes"] == 20
    assert state["failure_rate"] == 0.5  # outcomes recorded in its window
    breaker.release()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.get_state()["failure_rate"] == 0.0
    assert [e.reason for e in events] == ["failure_threshold", "forced_closed", "released"]


def test_release_when_not_forced_does_nothing(make_breaker):
    breaker = make_breaker(failure_threshold=1)
    events = record(breaker)
    trip(breaker)
    breaker.release()
    assert breaker.state is CircuitState.OPEN
    assert len(events) == 1


def test_reset_closes_and_forgets_trip_history(make_breaker, clock):
    breaker = make_breaker(failure_threshold=1, timeout=10, timeout_multiplier=2)
    events = record(breaker)
    trip(breaker)
    clock.advance(10)
    trip(breaker, 1)
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    assert events[-1].reason == "reset"
    trip(breaker, 1)
    assert breaker.get_state()["retry_after"] == 10.0
    assert breaker.get_state()["failures"] == 3  # cumulative counters survive


def test_forced_states_can_follow_each_other(make_breaker):
    breaker = make_breaker()
    events = record(breaker)
    breaker.force_open()
    breaker.force_closed()
    assert breaker.state is CircuitState.FORCED_CLOSED
    assert [(e.from_state, e.to_state) for e in events] == [
        ("closed", "forced_open"),
        ("forced_open", "forced_closed"),
    ]


# -- live configuration -------------------------------------------------------------------


def test_apply_config_keeps_the_window_and_sets_the_version(make_breaker):
    breaker = make_breaker(failure_threshold=100, minimum_calls=10, sliding_window_size=10)
    for _ in range(3):
        breaker.call(ok)
    trip(breaker, 3)
    breaker.apply_config(
        CircuitBreakerConfig(failure_threshold=100, minimum_calls=7, sliding_window_size=20), 4
    )
    assert breaker.config.sliding_window_size == 20
    assert breaker.config_version == 4
    assert breaker.get_state()["config_version"] == 4
    assert breaker.get_state()["failure_rate"] == 0.5
    events = record(breaker)
    trip(breaker, 1)  # 7 calls, 4 failures
    assert breaker.state is CircuitState.OPEN
    assert events[0].config_version == 4


def test_apply_config_shrinking_the_window_keeps_recent_outcomes(make_breaker):
    breaker = make_breaker(failure_threshold=100, minimum_calls=100, sliding_window_size=10)
    trip(breaker, 2)
    for _ in range(2):
        breaker.call(ok)
    breaker.apply_config(breaker.config.replace(sliding_window_size=3), 1)
    assert breaker.get_state()["failure_rate"] == pytest.approx(1 / 3)


def test_apply_config_switching_window_type_starts_empty(make_breaker):
    breaker = make_breaker(failure_threshold=100)
    trip(breaker, 2)
    breaker.apply_config(breaker.config.replace(window_type="time"), 2)
    assert breaker.get_state()["failure_rate"] == 0.0
    trip(breaker, 1)
    assert breaker.get_state()["failure_rate"] == 1.0


def test_apply_config_time_window_duration_change_keeps_outcomes(make_breaker, clock):
    breaker = make_breaker(failure_threshold=100, window_type="time", window_duration=60)
    trip(breaker, 1)
    clock.advance(20)
    breaker.call(ok)
    breaker.apply_config(breaker.config.replace(window_duration=120), 1)
    assert breaker.get_state()["failure_rate"] == 0.5
    breaker.apply_config(breaker.config.replace(window_duration=10), 2)
    assert breaker.get_state()["failure_rate"] == 0.0  # the failure is 20 s old


def test_apply_config_changes_timeouts_of_the_next_trip(make_breaker, clock):
    breaker = make_breaker(failure_threshold=1, timeout=10)
    breaker.apply_config(breaker.config.replace(timeout=2, failure_threshold=2), 1)
    trip(breaker, 1)
    assert breaker.state is CircuitState.CLOSED
    trip(breaker, 1)
    assert breaker.get_state()["retry_after"] == 2.0


def test_apply_config_enabling_slow_detection_takes_effect(make_breaker, clock):
    breaker = make_breaker(minimum_calls=2, failure_threshold=100)

    def slow() -> None:
        clock.advance(3)

    breaker.call(slow)
    breaker.apply_config(
        breaker.config.replace(slow_call_duration=1.0, slow_call_rate_threshold=0.6), 1
    )
    breaker.call(slow)
    assert breaker.get_state()["slow_calls"] == 1
    breaker.call(slow)
    assert breaker.state is CircuitState.OPEN


def test_apply_config_rejects_bad_arguments(make_breaker):
    breaker = make_breaker()
    with pytest.raises(TypeError):
        breaker.apply_config({"timeout": 1}, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^version must be"):
        breaker.apply_config(CircuitBreakerConfig(), -1)


# -- logging and listeners -----------------------------------------------------------------


def test_transitions_are_logged_at_info(make_breaker, caplog):
    breaker = make_breaker("payments", failure_threshold=1)
    with caplog.at_level(logging.INFO, logger="breakers"):
        trip(breaker)
    assert [r.getMessage() for r in caplog.records] == [
        "circuit payments: closed -> open (failure_threshold)"
    ]
    assert caplog.records[0].levelno == logging.INFO


def test_a_raising_transition_listener_is_logged_not_propagated(make_breaker, caplog):
    breaker = make_breaker(failure_threshold=1)
    seen = []

    def bad(event: TransitionEvent) -> None:
        raise RuntimeError("listener bug")

    breaker.add_transition_listener(bad)
    breaker.add_transition_listener(seen.append)
    with caplog.at_level(logging.ERROR, logger="breakers"):
        trip(breaker)
    assert breaker.state is CircuitState.OPEN
    assert len(seen) == 1  # later listeners still run
    assert "transition listener" in caplog.text and "listener bug" in caplog.text
    breaker.remove_transition_listener(bad)
    breaker.remove_transition_listener(seen.append)
    breaker.reset()
    assert len(seen) == 1


def test_transition_event_to_dict_is_json_ready(make_breaker):
    breaker = make_breaker(failure_threshold=1)
    events = record(breaker)
    trip(breaker)
    data = events[0].to_dict()
    assert data["from_state"] == "closed" and data["to_state"] == "open"
    assert data["at"].endswith("Z")
    assert set(data) == {
        "breaker",
        "from_state",
        "to_state",
        "at",
        "reason",
        "failure_rate",
        "calls",
        "failures",
        "config_version",
    }


def test_listener_runs_outside_the_lock(make_breaker):
    breaker = make_breaker(failure_threshold=1)
    states = []
    # A listener that uses the breaker would deadlock if called under its lock.
    breaker.add_transition_listener(lambda e: states.append(breaker.get_state()["state"]))
    trip(breaker)
    assert states == ["open"]


def test_failures_after_the_trip_count_but_do_not_retrip(make_breaker):
    breaker = make_breaker(failure_threshold=1)
    events = record(breaker)

    def nested_fail() -> None:
        trip(breaker, 1)  # trips the breaker while the outer call runs
        raise Boom

    with pytest.raises(Boom):
        breaker.call(nested_fail)
    assert [e.reason for e in events] == ["failure_threshold"]
    assert breaker.get_state()["failures"] == 2
    assert breaker.get_state()["trip_count"] == 1
    assert breaker.call(fail, lambda: "fb") == "fb"


def test_a_listener_that_changes_state_sees_events_in_order(make_breaker):
    breaker = make_breaker(failure_threshold=1)
    events = record(breaker)

    def escalate(event: TransitionEvent) -> None:
        if event.to_state is CircuitState.OPEN:
            breaker.force_open("escalated")

    breaker.add_transition_listener(escalate)
    trip(breaker)
    assert [(e.from_state, e.to_state) for e in events] == [
        ("closed", "open"),
        ("open", "forced_open"),
    ]
    assert breaker.state is CircuitState.FORCED_OPEN


def test_time_window_works_with_a_clock_below_zero(clock):
    from breakers import CircuitBreaker

    clock.now = -1000.0
    config = CircuitBreakerConfig(
        window_type="time", window_duration=10, minimum_calls=2, failure_threshold=100
    )
    breaker = CircuitBreaker("neg", config, clock=clock)
    trip(breaker, 1)
    breaker.call(ok)
    assert breaker.get_state()["failure_rate"] == 0.5
    breaker.apply_config(config.replace(window_duration=20), 1)
    assert breaker.get_state()["failure_rate"] == 0.5
    trip(breaker, 1)
    assert breaker.state is CircuitState.OPEN
