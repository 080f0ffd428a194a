"""A named collection of breakers with the seed's health summary."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from .breaker import CallEvent, CircuitBreaker, TransitionEvent
from .config import CircuitBreakerConfig
from .states import CircuitState

__all__ = ["CircuitBreakerRegistry", "circuit_registry", "default_registry"]

_REJECTING = (CircuitState.OPEN, CircuitState.FORCED_OPEN)


#: Default cap on breakers per registry: names are meant to be a fixed set of
#: dependencies, and a name built from request data would otherwise grow without bound.
DEFAULT_MAX_BREAKERS = 10_000


class CircuitBreakerRegistry:
    """Breakers by name. Thread-safe; a name maps to one breaker for the registry's life.

    At most `max_breakers` breakers (1..1,000,000, default 10,000) can be created.
    """

    def __init__(self, *, max_breakers: int = DEFAULT_MAX_BREAKERS) -> None:
        if (
            isinstance(max_breakers, bool)
            or not isinstance(max_breakers, int)
            or not (1 <= max_breakers <= 1_000_000)
        ):
            raise ValueError(
                f"max_breakers must be an integer between 1 and 1000000, got {max_breakers!r}"
            )
        self.max_breakers = max_breakers
        self._breakers: dict[str, CircuitBreaker] = {}
        self._listeners: tuple[Callable[[TransitionEvent], object], ...] = ()
        self._call_listeners: tuple[Callable[[CallEvent], object], ...] = ()
        self._lock = threading.Lock()

    def get_or_create(
        self, name: str, config: CircuitBreakerConfig | None = None, **kwargs: Any
    ) -> CircuitBreaker:
        """The breaker called `name`, created with `config` (and `clock`/`rand`) if new.

        An existing breaker is returned as it is; `config` does not change it (use
        ``apply_config`` for that). Creating one more than `max_breakers` raises ValueError.
        """
        breaker = self._breakers.get(name)
        if breaker is not None:
            return breaker
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                if len(self._breakers) >= self.max_breakers:
                    raise ValueError(
                        f"max_breakers ({self.max_breakers}) reached: cannot create {name!r}"
                    )
                breaker = CircuitBreaker(name, config, **kwargs)
                for fn in self._listeners:
                    breaker.add_transition_listener(fn)
                for call_fn in self._call_listeners:
                    breaker.add_call_listener(call_fn)
                self._breakers[name] = breaker
            return breaker

    def get(self, name: str) -> CircuitBreaker | None:
        """The breaker called `name`, or None."""
        return self._breakers.get(name)

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def get_all_states(self) -> list[dict[str, Any]]:
        """get_state() of every breaker, in creation order."""
        return [breaker.get_state() for breaker in self]

    def get_open_circuits(self) -> list[str]:
        """Names of the breakers rejecting calls now (open or forced open)."""
        return [breaker.name for breaker in self if breaker.state in _REJECTING]

    def health(self) -> dict[str, Any]:
        """The seed's health document: {"healthy", "open_circuits", "all_circuits"}."""
        states = self.get_all_states()
        open_circuits = [s["name"] for s in states if s["state"] in _REJECTING]
        return {
            "healthy": not open_circuits,
            "open_circuits": open_circuits,
            "all_circuits": states,
        }

    def add_transition_listener(self, fn: Callable[[TransitionEvent], object]) -> None:
        """Listen to every breaker of this registry, existing and future."""
        with self._lock:
            if fn not in self._listeners:
                self._listeners = (*self._listeners, fn)
            breakers = list(self._breakers.values())
        for breaker in breakers:
            breaker.add_transition_listener(fn)

    def remove_transition_listener(self, fn: Callable[[TransitionEvent], object]) -> None:
        """Stop listening to the breakers of this registry with `fn`."""
        with self._lock:
            self._listeners = tuple(f for f in self._listeners if f != fn)
            breakers = list(self._breakers.values())
        for breaker in breakers:
            breaker.remove_transition_listener(fn)

    def add_call_listener(self, fn: Callable[[CallEvent], object]) -> None:
        """Call ``fn(event)`` after every call of every breaker of this registry,
        existing and future (each breaker then times every call: see
        ``CircuitBreaker.add_call_listener``)."""
        with self._lock:
            if fn not in self._call_listeners:
                self._call_listeners = (*self._call_listeners, fn)
            breakers = list(self._breakers.values())
        for breaker in breakers:
            breaker.add_call_listener(fn)

    def remove_call_listener(self, fn: Callable[[CallEvent], object]) -> None:
        """Stop calling ``fn`` on the calls of this registry's breakers."""
        with self._lock:
            self._call_listeners = tuple(f for f in self._call_listeners if f != fn)
            breakers = list(self._breakers.values())
        for breaker in breakers:
            breaker.remove_call_listener(fn)


#: The process-wide registry.
default_registry = CircuitBreakerRegistry()
#: The seed's name for the process-wide registry.
circuit_registry = default_registry
