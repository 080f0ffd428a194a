"""A small fleet reported through the real sync path, and logged-in browser clients."""

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from controlplane.circuits import events
from controlplane.circuits.models import Circuit
from controlplane.core import live


def transition(seq: int, from_state: str, to_state: str, at: str, rate: float) -> dict[str, Any]:
    return {
        "id": seq,
        "breaker": "payments",
        "from": from_state,
        "to": to_state,
        "at": at,
        "reason": "failure_rate" if to_state == "open" else "timeout_elapsed",
        "failure_rate": rate,
        "calls": 10,
        "failures": int(rate * 10),
        "config_version": 1,
    }


@pytest.fixture
def fleet(post_sync: Any, sync_body: Any, service: Any) -> dict[str, Circuit]:
    """checkout/payments open on 1 of 3 instances (web-1 lags a config version behind),
    checkout/db closed on all 3; web-1 also reports payments' recent transitions."""
    from django.utils import timezone

    now = timezone.now()
    iso = lambda s: (now - __import__("datetime").timedelta(seconds=s)).isoformat()  # noqa: E731
    for i in (1, 2, 3):
        state = "open" if i == 1 else "closed"
        body = sync_body(
            instance={"id": f"web-{i}"},
            breakers=[
                {
                    "name": "payments",
                    "state": state,
                    "failure_rate": 0.8 if i == 1 else 0.1,
                    "calls": 100,
                    "failures": 40,
                    "state_since": iso(30),
                    "retry_after": 12.0 if state == "open" else None,
                },
                {"name": "db", "state": "closed", "calls": 50},
            ],
            transitions=(
                [
                    transition(1, "closed", "open", iso(300), 0.6),
                    transition(2, "open", "half_open", iso(240), 0.6),
                    transition(3, "half_open", "closed", iso(200), 0.2),
                    transition(4, "closed", "open", iso(30), 0.8),
                ]
                if i == 1
                else []
            ),
        )
        response = post_sync(body)
        assert response.status_code == 200, response.content
    # Their live events have left: a socket opened next hears only what comes after.
    events.flush()
    assert live.dispatcher().wait_idle(5)
    return {c.name: c for c in Circuit.objects.all()}


def _login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_viewer(viewer: User) -> Client:
    return _login(viewer)


@pytest.fixture
def as_operator(operator: User) -> Client:
    return _login(operator)


@pytest.fixture
def login() -> Callable[[User], Client]:
    return _login
