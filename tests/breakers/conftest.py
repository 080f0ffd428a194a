"""Fixtures for the breakers library tests: a fake monotonic clock and a breaker factory."""

from __future__ import annotations

import pytest
from breaker_helpers import FakeClock

from breakers import CircuitBreaker, CircuitBreakerConfig


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_breaker(clock: FakeClock):
    """Build a breaker on the fake clock: make_breaker(name="b", **config_fields)."""

    def make(name: str = "b", **fields: object) -> CircuitBreaker:
        return CircuitBreaker(name, CircuitBreakerConfig(**fields), clock=clock)

    return make
