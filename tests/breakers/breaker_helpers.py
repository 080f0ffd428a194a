"""Helpers shared by the breakers library tests (a module name unique in the suite)."""

from __future__ import annotations

import contextlib

from breakers import CircuitBreaker


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Boom(Exception):
    """The failure the tests make protected functions raise."""


def fail(*args: object, **kwargs: object) -> None:
    raise Boom("dependency down")


def ok(*args: object, **kwargs: object) -> str:
    return "ok"


def trip(breaker: CircuitBreaker, times: int | None = None) -> None:
    """Make `times` failing calls (default: the failure threshold)."""
    for _ in range(times if times is not None else breaker.config.failure_threshold):
        with contextlib.suppress(Boom):
            breaker.call(fail)
