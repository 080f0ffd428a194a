"""Exceptions raised by circuit breakers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .breaker import CircuitState

__all__ = ["BreakerError", "CircuitOpenError"]


class BreakerError(Exception):
    """Base class of the errors this library raises."""


class CircuitOpenError(BreakerError):
    """A call was rejected because the circuit does not admit it.

    `retry_after` is the number of seconds until the breaker admits a probe, 0.0 while
    it is probing, or None when no probe is scheduled (a forced-open circuit).
    """

    def __init__(self, name: str, state: CircuitState, retry_after: float | None) -> None:
        self.name = name
        self.state = state
        self.retry_after = retry_after
        when = "" if retry_after is None else f"; retry after {retry_after:.3f}s"
        super().__init__(f"circuit {name!r} is {state.value}{when}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep the three attributes across pickling (e.g. to a worker process).
        return (type(self), (self.name, self.state, self.retry_after))
