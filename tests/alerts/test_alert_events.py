"""Alert changes reach the channel layer group "alerts" as typed events after commit."""

import asyncio
from datetime import timedelta

import pytest
from alert_helpers import T0
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from controlplane.alerts.evaluate import evaluate
from controlplane.alerts.events import ALERTS_GROUP
from controlplane.alerts.models import Alert
from controlplane.alerts.operations import acknowledge

pytestmark = pytest.mark.django_db
S = timedelta(seconds=1)


def test_firing_and_acknowledge_are_published(
    fleet, make_rule, operator, django_capture_on_commit_callbacks
):
    layer = get_channel_layer()

    async def subscribe() -> str:
        channel = await layer.new_channel()
        await layer.group_add(ALERTS_GROUP, channel)
        return channel

    async def receive(channel: str, count: int) -> list[dict]:
        try:
            return [await asyncio.wait_for(layer.receive(channel), 10) for _ in range(count)]
        finally:
            await layer.group_discard(ALERTS_GROUP, channel)

    channel = async_to_sync(subscribe)()
    rule = make_rule("open_too_long", params={"duration": 60}, severity="critical")
    db = fleet.circuit("db")
    fleet.move(db, "closed", "open", T0)
    fleet.report(db, "open", T0 + 61 * S)
    with django_capture_on_commit_callbacks(execute=True):
        evaluate(now=T0 + 61 * S)
    with django_capture_on_commit_callbacks(execute=True):
        acknowledge(Alert.objects.get(rule=rule), user=operator)
    fired, acked = async_to_sync(receive)(channel, 2)

    assert fired["type"] == "alerts.changed" and fired["truncated"] == 0
    [item] = fired["alerts"]
    assert (item["rule"], item["kind"], item["severity"]) == (
        rule.name,
        "open_too_long",
        "critical",
    )
    assert (item["service"], item["circuit"], item["status"]) == ("checkout", "db", "firing")
    assert item["started_at"] == "2026-11-27T12:00:00.000000Z" and item["acknowledged"] is False
    assert acked["alerts"][0]["acknowledged"] is True
