"""The circuit breaker state machine and its sync/async call paths.

Hot path design: a closed breaker with no slow-call detection and no call listeners
runs the protected call with no lock and one pair of clock reads (its duration for the
latency histogram). The state is a plain attribute (``_fast`` is true only in
CLOSED/FORCED_CLOSED when neither slow-call detection nor a call listener needs the
general path); a success appends to a bounded deque and bumps the ``itertools.count``
of its latency bucket (both atomic under the GIL; a bucket's counter is created under
the lock the first time it is used).
Everything that needs consistency - failure accounting, threshold evaluation,
transitions, half-open admission - takes the lock, which is never held while the
protected function runs.

Shadow evaluation (``shadow()``): a second breaker of this class, the candidate, takes
part in every call without enforcing anything. ``_fast`` is then false and the next
branch of each call path runs both closed fast paths in one (``_plain``: the fast path
would apply but for the candidate); any other combination goes through
``_call_shadowed``, where the candidate admits and accounts with its own methods.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from types import CoroutineType, GeneratorType
from typing import Any, ParamSpec, TypedDict, TypeGuard, TypeVar, cast, overload

from .config import CircuitBreakerConfig
from .errors import CircuitOpenError
from .latency import INDEX_OFFSET, INDEX_SCALE, LATENCY_MAX, LATENCY_MIN, bucket_index
from .states import REASONS, CircuitState
from .timestamps import format_timestamp
from .window import (
    FAILURE,
    SLOW,
    SLOW_FAILURE,
    SUCCESS,
    TimeWindow,
    Window,
    count_value,
    new_window,
    window_counts,
)

# CircuitState and REASONS live in .states; they are importable from here as before.
__all__ = [
    "REASONS",
    "SHADOW_TRANSITIONS_KEPT",
    "CallEvent",
    "CircuitBreaker",
    "CircuitState",
    "ShadowReport",
    "Traffic",
    "TransitionEvent",
]

logger = logging.getLogger("breakers")

P = ParamSpec("P")
R = TypeVar("R")


_CLOSED = CircuitState.CLOSED
_OPEN = CircuitState.OPEN
_HALF_OPEN = CircuitState.HALF_OPEN
_FORCED_OPEN = CircuitState.FORCED_OPEN
_FORCED_CLOSED = CircuitState.FORCED_CLOSED
_log = math.log
#: A breaker's latency buckets: bucket index -> count (``itertools.count``). The keys
#: are ints; the fast paths look them up with floats of equal value (equal hashes).
_Histogram = dict[float, "itertools.count[int]"]


class Traffic(TypedDict):
    """Cumulative counters of a breaker since its creation (``CircuitBreaker.traffic``).

    ``latency``: the sparse histogram of the durations of the calls that ran, bucket
    index (:mod:`breakers.latency`) -> count.
    """

    calls: int
    successes: int
    failures: int
    slow_calls: int
    rejected: int
    fallbacks: int
    latency: dict[int, int]


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """One state change of a breaker, passed to transition listeners.

    `at` is wall-clock epoch seconds; `calls`, `failures` and `failure_rate` describe
    the sliding window at the moment of the change (`failure_rate` is None when the
    window is empty).
    """

    breaker: str
    from_state: CircuitState
    to_state: CircuitState
    at: float
    reason: str
    failure_rate: float | None
    calls: int
    failures: int
    config_version: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (states as strings, `at` in the wire timestamp format)."""
        data = asdict(self)
        data["from_state"] = self.from_state.value
        data["to_state"] = self.to_state.value
        data["at"] = format_timestamp(self.at)
        return data


@dataclass(frozen=True, slots=True)
class CallEvent:
    """The outcome of one call, passed to call listeners.

    `outcome` is "success", "failure", "ignored" (an ignored exception, or a
    BaseException such as cancellation) or "rejected". `duration` is in seconds (None
    for rejections); `exception` is what the protected function raised, if anything
    (a success may carry one that is not counted as a failure).
    """

    breaker: str
    outcome: str
    state: CircuitState
    duration: float | None
    slow: bool
    exception: BaseException | None


#: The would-be transitions a shadow evaluation keeps (the most recent ones).
SHADOW_TRANSITIONS_KEPT = 100


class ShadowReport(TypedDict):
    """What a candidate config would have done since its shadow evaluation started
    (``CircuitBreaker.shadow_report``); every count is cumulative.

    ``rejected``: calls it would have rejected; ``unobserved``: calls it would have let
    through that the live breaker rejected, so no outcome exists; ``opened``,
    ``half_opened``, ``closed``: its would-be transitions into each state;
    ``transitions``: the last :data:`SHADOW_TRANSITIONS_KEPT` of them, oldest first, out
    of ``transition_count``.
    """

    config_version: int
    state: CircuitState
    rejected: int
    unobserved: int
    opened: int
    half_opened: int
    closed: int
    transition_count: int
    transitions: list[TransitionEvent]


class _ShadowLog:
    """The record of a candidate breaker: its would-be transitions (its listener)."""

    __slots__ = ("breaker", "counts", "transitions", "unobserved")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker
        self.unobserved = itertools.count()
        self.counts = dict.fromkeys((_OPEN, _HALF_OPEN, _CLOSED), 0)
        self.transitions: deque[TransitionEvent] = deque(maxlen=SHADOW_TRANSITIONS_KEPT)

    def record(self, event: TransitionEvent) -> None:
        # Listeners are delivered one at a time, in order: no lock is needed here.
        self.transitions.append(event)
        self.counts[event.to_state] = self.counts.get(event.to_state, 0) + 1


class _Probe:
    """Ticket of a call admitted in half-open; `gen` ties it to that half-open period."""

    __slots__ = ("gen",)

    def __init__(self, gen: int) -> None:
        self.gen = gen


_Ticket = Window | _Probe


