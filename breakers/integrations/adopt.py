"""Breakers of pybreaker and circuitbreaker, adopted without a rewrite: registered in
our registry so the agent reports their state, transitions, calls and latency, and the
control plane can force them open or closed::

    import pybreaker
    from breakers.integrations.adopt import adopt_pybreaker

    db_breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60, name="db")
    adopt_pybreaker(db_breaker)  # now "db" on the dashboard

    from circuitbreaker import circuit
    from breakers.integrations.adopt import adopt_circuitbreaker, adopt_circuitbreakers

    @circuit(failure_threshold=5, recovery_timeout=30, name="payments")
    def charge(order): ...

    adopt_circuitbreakers()  # every @circuit of the process (circuitbreaker's monitor)

Each adopted breaker gets a twin in our registry (same name) that follows the other
library's state and counts its calls. The other library still decides while no operator
overrides it:
- **forced open**: calls are refused without running (pybreaker raises its
  ``CircuitBreakerError``; circuitbreaker's decorator its ``CircuitBreakerError``, or
  answers its fallback);
- **forced closed**: calls run whatever the other library's state;
- **released**: the other library's breaker is reset to closed.

Not counted: circuitbreaker's decorator refuses calls before any hook runs, so its own
rejections are not in the rejected count (pybreaker's are).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..breaker import CircuitBreaker, TransitionEvent
from ..config import MAX_COUNT, MAX_SECONDS, CircuitBreakerConfig
from ..registry import CircuitBreakerRegistry, default_registry
from ..states import CircuitState

__all__ = ["adopt_circuitbreaker", "adopt_circuitbreakers", "adopt_pybreaker"]

_MARK = "_switchyard_twin"


def _twin(
    name: str | None, failures: Any, timeout: Any, registry: CircuitBreakerRegistry | None
) -> CircuitBreaker:
    if not isinstance(name, str) or not name:
        raise ValueError("name: the adopted breaker has no name; pass name=")
    config = CircuitBreakerConfig(
        failure_threshold=max(1, min(int(failures or 5), MAX_COUNT)),
        timeout=max(0.001, min(float(timeout or 60), MAX_SECONDS)),
    )
    return (default_registry if registry is None else registry).get_or_create(name, config)


def _on_release(reset: Callable[[], object]) -> Callable[[TransitionEvent], None]:
    def listener(event: TransitionEvent) -> None:
        if event.reason == "released":
            reset()

    return listener


def adopt_pybreaker(
    breaker: Any,
    *,
    name: str | None = None,
    registry: CircuitBreakerRegistry | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> CircuitBreaker:
    """Adopt a ``pybreaker.CircuitBreaker`` (named by ``name`` or its own name); returns
    its twin. Adopting it again returns the same twin."""
    import pybreaker

    if not isinstance(breaker, pybreaker.CircuitBreaker):
        raise ValueError(f"breaker must be a pybreaker.CircuitBreaker, got {breaker!r}")
    twin: CircuitBreaker | None = getattr(breaker, _MARK, None)
    if twin is not None:
        return twin
    twin = _twin(name or breaker.name, breaker.fail_max, breaker.reset_timeout, registry)
    states = {
        "closed": CircuitState.CLOSED,
        "open": CircuitState.OPEN,
        "half-open": CircuitState.HALF_OPEN,
    }
    local = threading.local()
    mirror = twin

    class Listener(pybreaker.CircuitBreakerListener):
        def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
            local.start = clock()

        def success(self, cb: Any) -> None:
            start = getattr(local, "start", None)
            mirror.record("success", 0.0 if start is None else max(0.0, clock() - start))

        def failure(self, cb: Any, exc: BaseException) -> None:
            start = getattr(local, "start", None)
            mirror.record("failure", 0.0 if start is None else max(0.0, clock() - start))

        def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
            state = states.get(getattr(new_state, "name", ""))
            if state is not None:
                mirror.follow(state, "pybreaker")

    breaker.add_listener(Listener())
    original = breaker.call

    def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        forced = mirror.state
        if forced is CircuitState.FORCED_OPEN:
            mirror.record("rejected")
            raise pybreaker.CircuitBreakerError(f"circuit {mirror.name!r} is forced open")
        if forced is CircuitState.FORCED_CLOSED:
            start = clock()
            try:
                result = func(*args, **kwargs)
            except Exception:
                mirror.record("failure", max(0.0, clock() - start))
                raise
            mirror.record("success", max(0.0, clock() - start))
            return result
        local.start = None
        try:
            return original(func, *args, **kwargs)
        except pybreaker.CircuitBreakerError:
            if getattr(local, "start", None) is None:  # refused before the call ran
                mirror.record("rejected")
            raise

    breaker.call = call  # type: ignore[method-assign]  # decorator, calling() use it
    twin.add_transition_listener(_on_release(breaker.close))
    twin.follow(states.get(breaker.current_state, CircuitState.CLOSED), "pybreaker")
    setattr(breaker, _MARK, twin)
    return twin


def adopt_circuitbreaker(
    breaker: Any,
    *,
    name: str | None = None,
    registry: CircuitBreakerRegistry | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> CircuitBreaker:
    """Adopt a ``circuitbreaker.CircuitBreaker`` (what ``@circuit`` creates; named by
    ``name`` or its own name); returns its twin. Adopting it again returns the same twin."""
    import circuitbreaker as lib  # type: ignore[import-untyped]

    if not isinstance(breaker, lib.CircuitBreaker):
        raise ValueError(f"breaker must be a circuitbreaker.CircuitBreaker, got {breaker!r}")
    twin: CircuitBreaker | None = getattr(breaker, _MARK, None)
    if twin is not None:
        return twin
    twin = _twin(
        name or breaker.name, breaker._failure_threshold, breaker._recovery_timeout, registry
    )
    states = {
        lib.STATE_CLOSED: CircuitState.CLOSED,
        lib.STATE_OPEN: CircuitState.OPEN,
        lib.STATE_HALF_OPEN: CircuitState.HALF_OPEN,
    }
    base = type(breaker)
    own_state = base.state.fget
    local = threading.local()
    mirror = twin

    class Adopted(base):  # type: ignore[valid-type,misc]
        @property
        def state(self) -> str:
            forced = mirror.state
            if forced is CircuitState.FORCED_OPEN:
                return str(lib.STATE_OPEN)
            if forced is CircuitState.FORCED_CLOSED:
                return str(lib.STATE_CLOSED)
            return str(own_state(self))

        def __enter__(self) -> Any:
            local.start = clock()
            return base.__enter__(self)

        def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> Any:
            start = getattr(local, "start", None)
            duration = 0.0 if start is None else max(0.0, clock() - start)
            failed = exc_type is not None and self.is_failure(exc_type, exc_value)
            result = base.__exit__(self, exc_type, exc_value, traceback)
            mirror.record("failure" if failed else "success", duration)
            mirror.follow(states[own_state(self)], "circuitbreaker")
            return result

    Adopted.__name__ = Adopted.__qualname__ = base.__name__
    breaker.__class__ = Adopted
    twin.add_transition_listener(_on_release(breaker.reset))
    twin.follow(states[own_state(breaker)], "circuitbreaker")
    setattr(breaker, _MARK, twin)
    return twin


def adopt_circuitbreakers(
    registry: CircuitBreakerRegistry | None = None,
) -> list[CircuitBreaker]:
    """Adopt every breaker circuitbreaker's monitor knows (each ``@circuit`` registers
    itself when it decorates); returns their twins."""
    from circuitbreaker import CircuitBreakerMonitor

    return [
        adopt_circuitbreaker(breaker, registry=registry)
        for breaker in CircuitBreakerMonitor.get_circuits()
    ]
