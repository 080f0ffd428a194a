"""Fixtures of the alert tests: a fleet builder, a webhook channel, a rule factory."""

from collections.abc import Callable
from typing import Any

import pytest
from alert_helpers import WEBHOOK_SECRET, Fleet

from controlplane.alerts.models import AlertRule, Channel
from controlplane.circuits.models import Service


@pytest.fixture
def fleet(service: Service) -> Fleet:
    return Fleet(service)


@pytest.fixture
def webhook_channel(db: None) -> Channel:
    return Channel.objects.create(
        name="ops", kind="webhook", config={"url": "http://127.0.0.1:9/", "secret": WEBHOOK_SECRET}
    )


@pytest.fixture
def make_rule(db: None) -> Callable[..., AlertRule]:
    def make(kind: str, channels: list[Channel] | None = None, **fields: Any) -> AlertRule:
        fields.setdefault("name", f"{kind}-{AlertRule.objects.count()}")
        rule = AlertRule.objects.create(kind=kind, **fields)
        rule.full_clean()
        if channels:
            rule.channels.set(channels)
        return rule

    return make
