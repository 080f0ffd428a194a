"""Typed fleet events reach the channel layer group after the commit, and only then."""

import asyncio
import copy
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import User

from controlplane.circuits.events import FLEET_GROUP
from controlplane.circuits.models import Circuit
from controlplane.circuits.operations import force_circuit

pytestmark = pytest.mark.django_db


@pytest.fixture
def name() -> str:
    """A breaker name no concurrent test run uses (the Redis group is shared)."""
    return f"db_{uuid.uuid4().hex[:12]}"


def _mentions(message: dict[str, Any], name: str) -> bool:
    items = message.get("transitions") or message.get("snapshots") or [message]
    return any(item.get("circuit") == name for item in items)


@pytest.fixture
def fleet_channel(name: str, settings: Any) -> Any:
    """A channel subscribed to the fleet group; yields a function draining the messages
    about the test's own breaker."""
    # The configured layer (Redis when REDIS_URL is set) under a prefix of its own, so
    # that concurrent test runs sharing the Redis database cannot fill this channel.
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if "CONFIG" in layers["default"]:
        layers["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers
    layer = get_channel_layer()
    # A plain (not process-specific) channel name: received without a per-loop buffer.
    channel = f"tests.fleet.{uuid.uuid4().hex}"
    async_to_sync(layer.group_add)(FLEET_GROUP, channel)

    async def _drain() -> list[dict[str, Any]]:
        messages = []
        while True:
            try:
                messages.append(await asyncio.wait_for(layer.receive(channel), timeout=0.3))
            except TimeoutError:
                return [m for m in messages if _mentions(m, name)]

    yield async_to_sync(_drain)
    async_to_sync(layer.group_discard)(FLEET_GROUP, channel)


def test_sync_publishes_transitions_and_snapshot_changes_after_commit(
    post_sync, sync_body, fleet_channel, django_capture_on_commit_callbacks, name: str
) -> None:
    body = sync_body(
        breakers=[{"name": name, "state": "open"}],
        transitions=[
            {
                "id": 1,
                "breaker": name,
                "from": "closed",
                "to": "open",
                "at": "2026-11-27T10:04:00Z",
                "reason": "failure_threshold",
            }
        ],
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert post_sync(body).status_code == 200
    assert fleet_channel() == []  # nothing before the commit
    for callback in callbacks:
        callback()
    by_type = {m["type"]: m for m in fleet_channel()}
    assert set(by_type) == {"fleet.transitions", "fleet.snapshots"}
    transition = by_type["fleet.transitions"]["transitions"][0]
    assert (transition["circuit"], transition["to_state"], transition["at"]) == (
        name,
        "open",
        "2026-11-27T10:04:00.000000Z",  # the wire timestamp format (breakers.wire)
    )
    assert by_type["fleet.snapshots"]["snapshots"][0]["state"] == "open"

    # A replay stores nothing new and changes no state: no event.
    with django_capture_on_commit_callbacks(execute=True):
        post_sync(body)
    assert fleet_channel() == []


def test_force_publishes_an_override_event(
    post_sync,
    sync_body,
    operator: User,
    fleet_channel,
    django_capture_on_commit_callbacks,
    name: str,
) -> None:
    post_sync(sync_body(breakers=[{"name": name}]))
    fleet_channel()
    with django_capture_on_commit_callbacks(execute=True):
        force_circuit(Circuit.objects.get(), "forced_open", reason="drill", user=operator)
    (event,) = fleet_channel()
    assert event["type"] == "fleet.override"
    assert event["action"] == "force"
    assert event["override"]["state"] == "forced_open"
    assert event["desired_version"] == 1
