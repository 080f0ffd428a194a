"""The vocabulary of a breaker's life: its states and the reasons it changes state.

Both are wire strings: the agent reports them and the control plane stores them, so
the server derives its choices from these enums instead of repeating them.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FORCED_STATES", "REASONS", "CircuitState", "TransitionReason"]


class CircuitState(StrEnum):
    """States of a breaker; the values are the strings used on the wire."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


class TransitionReason(StrEnum):
    """Why a breaker changed state, as reported in ``TransitionEvent.reason``."""

    FAILURE_THRESHOLD = "failure_threshold"
    FAILURE_RATE = "failure_rate"
    SLOW_CALL_RATE = "slow_call_rate"
    TIMEOUT_ELAPSED = "timeout_elapsed"
    PROBE_FAILED = "probe_failed"
    PROBES_SUCCEEDED = "probes_succeeded"
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"
    RELEASED = "released"
    RESET = "reset"


#: The states an operator (or the control plane) can force.
FORCED_STATES: tuple[CircuitState, ...] = (CircuitState.FORCED_OPEN, CircuitState.FORCED_CLOSED)

#: Transition reasons as plain strings, in declaration order.
REASONS: tuple[str, ...] = tuple(reason.value for reason in TransitionReason)
