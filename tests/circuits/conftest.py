"""Fixtures of the circuits tests: two teams with one of everything (tests/circuits/teams.py)."""

import pytest
from django.contrib.auth.models import User

from controlplane.alerts.models import AlertRule
from tests.circuits.teams import Side, _side


@pytest.fixture
def world(db: None, admin: User) -> dict[str, Side]:
    rule = AlertRule.objects.create(
        name="open", kind="open_too_long", params={"duration": 10}, severity="critical"
    )
    return {
        "A": _side("alpha", "team-alpha", rule, admin),
        "B": _side("bravo", "team-bravo", rule, admin),
    }
