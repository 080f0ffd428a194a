"""The delivery thread of live events (controlplane/core/live.py) against a real Redis,
a hung one and a gone one: the caller never waits, a full queue drops, repeated
failures pause delivery, and delivery resumes when Redis is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels_redis.core import RedisChannelLayer

from controlplane.core import live
from tests.faults import HungServer, closed_port

# No rows are used; the marker keeps the suite's session fixtures on the test database.
pytestmark = pytest.mark.django_db


def _layer(url: str, timeout: float = 0.2) -> RedisChannelLayer:
    return RedisChannelLayer(
        hosts=[{"address": url, "socket_connect_timeout": timeout, "socket_timeout": timeout}],
        prefix=f"test-{uuid.uuid4().hex}",
    )


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def dispatcher(settings: Any) -> live.Dispatcher:
    settings.SWITCHYARD_REDIS_TIMEOUT_MS = 200
    settings.SWITCHYARD_EVENTS_QUEUE = 20
    settings.SWITCHYARD_EVENTS_PAUSE_SECONDS = 1
    return live.Dispatcher()


@pytest.mark.parametrize("fault", ["hung", "gone"])
def test_a_broken_redis_never_holds_the_caller_and_pauses_delivery(
    dispatcher: live.Dispatcher, fault: str
) -> None:
    with HungServer() as hung:
        url = hung.url if fault == "hung" else f"redis://127.0.0.1:{closed_port()}/0"
        layer = _layer(url)
        started = time.monotonic()
        accepted = [
            dispatcher.submit("test event", lambda: layer.group_send("g", {"type": "t.x"}))
            for _ in range(200)
        ]
        assert time.monotonic() - started < 0.2  # 200 events queued or dropped, no waiting
        assert accepted.count(False) >= 200 - 20 - 1  # the queue holds 20: the rest dropped
        # Three failures in a row pause delivery: what is queued is dropped at once.
        _wait(lambda: dispatcher.pending() == 0)
        assert dispatcher.failed == live.FAILURES_TO_PAUSE
        assert dispatcher.paused()
        assert dispatcher.sent == 0
        assert dispatcher.dropped == 200 - live.FAILURES_TO_PAUSE


def test_delivery_resumes_after_the_pause_when_redis_is_back(
    dispatcher: live.Dispatcher, settings: Any
) -> None:
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    with HungServer() as hung:
        broken = _layer(hung.url)
        for _ in range(live.FAILURES_TO_PAUSE):
            dispatcher.submit("test event", lambda: broken.group_send("g", {"type": "t.x"}))
        _wait(lambda: dispatcher.pending() == 0)
    assert dispatcher.paused()
    layer = _layer(settings.REDIS_URL, timeout=2.0)
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("g", channel)
    # Paused: dropped. Once the pause is over, the next event probes and goes through.
    dispatcher.submit("test event", lambda: layer.group_send("g", {"type": "t.dropped"}))
    _wait(lambda: dispatcher.pending() == 0)
    assert dispatcher.dropped >= 1
    _wait(lambda: not dispatcher.paused(), timeout=5.0)
    dispatcher.submit("test event", lambda: layer.group_send("g", {"type": "t.delivered"}))
    _wait(lambda: dispatcher.sent == 1)

    async def receive() -> dict[str, Any]:
        return await asyncio.wait_for(layer.receive(channel), 5.0)

    assert async_to_sync(receive)()["type"] == "t.delivered"
    async_to_sync(layer.group_discard)("g", channel)


def test_the_in_process_layer_is_sent_to_inline(settings: Any) -> None:
    from channels.layers import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("g", channel)
    live.send_to_group(layer, "test event", layer.group_send, "g", {"type": "t.now"})
    # Already there: nothing was queued.
    assert async_to_sync(layer.receive)(channel)["type"] == "t.now"