#: Whether instances of a type are awaitable. inspect.isawaitable costs ~0.5 us for a
#: plain value (an ABC check); awaitability is a property of the type, so it is
#: remembered, for a bounded number of types.
_AWAITABLE_TYPES: dict[type, bool] = {
    CoroutineType: True,
    **dict.fromkeys((type(None), bool, int, float, str, bytes, dict, list, tuple, set), False),
}
_MAX_REMEMBERED_TYPES = 1024


def _is_awaitable(value: object) -> TypeGuard[Awaitable[Any]]:
    cls = type(value)
    known = _AWAITABLE_TYPES.get(cls)
    if known is not None:
        return known
    result = inspect.isawaitable(value)
    # Generators are awaitable or not per instance (types.coroutine), so never remembered.
    if cls is not GeneratorType and len(_AWAITABLE_TYPES) < _MAX_REMEMBERED_TYPES:
        _AWAITABLE_TYPES[cls] = result
    return result


class CircuitBreaker:
    """A circuit breaker protecting calls to one dependency.

    ``clock`` returns monotonic seconds (default ``time.monotonic``) and drives every
    timing decision; ``rand`` returns floats in [0, 1) for the open-timeout jitter
    (default ``random.random``). Use ``call``/``call_async`` or decorate functions with
    the breaker itself. Thread-safe and asyncio-safe.
    """

    __slots__ = (
        "__weakref__",
        "_c_listeners",
        "_clock",
        "_cold",
        "_config",
        "_consec",
        "_consec_trips",
        "_dirty",
        "_emit_lock",
        "_errors",
        "_failure_types",
        "_failures",
        "_fallbacks",
        "_fast",
        "_forced_reason",
        "_gen",
        "_ho_in_flight",
        "_ho_successes",
        "_ignore_types",
        "_last_failure",
        "_lock",
        "_min_calls",
        "_ok",
        "_open_until",
        "_others",
        "_outcomes",
        "_pending",
        "_plain",
        "_predicate",
        "_rand",
        "_rejected",
        "_shadow",
        "_shadow_log",
        "_slow",
        "_slow_calls",
        "_state",
        "_state_since",
        "_t_listeners",
        "_trip_count",
        "config_version",
        "name",
    )

    def __init__(
        self,
        name: str,
        config: CircuitBreakerConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        rand: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if config is None:
            config = CircuitBreakerConfig()
        elif not isinstance(config, CircuitBreakerConfig):
            raise TypeError(f"config must be a CircuitBreakerConfig, got {config!r}")
        self.name = name
        self.config_version = 0
        self._clock = clock or time.monotonic
        self._rand = rand or random.random
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._pending: deque[TransitionEvent] = deque()
        self._t_listeners: tuple[Callable[[TransitionEvent], object], ...] = ()
        self._c_listeners: tuple[Callable[[CallEvent], object], ...] = ()
        # Cumulative counters since creation; next() on itertools.count is atomic.
        # Successes are counted in their latency buckets (_ok), the calls that raised
        # (failures and ignored exceptions) in theirs (_errors).
        self._ok: _Histogram = {}
        self._errors: _Histogram = {}
        self._failures = itertools.count()
        self._fallbacks = itertools.count()
        self._others = itertools.count()  # ignored exceptions and BaseExceptions
        self._slow_calls = itertools.count()
        self._rejected = itertools.count()
        self._state = _CLOSED
        self._state_since = time.time()
        self._gen = 0
        self._consec = 0
        self._consec_trips = 0
        self._trip_count = 0
        self._open_until = 0.0
        self._ho_in_flight = 0
        self._ho_successes = 0
        self._last_failure: float | None = None
        self._forced_reason: str | None = None
        self._outcomes: Window = new_window("count", 1, 1.0, self._clock)
        self._shadow: CircuitBreaker | None = None
        self._shadow_log: _ShadowLog | None = None
        self._install(config)
        self._fresh_window()
        self._refresh_fast()

    # -- public read-only state ---------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """Current state (OPEN turns HALF_OPEN lazily, on the first call after timeout)."""
        return self._state

    @property
    def config(self) -> CircuitBreakerConfig:
        """The configuration in force."""
        return self._config

    @property
    def forced_reason(self) -> str | None:
        """The reason given to the last force_open/force_closed, while forced."""
        return self._forced_reason

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._state.value}>"

    # -- configuration ------------------------------------------------------------

    def _install(self, config: CircuitBreakerConfig) -> None:
        """Cache what the call paths read from the config (caller holds the lock)."""
        self._config = config
        self._slow = config.slow_call_duration
        self._failure_types = config.failure_exceptions
        self._ignore_types = config.ignore_exceptions
        self._predicate = config.failure_predicate
        if config.window_type == "count":
            self._min_calls = min(config.minimum_calls, config.sliding_window_size)
        else:
            self._min_calls = config.minimum_calls

    def _new_window(self, previous: Window | None) -> Window:
        c = self._config
        return new_window(
            c.window_type, c.sliding_window_size, c.window_duration, self._clock, previous
        )

    def _fresh_window(self) -> None:
        self._outcomes = self._new_window(None)
        self._consec = 0
        self._reset_warmup()

    def _reset_warmup(self) -> None:
        # A count window is re-evaluated on a success only once, when it first holds
        # minimum_calls outcomes; time windows are evaluated on failures and slow calls.
        self._cold = not isinstance(self._outcomes, TimeWindow)
        self._dirty = self._cold or self._consec > 0

    def _refresh_fast(self) -> None:
        # _plain: the closed fast path would do; _fast: and no candidate to feed too.
        self._plain = (
            (self._state is _CLOSED or self._state is _FORCED_CLOSED)
            and self._slow is None
            and not self._c_listeners
        )
        self._fast = self._plain and self._shadow is None

    def apply_config(self, config: CircuitBreakerConfig, version: int) -> None:
        """Switch to `config` (central version `version`) live, keeping the window.

        The window keeps its outcomes when resized; switching between count and time
        windows starts an empty one. New thresholds apply from the next outcome.
        """
        if not isinstance(config, CircuitBreakerConfig):
            raise TypeError(f"config must be a CircuitBreakerConfig, got {config!r}")
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"version must be a non-negative integer, got {version!r}")
        with self._lock:
            old = self._config
            self._install(config)
            self.config_version = version
            if (old.window_type, old.sliding_window_size, old.window_duration) != (
                config.window_type,
                config.sliding_window_size,
                config.window_duration,
            ):
                self._outcomes = self._new_window(self._outcomes)
            if self._state is _CLOSED or self._state is _FORCED_CLOSED:
                self._reset_warmup()
            self._refresh_fast()

    # -- shadow evaluation ----------------------------------------------------------

    def shadow(self, config: CircuitBreakerConfig, version: int) -> None:
        """Evaluate `config` (central version `version`) beside the one in force, without
        enforcing it, from now on.

        A second breaker of this class with `config`, this breaker's clock and jitter
        source (:attr:`shadow_breaker`), is asked to admit every call at its start and
        is given every outcome the live breaker sees; it records the transitions it
        would have made and counts the calls it would have rejected
        (:meth:`shadow_report`, docs/library.md "Shadow evaluation"). Calls are never
        rejected because of it. Starting another candidate replaces the current one.
        """
        if not isinstance(config, CircuitBreakerConfig):
            raise ValueError(f"config must be a CircuitBreakerConfig, got {config!r}")
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"version must be a non-negative integer, got {version!r}")
        candidate = CircuitBreaker(
            f"{self.name} (shadow v{version})", config, clock=self._clock, rand=self._rand
        )
        candidate.config_version = version
        log = _ShadowLog(candidate)
        candidate.add_transition_listener(log.record)
        with self._lock:
            self._shadow, self._shadow_log = candidate, log
            self._refresh_fast()

    def clear_shadow(self) -> None:
        """End the shadow evaluation, if any (its record goes with it)."""
        with self._lock:
            self._shadow = self._shadow_log = None
            self._refresh_fast()

    @property
    def shadow_breaker(self) -> CircuitBreaker | None:
        """The candidate of the shadow evaluation (never enforcing), or None."""
        return self._shadow

    def shadow_report(self) -> ShadowReport | None:
        """What the candidate would have done so far (None when none is evaluated)."""
        log = self._shadow_log
        if log is None:
            return None
        candidate = log.breaker
        transitions = list(log.transitions)
        counts = log.counts.copy()
        return {
            "config_version": candidate.config_version,
            "state": candidate.state,
            "rejected": count_value(candidate._rejected),
            "unobserved": count_value(log.unobserved),
            "opened": counts[_OPEN],
            "half_opened": counts[_HALF_OPEN],
            "closed": counts[_CLOSED],
            "transition_count": sum(counts.values()),
            "transitions": transitions,
        }

    # -- listeners ----------------------------------------------------------------

    def add_transition_listener(self, fn: Callable[[TransitionEvent], object]) -> None:
        """Call `fn(event)` after every state change, outside any lock."""
        with self._lock:
            if fn not in self._t_listeners:
                self._t_listeners = (*self._t_listeners, fn)

    def remove_transition_listener(self, fn: Callable[[TransitionEvent], object]) -> None:
        """Stop calling `fn` on state changes (no error if it was not registered)."""
        with self._lock:
            self._t_listeners = tuple(f for f in self._t_listeners if f != fn)

    def add_call_listener(self, fn: Callable[[CallEvent], object]) -> None:
        """Call `fn(event)` after every call outcome, including rejections.

        Registering one makes every call read the clock twice to report its duration.
        """
        with self._lock:
            if fn not in self._c_listeners:
                self._c_listeners = (*self._c_listeners, fn)
            self._refresh_fast()

    def remove_call_listener(self, fn: Callable[[CallEvent], object]) -> None:
        """Stop calling `fn` on call outcomes (no error if it was not registered)."""
        with self._lock:
            self._c_listeners = tuple(f for f in self._c_listeners if f != fn)
            self._refresh_fast()

    def _deliver(self) -> None:
        """Hand queued transition events to the listeners, in the order they happened.

        Events are queued under the state lock and delivered outside it by one thread
        at a time; a thread that finds delivery in progress leaves its event to the
        thread already delivering, so listeners never see two changes out of order.
        """
        pending = self._pending
        while pending:
            if not self._emit_lock.acquire(blocking=False):
                return
            try:
                while pending:
                    try:
                        event = pending.popleft()
                    except IndexError:
                        break
                    self._emit(event)
            finally:
                self._emit_lock.release()

    def _emit(self, event: TransitionEvent) -> None:
        logger.info(
            "circuit %s: %s -> %s (%s)",
            self.name,
            event.from_state.value,
            event.to_state.value,
            event.reason,
        )
        for fn in self._t_listeners:
            try:
                fn(event)
            except Exception:
                logger.exception("transition listener %r of circuit %s failed", fn, self.name)

    def _notify_call(
        self, outcome: str, duration: float | None, slow: bool, exc: BaseException | None
    ) -> None:
        event = CallEvent(self.name, outcome, self._state, duration, slow, exc)
        for fn in self._c_listeners:
            try:
                fn(event)
            except Exception:
                logger.exception("call listener %r of circuit %s failed", fn, self.name)

    # -- transitions (caller holds the lock) ----------------------------------------

    def _transition(self, to: CircuitState, reason: str) -> TransitionEvent:
        calls, failures, _ = window_counts(self._outcomes)
        event = TransitionEvent(
            breaker=self.name,
            from_state=self._state,
            to_state=to,
            at=time.time(),
            reason=reason,
            failure_rate=failures / calls if calls else None,
            calls=calls,
            failures=failures,
            config_version=self.config_version,
        )
        self._state = to
        self._state_since = event.at
        self._gen += 1
        if to is _OPEN:
            self._trip_count += 1
            self._consec_trips += 1
            self._open_until = self._clock() + self._open_duration()
        elif to is _HALF_OPEN:
            self._ho_in_flight = 0
            self._ho_successes = 0
            # Probe outcomes go to an empty window so events describe the probes.
            self._outcomes = self._new_window(None)
        elif to is _CLOSED or to is _FORCED_CLOSED:
            self._ho_successes = 0
            self._fresh_window()
        if to is _CLOSED:
            self._consec_trips = 0
        if to is not _FORCED_OPEN and to is not _FORCED_CLOSED:
            self._forced_reason = None
        self._refresh_fast()
        self._pending.append(event)
        return event

    def _open_duration(self) -> float:
        c = self._config
        cap = c.timeout if c.max_timeout is None else c.max_timeout  # set by the config
        growth = self._consec_trips - 1
        if (
            growth > 0
            and c.timeout_multiplier > 1.0
            and growth * math.log(c.timeout_multiplier) >= math.log(cap / c.timeout)
        ):
            base = cap  # also avoids overflowing multiplier ** growth
        else:
            base = min(c.timeout * c.timeout_multiplier**growth, cap)
        if c.timeout_jitter:
            base *= 1.0 + c.timeout_jitter * (2.0 * self._rand() - 1.0)
        return min(base, cap)

    def _trip_reason(self, window: Window) -> str | None:
        """Why a CLOSED breaker must open now, if it must (caller holds the lock)."""
        c = self._config
        if self._consec >= c.failure_threshold:
            return "failure_threshold"
        calls, failures, slow = window_counts(window)
        if calls >= self._min_calls:
            # Divide, as the reported rate does: 3 / 10 >= 0.3 but 3 < 0.3 * 10 in floats.
            if failures / calls >= c.failure_rate_threshold:
                return "failure_rate"
            if self._slow is not None and slow / calls >= c.slow_call_rate_threshold:
                return "slow_call_rate"
        return None

    # -- outcome accounting ----------------------------------------------------------

    def _settle(self, window: Window, evaluate: bool = False) -> None:
        """After a success in closed: reset the failure streak, evaluate if due."""
        if not evaluate and not self._consec and len(window) < self._min_calls:
            return  # still warming up and nothing to reset: skip the lock
        event = None
        with self._lock:
            state = self._state
            if window is not self._outcomes or not (state is _CLOSED or state is _FORCED_CLOSED):
                return
            self._consec = 0
            if self._cold and len(window) >= self._min_calls:
                self._cold = False
                evaluate = True
            self._dirty = self._cold
            if evaluate and state is _CLOSED:
                reason = self._trip_reason(window)
                if reason:
                    event = self._transition(_OPEN, reason)
        if event:
            self._deliver()

    def _new_bucket(self, histogram: _Histogram, index: float) -> None:
        """Count one call in a latency bucket not used before (the caller's next() on
        it raised KeyError): created once, under the lock, whoever races for it."""
        index = int(index)
        with self._lock:
            counter = histogram.get(index)
            if counter is None:
                counter = histogram[index] = itertools.count()
        next(counter)

    def _measure(self, histogram: _Histogram, duration: float) -> None:
        index = bucket_index(duration)
        try:
            next(histogram[index])
        except KeyError:
            self._new_bucket(histogram, index)

    def _on_success(
        self, ticket: _Ticket, duration: float, exc: BaseException | None = None
    ) -> None:
        slow = self._slow is not None and duration >= self._slow
        self._measure(self._ok, duration)
        if slow:
            next(self._slow_calls)
        if isinstance(ticket, _Probe):
            self._probe_done(ticket, SLOW if slow else SUCCESS)
        else:
            ticket.append(SLOW if slow else SUCCESS)
            if slow:
                self._settle(ticket, evaluate=True)
            elif self._dirty:
                self._settle(ticket)
        if self._c_listeners:
            self._notify_call("success", duration, slow, exc)

    def _on_error(self, exc: BaseException, ticket: _Ticket, duration: float) -> bool:
        """Account for an exception; True when it is a failure (fallback applies)."""
        if not isinstance(exc, Exception) or isinstance(exc, self._ignore_types):
            # Cancellation, KeyboardInterrupt and ignored exceptions say nothing about
            # the dependency: count them apart and free the probe slot.
            next(self._others)
            self._measure(self._errors, duration)
            if isinstance(ticket, _Probe):
                self._probe_done(ticket, None)
            if self._c_listeners:
                self._notify_call("ignored", duration, False, exc)
            return False
        if isinstance(exc, self._failure_types):
            predicate = self._predicate
            if predicate is None:
                failed = True
            else:
                try:
                    failed = bool(predicate(exc))
                except Exception:
                    logger.exception("failure predicate of circuit %s failed", self.name)
                    failed = True
        else:
            failed = False
        if not failed:
            # The dependency answered; the exception is part of its normal behaviour.
            self._on_success(ticket, duration, exc)
            return False
        self._measure(self._errors, duration)
        slow = self._slow is not None and duration >= self._slow
        outcome = SLOW_FAILURE if slow else FAILURE
        if isinstance(ticket, _Probe):
            self._probe_done(ticket, outcome)
        else:
            self._closed_failure(ticket, outcome)
        if self._c_listeners:
            self._notify_call("failure", duration, slow, exc)
        return True

    def _closed_failure(self, window: Window, outcome: int) -> None:
        event = None
        with self._lock:
            next(self._failures)
            if outcome & SLOW:
                next(self._slow_calls)
            self._last_failure = time.time()
            state = self._state
            if window is not self._outcomes or not (state is _CLOSED or state is _FORCED_CLOSED):
                return  # admitted before a transition: cumulative counters only
            window.append(outcome)
            self._consec += 1
            self._dirty = True
            if state is _CLOSED:
                reason = self._trip_reason(window)
                if reason:
                    event = self._transition(_OPEN, reason)
        if event:
            self._deliver()

    def _probe_done(self, probe: _Probe, outcome: int | None) -> None:
        """Finish a half-open probe; `outcome` None frees its slot without counting."""
        event = None
        with self._lock:
            if outcome is not None and outcome & FAILURE:
                next(self._failures)
                if outcome & SLOW:
                    next(self._slow_calls)
                self._last_failure = time.time()
            if probe.gen != self._gen or self._state is not _HALF_OPEN:
                return  # a stale probe from an earlier half-open period
            self._ho_in_flight -= 1
            if outcome is None:
                return
            self._outcomes.append(outcome)
            if outcome & FAILURE:
                event = self._transition(_OPEN, "probe_failed")
            else:
                self._ho_successes += 1
                if self._ho_successes >= self._config.success_threshold:
                    event = self._transition(_CLOSED, "probes_succeeded")
        if event:
            self._deliver()

    # -- admission -------------------------------------------------------------------

    def _acquire(self) -> _Ticket | None:
        """Admit a call: its ticket, or None when it must be rejected."""
        state = self._state
        if state is _CLOSED or state is _FORCED_CLOSED:
            return self._outcomes
        if state is _FORCED_OPEN:
            return None
        now = self._clock()
        if state is _OPEN and now < self._open_until:
            return None
        event = None
        with self._lock:
            state = self._state
            if state is _OPEN:
                if now < self._open_until:
                    return None
                event = self._transition(_HALF_OPEN, "timeout_elapsed")
            elif state is not _HALF_OPEN:
                return None if state is _FORCED_OPEN else self._outcomes
            if self._ho_in_flight < self._config.half_open_max_calls:
                self._ho_in_flight += 1
                ticket: _Ticket | None = _Probe(self._gen)
            else:
                ticket = None
        if event:
            self._deliver()
        return ticket

    def _retry_after(self) -> float | None:
        state = self._state
        if state is _OPEN:
            return max(0.0, self._open_until - self._clock())
        if state is _HALF_OPEN:
            return 0.0
        return None

    def _rejection(self) -> CircuitOpenError:
        next(self._rejected)
        if self._c_listeners:
            self._notify_call("rejected", None, False, None)
        return CircuitOpenError(self.name, self._state, self._retry_after())

    # -- call paths ------------------------------------------------------------------

    def call(
        self,
        func: Callable[..., R],
        fallback: Callable[..., R] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> R:
        """Call ``func(*args, **kwargs)`` through the breaker.

        A failure re-raises the original exception, or returns ``fallback(*args,
        **kwargs)`` when a fallback is given; a rejection raises CircuitOpenError (or
        returns the fallback's result).
        """
        if self._fast:
            window = self._outcomes
            clock = self._clock
            start = clock()
            try:
                # Unpacking an empty kwargs dict costs more than testing it.
                result = func(*args, **kwargs) if kwargs else func(*args)
            except BaseException as exc:
                if self._on_error(exc, window, clock() - start) and fallback is not None:
                    result = fallback(*args, **kwargs)
                    next(self._fallbacks)
                    return result
                raise
            duration = clock() - start
            window.append(0)  # SUCCESS, as a constant
            if duration < LATENCY_MIN:
                index: float = 0
            elif duration < LATENCY_MAX:
                # bucket_index(), inlined; a float key finds the int key of equal value.
                index = (_log(duration) * INDEX_SCALE + INDEX_OFFSET) // 1
            else:
                index = bucket_index(duration)
            try:
                next(self._ok[index])
            except KeyError:
                self._new_bucket(self._ok, index)
            if self._dirty:
                self._settle(window)
            return result
        candidate = self._shadow
        if candidate is not None and self._plain and candidate._fast:
            # Closed beside a closed candidate: both fast paths in one (docs/library.md).
            window = self._outcomes
            shadow_window = candidate._outcomes
            clock = self._clock
            start = clock()
            try:
                result = func(*args, **kwargs) if kwargs else func(*args)
            except BaseException as exc:
                duration = clock() - start
                candidate._on_error(exc, shadow_window, duration)
                if self._on_error(exc, window, duration) and fallback is not None:
                    result = fallback(*args, **kwargs)
                    next(self._fallbacks)
                    return result
                raise
            duration = clock() - start
            window.append(0)  # SUCCESS, as a constant
            if duration < LATENCY_MIN:
                index = 0
            elif duration < LATENCY_MAX:
                index = (_log(duration) * INDEX_SCALE + INDEX_OFFSET) // 1
            else:
                index = bucket_index(duration)
            try:
                next(self._ok[index])
            except KeyError:
                self._new_bucket(self._ok, index)
            if self._dirty:
                self._settle(window)
            shadow_window.append(0)
            if candidate._dirty:
                candidate._settle(shadow_window)
            return result
        if candidate is not None:
            return self._call_shadowed(candidate, func, fallback, args, kwargs)
        state = self._state
        if state is _FORCED_OPEN or (state is _OPEN and self._clock() < self._open_until):
            # The rejection path: nothing is allocated that outlives the call.
            next(self._rejected)
            if self._c_listeners:
                self._notify_call("rejected", None, False, None)
            if fallback is not None:
                result = fallback(*args, **kwargs) if kwargs else fallback(*args)
                next(self._fallbacks)
                return result
            raise CircuitOpenError(self.name, state, self._retry_after())
        ticket = self._acquire()
        if ticket is None:
            if fallback is not None:
                next(self._rejected)
                if self._c_listeners:
                    self._notify_call("rejected", None, False, None)
                result = fallback(*args, **kwargs)
                next(self._fallbacks)
                return result
            raise self._rejection()
        clock = self._clock
        start = clock()
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if self._on_error(exc, ticket, clock() - start) and fallback is not None:
                result = fallback(*args, **kwargs)
                next(self._fallbacks)
                return result
            raise
        self._on_success(ticket, clock() - start)
        return result

    async def call_async(
        self,
        func: Callable[..., Awaitable[R] | R],
        fallback: Callable[..., Awaitable[R] | R] | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> R:
        """Await ``func(*args, **kwargs)`` through the breaker.

        `func` may be a coroutine function or any callable returning an awaitable (or
        a plain value); `fallback` may be sync or async. Cancellation is never counted
        as a failure and frees a half-open probe slot.
        """
        if self._fast:
            window = self._outcomes
            clock = self._clock
            start = clock()
            try:
                result: Any = func(*args, **kwargs) if kwargs else func(*args)
                if type(result) is CoroutineType or _is_awaitable(result):
                    result = await result
            except BaseException as exc:
                if self._on_error(exc, window, clock() - start) and fallback is not None:
                    return await self._fallback_async(fallback, args, kwargs)
                raise
            duration = clock() - start
            window.append(0)  # SUCCESS, as a constant
            if duration < LATENCY_MIN:
                index: float = 0
            elif duration < LATENCY_MAX:
                # bucket_index(), inlined; a float key finds the int key of equal value.
                index = (_log(duration) * INDEX_SCALE + INDEX_OFFSET) // 1
            else:
                index = bucket_index(duration)
            try:
                next(self._ok[index])
            except KeyError:
                self._new_bucket(self._ok, index)
            if self._dirty:
                self._settle(window)
            return cast(R, result)
        candidate = self._shadow
        if candidate is not None and self._plain and candidate._fast:
            # Closed beside a closed candidate: both fast paths in one (docs/library.md).
            window = self._outcomes
            shadow_window = candidate._outcomes
            clock = self._clock
            start = clock()
            try:
                result = func(*args, **kwargs) if kwargs else func(*args)
                if type(result) is CoroutineType or _is_awaitable(result):
                    result = await result
            except BaseException as exc:
                duration = clock() - start
                candidate._on_error(exc, shadow_window, duration)
                if self._on_error(exc, window, duration) and fallback is not None:
                    return await self._fallback_async(fallback, args, kwargs)
                raise
            duration = clock() - start
            window.append(0)  # SUCCESS, as a constant
            if duration < LATENCY_MIN:
                index = 0
            elif duration < LATENCY_MAX:
                index = (_log(duration) * INDEX_SCALE + INDEX_OFFSET) // 1
            else:
                index = bucket_index(duration)
            try:
                next(self._ok[index])
            except KeyError:
                self._new_bucket(self._ok, index)
            if self._dirty:
                self._settle(window)
            shadow_window.append(0)
            if candidate._dirty:
                candidate._settle(shadow_window)
            return cast(R, result)
        if candidate is not None:
            return await self._call_shadowed_async(candidate, func, fallback, args, kwargs)
        state = self._state
        if state is _FORCED_OPEN or (state is _OPEN and self._clock() < self._open_until):
            next(self._rejected)
            if self._c_listeners:
                self._notify_call("rejected", None, False, None)
            if fallback is not None:
                return await self._fallback_async(fallback, args, kwargs)
            raise CircuitOpenError(self.name, state, self._retry_after())
        ticket = self._acquire()
        if ticket is None:
            if fallback is not None:
                next(self._rejected)
                if self._c_listeners:
                    self._notify_call("rejected", None, False, None)
                return await self._fallback_async(fallback, args, kwargs)
            raise self._rejection()
        clock = self._clock
        start = clock()
        try:
            result = func(*args, **kwargs)
            if _is_awaitable(result):
                result = await result
        except BaseException as exc:
            if self._on_error(exc, ticket, clock() - start) and fallback is not None:
                return await self._fallback_async(fallback, args, kwargs)
            raise
        self._on_success(ticket, clock() - start)
        return cast(R, result)

    # -- call paths beside a candidate (shadow evaluation) ----------------------------

    @staticmethod
    def _admit_candidate(candidate: CircuitBreaker) -> _Ticket | None:
        """The candidate's own admission of a call at its start (None: it would reject)."""
        ticket = candidate._outcomes if candidate._fast else candidate._acquire()
        if ticket is None:
            next(candidate._rejected)
        return ticket

    def _rejected_beside(self, candidate: CircuitBreaker, ticket: _Ticket | None) -> None:
        """The live breaker rejected a call the candidate admitted: no outcome exists, so
        the candidate takes none (a probe slot is freed, as for a cancelled call)."""
        if ticket is None:
            return
        log = self._shadow_log
        if log is not None and log.breaker is candidate:
            next(log.unobserved)
        if isinstance(ticket, _Probe):
            candidate._probe_done(ticket, None)

    @staticmethod
    def _candidate_success(
        candidate: CircuitBreaker, ticket: _Ticket | None, fast: bool, duration: float
    ) -> None:
        if ticket is None:
            return
        if fast and not isinstance(ticket, _Probe):
            # The closed fast path's own accounting (the latency is the live breaker's).
            ticket.append(0)  # SUCCESS, as a constant
            if candidate._dirty:
                candidate._settle(ticket)
        else:
            candidate._on_success(ticket, duration)

    def _call_shadowed(
        self,
        candidate: CircuitBreaker,
        func: Callable[..., R],
        fallback: Callable[..., R] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        """call() with a candidate beside it: the live breaker admits, accounts and
        answers as in call(); the candidate admits and accounts as its own call() would."""
        fast = candidate._fast
        shadow_ticket = self._admit_candidate(candidate)
        ticket = self._acquire()
        if ticket is None:
            self._rejected_beside(candidate, shadow_ticket)
            if fallback is not None:
                next(self._rejected)
                if self._c_listeners:
                    self._notify_call("rejected", None, False, None)
                result = fallback(*args, **kwargs)
                next(self._fallbacks)
                return result
            raise self._rejection()
        clock = self._clock
        start = clock()
        try:
            result = func(*args, **kwargs) if kwargs else func(*args)
        except BaseException as exc:
            duration = clock() - start
            if shadow_ticket is not None:
                candidate._on_error(exc, shadow_ticket, duration)
            if self._on_error(exc, ticket, duration) and fallback is not None:
                result = fallback(*args, **kwargs)
                next(self._fallbacks)
                return result
            raise
        duration = clock() - start
        self._on_success(ticket, duration)
        self._candidate_success(candidate, shadow_ticket, fast, duration)
        return result

    async def _call_shadowed_async(
        self,
        candidate: CircuitBreaker,
        func: Callable[..., Awaitable[R] | R],
        fallback: Callable[..., Awaitable[R] | R] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        """call_async() with a candidate beside it (see _call_shadowed)."""
        fast = candidate._fast
        shadow_ticket = self._admit_candidate(candidate)
        ticket = self._acquire()
        if ticket is None:
            self._rejected_beside(candidate, shadow_ticket)
            if fallback is not None:
                next(self._rejected)
                if self._c_listeners:
                    self._notify_call("rejected", None, False, None)
                return await self._fallback_async(fallback, args, kwargs)
            raise self._rejection()
        clock = self._clock
        start = clock()
        try:
            result: Any = func(*args, **kwargs) if kwargs else func(*args)
            if _is_awaitable(result):
                result = await result
        except BaseException as exc:
            duration = clock() - start
            if shadow_ticket is not None:
                candidate._on_error(exc, shadow_ticket, duration)
            if self._on_error(exc, ticket, duration) and fallback is not None:
                return await self._fallback_async(fallback, args, kwargs)
            raise
        duration = clock() - start
        self._on_success(ticket, duration)
        self._candidate_success(candidate, shadow_ticket, fast, duration)
        return cast(R, result)

    async def _fallback_async(
        self,
        fallback: Callable[..., Awaitable[R] | R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        """The fallback's answer (awaited when it is awaitable), counted once it came."""
        value: Any = fallback(*args, **kwargs)
        if _is_awaitable(value):
            value = await value
        next(self._fallbacks)
        return cast(R, value)

    @overload
    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function so every call goes through the breaker."""
        breaker = self
        target: Callable[..., Any] = func  # called with or without kwargs below
        if inspect.iscoroutinefunction(func):
            guarded_async = self.call_async

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                # The closed fast path of call_async(), inlined: one coroutine less.
                if breaker._fast:
                    window = breaker._outcomes
                    clock = breaker._clock
                    start = clock()
                    try:
                        result = await (target(*args, **kwargs) if kwargs else target(*args))
                    except BaseException as exc:
                        breaker._on_error(exc, window, clock() - start)
                        raise
                    duration = clock() - start
                    window.append(0)  # SUCCESS, as a constant
                    if duration < LATENCY_MIN:
                        index: float = 0
                    elif duration < LATENCY_MAX:
                        # bucket_index(), inlined; a float key finds the int key of equal value.
                        index = (_log(duration) * INDEX_SCALE + INDEX_OFFSET) // 1
                    else:
                        index = bucket_index(duration)
                    try:
                        next(breaker._ok[index])
                    except KeyError:
                        breaker._new_bucket(breaker._ok, index)
                    if breaker._dirty:
                        breaker._settle(window)
                    return result
                candidate = breaker._shadow
                if candidate is not None and breaker._plain and candidate._fast:
                    # Closed beside a closed candidate: both fast paths in one (docs/library.md).
                    window = breaker._outcomes
                    shadow_window = candidate._outcomes
                    clock = breaker._clock
                    start = clock()
                    try:
                        result = await (target(*args, **kwargs) if kwargs else target(*args))
                    except BaseException as exc:
                        duration = clock() - start
                        candidate._on_error(exc, shadow_window, duration)
                        breaker._on_error(exc, window, duration)
                        raise
                    duration = clock() - start
                    window.append(0)  # SUCCESS, as a constant
                    if duration < LATENCY_MIN:
                        index = 0
                    elif duration < LATENCY_MAX:
                        index = (_log(duration) * INDEX_SCALE + INDEX_OFFSET) // 1
                    else:
                        index = bucket_index(duration)
                    try:
                        next(breaker._ok[index])
                    except KeyError:
                        breaker._new_bucket(breaker._ok, index)
                    if breaker._dirty:
                        breaker._settle(window)
                    shadow_window.append(0)
                    if candidate._dirty:
                        candidate._settle(shadow_window)
                    return result
                return await guarded_async(func, None, *args, **kwargs)

            return async_wrapper

        guarded = self.call

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            # The closed fast path of call(), inlined to save a call per invocation.
            if breaker._fast:
                window = breaker._outcomes
                clock = breaker._clock
                start = clock()
                try:
                    result = target(*args, **kwargs) if kwargs else target(*args)
                except BaseException as exc:
                    breaker._on_error(exc, window, clock() - start)
                    raise
                duration = clock() - start
                window.append(0)  # SUCCESS, as a constant
                if duration < LATENCY_MIN:
                    index: float = 0
                elif duration < LATENCY_MAX:
                    # bucket_index(), inlined; a float key finds the int key of equal value.
                    index = (_log(duration) * INDEX_SCALE + INDEX_OFFSET) // 1
                else:
                    index = bucket_index(duration)
                try:
                    next(breaker._ok[index])
                except KeyError:
                    breaker._new_bucket(breaker._ok, index)
                if breaker._dirty:
                    breaker._settle(window)
                return result
            candidate = breaker._shadow
            if candidate is not None and breaker._plain and candidate._fast:
                # Closed beside a closed candidate: both fast paths in one (docs/library.md).
                window = breaker._outcomes
                shadow_window = candidate._outcomes
                clock = breaker._clock
                start = clock()
                try:
                    result = target(*args, **kwargs) if kwargs else target(*args)
                except BaseException as exc:
                    duration = clock() - start
                    candidate._on_error(exc, shadow_window, duration)
                    breaker._on_error(exc, window, duration)
                    raise
                duration = clock() - start
                window.append(0)  # SUCCESS, as a constant
                if duration < LATENCY_MIN:
                    index = 0
                elif duration < LATENCY_MAX:
                    index = (_log(duration) * INDEX_SCALE + INDEX_OFFSET) // 1
                else:
                    index = bucket_index(duration)
                try:
                    next(breaker._ok[index])
                except KeyError:
                    breaker._new_bucket(breaker._ok, index)
                if breaker._dirty:
                    breaker._settle(window)
                shadow_window.append(0)
                if candidate._dirty:
                    candidate._settle(shadow_window)
                return result
            return guarded(func, None, *args, **kwargs)

        return wrapper

    # -- operator overrides -------------------------------------------------------------

    def _force(self, to: CircuitState, reason: str | None, code: str) -> None:
        with self._lock:
            if self._state is not to:
                self._transition(to, code)
            self._forced_reason = reason
        self._deliver()

    def force_open(self, reason: str | None = None) -> None:
        """Reject every call until release(); never half-opens on its own."""
        self._force(_FORCED_OPEN, reason, "forced_open")

    def force_closed(self, reason: str | None = None) -> None:
        """Admit every call until release(), still recording outcomes (never trips)."""
        self._force(_FORCED_CLOSED, reason, "forced_closed")

    def release(self) -> None:
        """End a forced state: back to CLOSED with a fresh window (no-op if not forced)."""
        with self._lock:
            if self._state is not _FORCED_OPEN and self._state is not _FORCED_CLOSED:
                return
            self._transition(_CLOSED, "released")
        self._deliver()

    # -- breakers of other libraries, adopted (breakers.integrations.adopt) ---------------

    def record(self, outcome: str, duration: float | None = None) -> None:
        """Count one call that another library's breaker made or refused: ``outcome``
        is "success", "failure", "ignored" or "rejected"; ``duration`` (seconds) goes to
        the latency histogram of a call that ran. The counters and the histogram grow as
        for a call made here; the state does not change (see :meth:`follow`)."""
        if outcome == "rejected":
            next(self._rejected)
            return
        if outcome not in ("success", "failure", "ignored"):
            raise ValueError(
                f"outcome must be 'success', 'failure', 'ignored' or 'rejected', got {outcome!r}"
            )
        if duration is None or not duration >= 0.0:
            raise ValueError(f"duration must be a number of seconds >= 0, got {duration!r}")
        if outcome == "success":
            self._measure(self._ok, duration)
            if self._slow is not None and duration >= self._slow:
                next(self._slow_calls)
            return
        next(self._failures if outcome == "failure" else self._others)
        self._measure(self._errors, duration)

    def follow(self, state: CircuitState, reason: str) -> None:
        """Take a state another library's breaker decided (open, half open, closed) and
        report the change as a transition. An operator's forced state stays in force:
        the other library's changes are not followed until it is released."""
        if state not in (_CLOSED, _OPEN, _HALF_OPEN):
            raise ValueError(f"state must be closed, open or half_open, got {state!r}")
        with self._lock:
            current = self._state
            if current is state or current is _FORCED_OPEN or current is _FORCED_CLOSED:
                return
            self._transition(state, reason)
        self._deliver()

    def reset(self) -> None:
        """Return to CLOSED with a fresh window and no trip history.

        Cumulative counters are kept: they count since the breaker was created.
        """
        with self._lock:
            self._consec_trips = 0
            if self._state is _CLOSED:
                self._fresh_window()
                return
            self._transition(_CLOSED, "reset")
        self._deliver()

    # -- reporting ------------------------------------------------------------------

    def traffic(self) -> Traffic:
        """The cumulative counters and latency histogram (cheap: no lock taken).

        Each figure only grows; read while calls run, the figures of one read may be a
        few calls apart (a call is counted in its counters and its bucket in turn).
        """
        # dict.copy() is one C call: a consistent set of buckets while others are added.
        ok = [(int(i), count_value(c)) for i, c in self._ok.copy().items()]
        errors = [(int(i), count_value(c)) for i, c in self._errors.copy().items()]
        latency = dict(ok)
        for i, n in errors:
            latency[i] = latency.get(i, 0) + n
        successes = sum(n for _, n in ok)
        failures = count_value(self._failures)
        return {
            "calls": successes + failures + count_value(self._others),
            "successes": successes,
            "failures": failures,
            "slow_calls": count_value(self._slow_calls),
            "rejected": count_value(self._rejected),
            "fallbacks": count_value(self._fallbacks),
            "latency": {i: n for i, n in sorted(latency.items()) if n},
        }

    def get_state(self) -> dict[str, Any]:
        """A JSON-ready snapshot: the seed's keys plus cumulative counters and timing."""
        with self._lock:
            calls, failures, _ = window_counts(self._outcomes)
            successes = sum(count_value(c) for c in self._ok.copy().values())
            failed = count_value(self._failures)
            return {
                "name": self.name,
                "state": self._state.value,
                "failure_count": self._consec,
                "success_count": self._ho_successes,
                "last_failure": format_timestamp(self._last_failure),
                "calls": successes + failed + count_value(self._others),
                "successes": successes,
                "failures": failed,
                "slow_calls": count_value(self._slow_calls),
                "rejected": count_value(self._rejected),
                "fallbacks": count_value(self._fallbacks),
                "failure_rate": failures / calls if calls else 0.0,
                "trip_count": self._trip_count,
                "state_since": format_timestamp(self._state_since),
                "retry_after": self._retry_after(),
                "config_version": self.config_version,
            }
