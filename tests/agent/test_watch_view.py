"""The long-poll watch endpoint and its wake-up fan-out, in-process and over Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.test import AsyncClient
from django.utils import timezone

from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.desired import bump_desired_version
from controlplane.circuits.models import AgentToken, Circuit, Override, Service
from controlplane.circuits.notify import get_hub

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture(autouse=True)
async def _close_sync_thread_connections() -> Any:
    """sync_to_async runs test setup on a shared thread; its connection must not outlive
    the test (the test database could not be dropped)."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(params=["in-process", "redis"])
def backend(request: Any, settings: Any) -> str:
    """Run each wake-up test with both notification backends."""
    if request.param == "in-process":
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    settings.SWITCHYARD_WATCH_HOLD = 5.0
    return str(request.param)


def _setup() -> tuple[Service, str, Circuit]:
    service = Service.objects.create(name="checkout")
    _, raw = create_agent_token(service)
    circuit = Circuit.objects.create(service=service, name="payments")
    return service, raw, circuit


def _force(service_id: int, circuit: Circuit) -> int:
    with transaction.atomic():
        Override.objects.create(
            circuit=circuit, state="forced_open", reason="db failover", created_at=timezone.now()
        )
        return bump_desired_version(service_id)


async def _watch(client: AsyncClient, raw: str, since: int | str) -> Any:
    return await client.get(
        f"/api/v1/agent/watch?since={since}", headers={"Authorization": f"Bearer {raw}"}
    )


async def _wait_until_waiting(service_id: int, count: int) -> None:
    for _ in range(500):
        if get_hub().waiting(service_id) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {get_hub().waiting(service_id)} of {count} watchers waiting")


async def test_behind_watcher_gets_the_desired_state_at_once(settings):
    service, raw, circuit = await sync_to_async(_setup)()
    await sync_to_async(_force)(service.id, circuit)
    response = await _watch(AsyncClient(), raw, 0)
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["desired_version"] == 1
    override = body["breakers"]["payments"]["override"]
    assert (override["state"], override["reason"]) == ("forced_open", "db failover")


async def test_change_wakes_every_watcher_with_one_build(backend):
    service, raw, circuit = await sync_to_async(_setup)()
    hub = get_hub()
    builds = hub.builds
    watchers = [asyncio.ensure_future(_watch(AsyncClient(), raw, 0)) for _ in range(25)]
    await _wait_until_waiting(service.id, 25)
    loop = asyncio.get_running_loop()
    started = loop.time()
    version = await sync_to_async(_force)(service.id, circuit)
    responses = await asyncio.wait_for(asyncio.gather(*watchers), 3.0)
    assert loop.time() - started < 3.0
    bodies = [json.loads(r.content) for r in responses]
    assert {r.status_code for r in responses} == {200}
    assert {b["desired_version"] for b in bodies} == {version}
    assert all(b["breakers"]["payments"]["override"]["state"] == "forced_open" for b in bodies)
    # One desired state built for the 25 woken watchers, not one each.
    assert hub.builds - builds == 1
    assert hub.waiting(service.id) == 0


async def test_change_of_another_service_does_not_wake(backend, settings):
    settings.SWITCHYARD_WATCH_HOLD = 0.5
    service, raw, _ = await sync_to_async(_setup)()

    def other() -> tuple[int, Circuit]:
        svc = Service.objects.create(name="billing")
        return svc.id, Circuit.objects.create(service=svc, name="ledger")

    other_id, other_circuit = await sync_to_async(other)()
    watcher = asyncio.ensure_future(_watch(AsyncClient(), raw, 0))
    await _wait_until_waiting(service.id, 1)
    await sync_to_async(_force)(other_id, other_circuit)
    response = await watcher
    assert response.status_code == 204


async def test_hold_ends_with_204_after_the_configured_time(settings):
    settings.SWITCHYARD_WATCH_HOLD = 0.2
    _, raw, _ = await sync_to_async(_setup)()
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await _watch(AsyncClient(), raw, 0)
    assert response.status_code == 204
    assert 0.15 < loop.time() - started < 2.0


async def test_watcher_that_went_away_is_forgotten(backend):
    service, raw, _ = await sync_to_async(_setup)()
    watcher = asyncio.ensure_future(_watch(AsyncClient(), raw, 0))
    await _wait_until_waiting(service.id, 1)
    watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watcher
    assert get_hub().waiting(service.id) == 0


@pytest.mark.parametrize(
    ("query", "reason"),
    [("", "got ''"), ("abc", "got 'abc'"), ("-1", "got -1"), (str(2**64), "got 1844")],
)
async def test_bad_since_is_a_400_naming_the_field(query, reason):
    _, raw, _ = await sync_to_async(_setup)()
    response = await _watch(AsyncClient(), raw, query)
    assert response.status_code == 400
    body = json.loads(response.content)
    assert body["field"] == "since"
    assert reason in body["reason"]
    assert body["errors"] == {"since": body["reason"]}


