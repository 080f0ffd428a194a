"""The process's clock origin: the agent's ``clock`` counts seconds from it.

Taken once, when :mod:`breakers` is first imported in a process, on the monotonic
clock, so that a new process reports a clock that starts near 0 and never goes down.
A forked child keeps its parent's origin, as it keeps its parent's cumulative counters.
"""

from __future__ import annotations

import time

__all__ = ["CLOCK_ORIGIN", "seconds"]

#: ``time.monotonic()`` when this module was first imported.
CLOCK_ORIGIN = time.monotonic()


def seconds() -> float:
    """Seconds on the monotonic clock since :data:`CLOCK_ORIGIN` (never negative)."""
    return time.monotonic() - CLOCK_ORIGIN
