"""Typed change events reach their sinks (the "fleet" group, the watch hub's change
feed) after the commit, and only then."""

import asyncio
import contextlib
import copy
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.utils import timezone

from controlplane.circuits import events
from controlplane.circuits.events import FLEET_GROUP, FleetOutbox
from controlplane.circuits.models import Circuit
from controlplane.circuits.operations import (
    create_config_version,
    expire_overrides,
    force_circuit,
    release_circuit,
)
from controlplane.circuits.watchhub import get_hub

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
    """A channel subscribed to the fleet group; yields a function draining the events
    about the test's own breaker (unpacked from the group's "fleet.batch" messages)."""
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
                assert {m["type"] for m in messages} <= {"fleet.batch"}
                unpacked = [e for m in messages for e in m["events"]]
                return [e for e in unpacked if _mentions(e, name)]

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


# The payload of each kind, as the dashboard and alerts read it.
FIELDS = {
    "fleet.transitions": {"type", "service_id", "service", "transitions"},
    "fleet.snapshots": {"type", "service_id", "service", "instance", "snapshots"},
    "fleet.override": {
        "type",
        "service_id",
        "circuit_id",
        "circuit",
        "action",
        "override",
        "desired_version",
    },
    "fleet.config": {
        "type",
        "service_id",
        "circuit_id",
        "circuit",
        "config_version",
        "desired_version",
    },
}


def test_every_change_reaches_both_sinks_once_after_its_commit(
    post_sync,
    sync_body,
    operator: User,
    fleet_channel,
    django_capture_on_commit_callbacks,
    name: str,
    settings: Any,
) -> None:
    """Force, config edit, release and expiry each publish one typed event to the fleet
    group and announce the new desired version to the watch hub; a sync announces none."""
    settings.REDIS_URL = ""  # the change feed of this process: read back from its hub
    hub = get_hub()
    post_sync(sync_body(breakers=[{"name": name}]))
    circuit = Circuit.objects.get()
    fleet_channel()
    assert hub.announced(circuit.service_id) == 0

    def step(action: Any) -> dict[str, Any]:
        before = hub.announced(circuit.service_id)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            action()
        assert hub.announced(circuit.service_id) == before  # nothing before the commit
        assert fleet_channel() == []
        for callback in callbacks:
            callback()
        (event,) = fleet_channel()
        assert set(event) == FIELDS[event["type"]]
        assert hub.announced(circuit.service_id) == event["desired_version"]
        return event

    forced = step(lambda: force_circuit(circuit, "forced_open", reason="drill", user=operator))
    assert (forced["type"], forced["action"], forced["desired_version"]) == (
        "fleet.override",
        "force",
        1,
    )
    config = step(
        lambda: create_config_version(
            circuit, {"failure_threshold": 3}, expected_version=1, user=operator
        )
    )
    assert (config["type"], config["config_version"], config["desired_version"]) == (
        "fleet.config",
        2,
        2,
    )
    released = step(lambda: release_circuit(circuit, user=operator))
    assert (released["action"], released["override"], released["desired_version"]) == (
        "release",
        None,
        3,
    )
    with django_capture_on_commit_callbacks(execute=True):
        force_circuit(circuit, "forced_closed", reason="drill", user=operator, expires_in=1)
    assert hub.announced(circuit.service_id) == 4
    fleet_channel()
    later = timezone.now() + timedelta(seconds=2)
    expired = step(lambda: expire_overrides(now=later))
    assert (expired["action"], expired["desired_version"]) == ("expire", 5)

    # A sync's events move no desired version: nothing for the watchers.
    with django_capture_on_commit_callbacks(execute=True):
        post_sync(sync_body(breakers=[{"name": name, "state": "open"}]))
    assert [m["type"] for m in fleet_channel()] == ["fleet.snapshots"]
    assert hub.announced(circuit.service_id) == 5


def test_the_change_feed_is_namespaced_by_the_redis_prefix(
    post_sync, sync_body, operator: User, django_capture_on_commit_callbacks, name: str, settings
) -> None:
    import redis

    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    settings.SWITCHYARD_REDIS_PREFIX = f"test-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(settings.REDIS_URL)
    # Another deployment's prefix (random, so no other process on this Redis uses it).
    ours, theirs = client.pubsub(), client.pubsub()
    ours.subscribe(f"{settings.SWITCHYARD_REDIS_PREFIX}:desired_state_changed")
    theirs.subscribe(f"test-{uuid.uuid4().hex}:desired_state_changed")
    for pubsub in (ours, theirs):  # the subscription is confirmed before the change
        assert pubsub.get_message(timeout=5.0)["type"] == "subscribe"
    post_sync(sync_body(breakers=[{"name": name}]))
    circuit = Circuit.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        force_circuit(circuit, "forced_open", reason="drill", user=operator)
    message = ours.get_message(timeout=5.0)
    assert message is not None and message["type"] == "message"
    assert json.loads(message["data"]) == {"service_id": circuit.service_id, "desired_version": 1}
    assert theirs.get_message(timeout=0.3) is None
    ours.close()
    theirs.close()


@pytest.fixture
def fleet_messages(settings: Any) -> Any:
    """The "fleet" group's messages (not unpacked), on a layer of the test's own."""
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["prefix"] = f"test-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers
    layer = get_channel_layer()
    channel = f"tests.fleet.{uuid.uuid4().hex}"
    async_to_sync(layer.group_add)(FLEET_GROUP, channel)
    received: list[dict[str, Any]] = []

    async def _until(count: int, deadline: float) -> list[dict[str, Any]]:
        # Messages until ``count`` events arrived (or the deadline), then any straggler.
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while sum(len(m["events"]) for m in received) < count and loop.time() < end:
            with contextlib.suppress(TimeoutError):
                received.append(await asyncio.wait_for(layer.receive(channel), timeout=0.5))
        with contextlib.suppress(TimeoutError):
            received.append(await asyncio.wait_for(layer.receive(channel), timeout=0.3))
        return received

    yield async_to_sync(_until)
    async_to_sync(layer.group_discard)(FLEET_GROUP, channel)


def _event(n: int) -> Any:
    return {"type": "fleet.config", "circuit_id": n}


def test_a_burst_of_writes_reaches_the_fleet_group_in_few_messages(fleet_messages: Any) -> None:
    outbox = FleetOutbox(interval=0.5)
    outbox.add([_event(0)])
    assert outbox.messages == 1  # after a quiet spell: handed over at once
    for n in range(1, 200):  # 199 more commits within the interval
        outbox.add([_event(n)])
    assert outbox.messages == 1  # they wait for the interval
    received = fleet_messages(200, 10.0)
    assert [e["circuit_id"] for m in received for e in m["events"]] == list(range(200))
    assert len(received) == 2 == outbox.messages


def test_a_message_holds_at_most_its_limit_of_events(
    fleet_messages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "FLEET_MAX_EVENTS", 3)
    outbox = FleetOutbox(interval=0.05)
    outbox.add([_event(n) for n in range(8)])
    received = fleet_messages(8, 10.0)
    assert [len(m["events"]) for m in received] == [3, 3, 2]
    assert [e["circuit_id"] for m in received for e in m["events"]] == list(range(8))


def test_a_process_about_to_exit_sends_what_waits_for_its_interval(
    fleet_messages: Any,
) -> None:
    outbox = FleetOutbox(interval=3600.0)
    outbox.add([_event(1)])
    outbox.add([_event(2)])  # would wait an hour
    outbox.flush()
    received = fleet_messages(2, 10.0)
    assert [e["circuit_id"] for m in received for e in m["events"]] == [1, 2]