async def test_missing_wrong_revoked_or_foreign_tokens_are_refused():
    _, raw, _ = await sync_to_async(_setup)()
    client = AsyncClient()
    missing = await client.get("/api/v1/agent/watch?since=0")
    assert missing.status_code == 401
    assert json.loads(missing.content)["field"] == "Authorization"
    assert (await _watch(client, "sya_not-a-real-token", 0)).status_code == 401
    assert (await _watch(client, "syu_personal-tokens-do-not-watch", 0)).status_code == 401
    await sync_to_async(AgentToken.objects.update)(revoked_at=timezone.now())
    assert (await _watch(client, raw, 0)).status_code == 401


async def test_only_get_is_allowed():
    _, raw, _ = await sync_to_async(_setup)()
    response = await AsyncClient().post(
        "/api/v1/agent/watch?since=0", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert response.status_code == 405
    assert response["Allow"] == "GET"


class AsgiCall:
    """Drive an ASGI app with one HTTP request, as a server would."""

    def __init__(
        self, path: str, query: str = "", headers: dict[str, str] | None = None, method: str = "GET"
    ) -> None:
        self.scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query.encode(),
            "headers": [
                (k.lower().encode(), v.encode())
                for k, v in {"host": "testserver", **(headers or {})}.items()
            ],
        }
        self.disconnected = asyncio.Event()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def run(self, app: Any) -> tuple[int, bytes]:
        await app(self.scope, self.receive, self.send)
        if not self.sent:
            return 0, b""
        return self.sent[0]["status"], b"".join(m.get("body", b"") for m in self.sent[1:])


async def test_fast_path_wakes_watchers_without_the_django_stack(backend):
    from controlplane.circuits.watch import WatchFastPath

    passed_on: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        passed_on.append(scope["path"])

    app = WatchFastPath(inner)
    service, raw, circuit = await sync_to_async(_setup)()
    auth = {"Authorization": f"Bearer {raw}"}
    calls = [AsgiCall("/api/v1/agent/watch", "since=0", auth) for _ in range(10)]
    tasks = [asyncio.ensure_future(c.run(app)) for c in calls]
    await _wait_until_waiting(service.id, 10)
    version = await sync_to_async(_force)(service.id, circuit)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 3.0)
    assert {status for status, _ in results} == {200}
    assert {json.loads(body)["desired_version"] for _, body in results} == {version}
    headers = dict(calls[0].sent[0]["headers"])
    assert headers[b"content-type"] == b"application/json"
    # Anything else goes to the wrapped application untouched.
    assert await AsgiCall("/api/v1/agent/sync", method="POST").run(app) == (0, b"")
    assert passed_on == ["/api/v1/agent/sync"]


async def test_fast_path_checks_input_host_and_frees_a_departed_watcher(backend):
    from controlplane.circuits.watch import WatchFastPath

    app = WatchFastPath(None)
    service, raw, _ = await sync_to_async(_setup)()
    auth = {"Authorization": f"Bearer {raw}"}
    status, body = await AsgiCall("/api/v1/agent/watch", "since=x", auth).run(app)
    assert status == 400 and json.loads(body)["field"] == "since"
    status, body = await AsgiCall("/api/v1/agent/watch", "since=0").run(app)
    assert status == 401
    status, body = await AsgiCall(
        "/api/v1/agent/watch", "since=0", {**auth, "host": "evil.example"}
    ).run(app)
    assert status == 400 and json.loads(body)["field"] == "Host"
    call = AsgiCall("/api/v1/agent/watch", "since=0", auth)
    task = asyncio.ensure_future(call.run(app))
    await _wait_until_waiting(service.id, 1)
    call.disconnected.set()
    assert await asyncio.wait_for(task, 2.0) == (0, b"")
    assert get_hub().waiting(service.id) == 0


async def test_hub_distrusts_what_it_learned_before_its_change_feed_broke(settings):
    import redis

    from controlplane.circuits.notify import WatchHub, listener_name

    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    hub = WatchHub(builder=lambda service_id: {"desired_version": 0, "breakers": {}})
    waiter = hub.register(999_999, 0)  # starts the listener
    try:
        for _ in range(300):
            if hub.feed_generation() is not None:
                break
            await asyncio.sleep(0.01)
        generation = hub.feed_generation()
        assert generation is not None
        hub.learn(42, 7, generation)
        assert hub.current_version(42) == 7
        hub.learn(43, 3, generation - 1)  # read before this stretch of the feed: ignored
        assert hub.current_version(43) is None
        # Cut the listener's connection, as a Redis restart or network blip would.
        client = redis.Redis.from_url(settings.REDIS_URL)
        ids = [c["id"] for c in client.client_list() if c.get("name") == listener_name()]
        for client_id in ids:
            client.client_kill_filter(_id=client_id)
        assert ids
        for _ in range(300):
            if hub.feed_generation() not in (None, generation):
                break
            await asyncio.sleep(0.01)
        assert hub.feed_generation() not in (None, generation)
        assert hub.current_version(42) is None  # changes may have passed unheard
    finally:
        hub.unregister(waiter)
        hub.stop()
