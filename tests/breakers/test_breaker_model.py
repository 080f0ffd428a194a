"""Hypothesis state machine: the breaker against a small reference model on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from breaker_helpers import FakeClock
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from breakers import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, config_errors


class Failure(Exception):
    pass


class Ignored(Exception):
    pass


@dataclass
class Model:
    """The specification, written as plainly as possible."""

    config: CircuitBreakerConfig
    state: str = "closed"
    window: list[bool] = field(default_factory=list)  # True = failure
    consec: int = 0
    consec_trips: int = 0
    trip_count: int = 0
    open_until: float = 0.0
    probe_successes: int = 0
    successes: int = 0
    failures: int = 0
    others: int = 0
    rejected: int = 0

    def fresh_window(self) -> None:
        self.window = []
        self.consec = 0

    def record(self, failed: bool) -> None:
        self.window.append(failed)
        del self.window[: -self.config.sliding_window_size]

    def open(self, now: float) -> None:
        c = self.config
        self.state = "open"
        self.trip_count += 1
        self.consec_trips += 1
        duration = c.timeout * c.timeout_multiplier ** (self.consec_trips - 1)
        assert c.max_timeout is not None  # the config fills it in
        self.open_until = now + min(duration, c.max_timeout)

    def close(self) -> None:
        self.state = "closed"
        self.consec_trips = 0
        self.probe_successes = 0
        self.fresh_window()

    def should_trip(self) -> bool:
        c = self.config
        if self.consec >= c.failure_threshold:
            return True
        minimum = min(c.minimum_calls, c.sliding_window_size)
        calls = len(self.window)
        return calls >= minimum and sum(self.window) / calls >= c.failure_rate_threshold

    def call(self, outcome: str, now: float) -> bool:
        """Apply one call; False when it is rejected."""
        if self.state == "forced_open" or (self.state == "open" and now < self.open_until):
            self.rejected += 1
            return False
        if self.state == "open":
            self.state = "half_open"
            self.probe_successes = 0
            self.window = []
        if outcome == "ignored":
            self.others += 1
            return True
        failed = outcome == "failure"
        if failed:
            self.failures += 1
        else:
            self.successes += 1
        self.record(failed)
        if self.state == "half_open":
            if failed:
                self.open(now)
            else:
                self.probe_successes += 1
                if self.probe_successes >= self.config.success_threshold:
                    self.close()
            return True
        self.consec = self.consec + 1 if failed else 0
        if self.state == "closed" and self.should_trip():
            self.open(now)
        return True

    def retry_after(self, now: float) -> float | None:
        if self.state == "open":
            return max(0.0, self.open_until - now)
        return 0.0 if self.state == "half_open" else None


# Long timeouts without a cap are included: max_timeout then follows timeout.
configs = (
    st.fixed_dictionaries(
        {
            "failure_threshold": st.integers(1, 5),
            "success_threshold": st.integers(1, 3),
            "timeout": st.sampled_from([1.0, 2.5, 10.0, 400.0]),
            "half_open_max_calls": st.integers(1, 3),
            "failure_rate_threshold": st.sampled_from([0.2, 0.3, 0.5, 0.75, 1.0]),
            "sliding_window_size": st.integers(1, 8),
            "minimum_calls": st.integers(1, 10),
            "timeout_multiplier": st.sampled_from([1.0, 2.0, 3.0]),
            "max_timeout": st.sampled_from([None, 40.0]),
        }
    )
    .filter(lambda d: not config_errors({k: v for k, v in d.items() if v is not None}))
    .map(lambda d: CircuitBreakerConfig(**d, ignore_exceptions=(Ignored,)))
)

#: How a call reaches the breaker: each path has its own fast-path code to check.
CALL_PATHS = ("call", "call_async", "decorator", "async_decorator", "fallback", "async_fallback")
FALLBACK_PATHS = ("fallback", "async_fallback")


def _protected(outcome: str) -> str:
    if outcome == "failure":
        raise Failure
    if outcome == "ignored":
        raise Ignored
    return "ok"


async def _protected_async(outcome: str) -> str:
    await asyncio.sleep(0)  # a real suspension, as an awaited dependency would
    return _protected(outcome)


class BreakerMachine(RuleBasedStateMachine):
    @initialize(config=configs)
    def setup(self, config: CircuitBreakerConfig) -> None:
        self.clock = FakeClock()
        self.breaker = CircuitBreaker("model", config, clock=self.clock)
        self.model = Model(config)
        self.loop = asyncio.new_event_loop()
        self.decorated: Callable[[str], str] = self.breaker(_protected)
        self.decorated_async: Callable[[str], Awaitable[str]] = self.breaker(_protected_async)

    def teardown(self) -> None:
        if hasattr(self, "loop"):
            self.loop.close()

    def _through(self, path: str, outcome: str) -> Any:
        """Make one call along `path`; returns what the caller gets back."""
        if path == "call":
            return self.breaker.call(_protected, None, outcome)
        if path == "call_async":
            return self.loop.run_until_complete(
                self.breaker.call_async(_protected_async, None, outcome)
            )
        if path == "decorator":
            return self.decorated(outcome)
        if path == "async_decorator":
            return self.loop.run_until_complete(self.decorated_async(outcome))
        # A fallback answers failures and rejections; ignored exceptions still raise.
        if path == "fallback":
            return self.breaker.call(_protected, lambda _outcome: "fallback", outcome)

        async def fallback(_outcome: str) -> str:
            return "fallback"

        return self.loop.run_until_complete(
            self.breaker.call_async(_protected_async, fallback, outcome)
        )

    @rule(
        outcome=st.sampled_from(["success", "success", "failure", "ignored"]),
        path=st.sampled_from(CALL_PATHS),
    )
    def call(self, outcome: str, path: str) -> None:
        expected = self.model.call(outcome, self.clock.now)
        try:
            result = self._through(path, outcome)
        except CircuitOpenError:
            assert not expected, "admitted by the model, rejected by the breaker"
            assert path not in FALLBACK_PATHS, "a rejection with a fallback must not raise"
            return
        except Failure:
            assert expected and outcome == "failure" and path not in FALLBACK_PATHS
            return
        except Ignored:
            assert expected and outcome == "ignored"
            return
        if path in FALLBACK_PATHS and (not expected or outcome == "failure"):
            assert result == "fallback"
        else:
            assert expected, "rejected by the model, admitted by the breaker"
            assert (outcome, result) == ("success", "ok")

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 10.0, 50.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def force_open(self) -> None:
        self.breaker.force_open("model")
        self.model.state = "forced_open"

    @rule()
    def force_closed(self) -> None:
        self.breaker.force_closed("model")
        if self.model.state != "forced_closed":
            self.model.state = "forced_closed"
            self.model.probe_successes = 0
            self.model.fresh_window()

    @rule()
    def release(self) -> None:
        self.breaker.release()
        if self.model.state in ("forced_open", "forced_closed"):
            self.model.close()

    @rule(config=configs)
    def apply_config(self, config: CircuitBreakerConfig) -> None:
        self.version = getattr(self, "version", 0) + 1
        self.breaker.apply_config(config, self.version)
        self.model.config = config
        # The window is kept: a resized count window keeps its latest outcomes.
        del self.model.window[: -config.sliding_window_size]

    @rule()
    def reset(self) -> None:
        self.breaker.reset()
        self.model.close()

    @invariant()
    def matches_the_model(self) -> None:
        if not hasattr(self, "breaker"):
            return
        state = self.breaker.get_state()
        m = self.model
        now = self.clock.now
        window_rate = sum(m.window) / len(m.window) if m.window else 0.0
        assert state["state"] == m.state
        assert state["config_version"] == getattr(self, "version", 0)
        assert state["trip_count"] == m.trip_count
        assert state["successes"] == m.successes
        assert state["failures"] == m.failures
        assert state["rejected"] == m.rejected
        assert state["calls"] == m.successes + m.failures + m.others
        assert state["failure_count"] == m.consec
        assert state["failure_rate"] == pytest.approx(window_rate)
        if m.state == "half_open":
            assert state["success_count"] == m.probe_successes
        expected_retry = m.retry_after(now)
        if expected_retry is None:
            assert state["retry_after"] is None
        else:
            assert state["retry_after"] == pytest.approx(expected_retry)


BreakerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_breaker_matches_reference_model = BreakerMachine.TestCase
