"""Exceptions raised by circuit breakers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .states import CircuitState

__all__ = ["BreakerError", "CircuitOpenError"]


class BreakerError(Exception):
    """Base class of the errors this library raises."""


class CircuitOpenError(BreakerError):
    """A call was rejected because the circuit does not admit it.

    `retry_after` is the number of seconds until the breaker admits a probe, 0.0 while
    it is probing, or None when no probe is scheduled (a forced-open circuit).
    """

    def __init__(self, name: str, state: CircuitState, retry_after: float | None) -> None:
        # The message is built only when shown: rejections must stay cheap.
        super().__init__(name, state, retry_after)
        self.name = name
        self.state = state
        self.retry_after = retry_after

    def __str__(self) -> str:
        when = "" if self.retry_after is None else f"; retry after {self.retry_after:.3f}s"
        return f"circuit {self.name!r} is {self.state.value}{when}"
