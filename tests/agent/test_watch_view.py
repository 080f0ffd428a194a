"""The long-poll watch endpoint and its wake-up fan-out, in-process and over Redis."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient
from django.urls import path
from django.utils import timezone

from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import AgentToken, Circuit, Service
from controlplane.circuits.operations import force_circuit
from controlplane.circuits.watch import WatchFastPath, agent_watch
from controlplane.circuits.watchhub import get_hub

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture(autouse=True)
async def _close_sync_thread_connections() -> Any:
    """sync_to_async runs test setup on a shared thread; its connection must not outlive
    the test (the test database could not be dropped)."""
    yield
    await sync_to_async(connections.close_all)()


# Redis pub/sub channels are server-wide (not per database): a change feed of this test
# process alone, so that other runs' services (with the same ids) cannot wake ours.
REDIS_PREFIX = f"test-{uuid.uuid4().hex}"


@pytest.fixture(params=["in-process", "redis"])
def backend(request: Any, settings: Any) -> str:
    """Run each wake-up test with both change feed backends."""
    if request.param == "in-process":
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    settings.SWITCHYARD_REDIS_PREFIX = REDIS_PREFIX
    settings.SWITCHYARD_WATCH_HOLD = 5.0
    return str(request.param)


def _setup() -> tuple[Service, str, Circuit]:
    service = Service.objects.create(name="checkout")
    _, raw = create_agent_token(service)
    circuit = Circuit.objects.create(service=service, name="payments")
    return service, raw, circuit


def _force(service_id: int, circuit: Circuit) -> int:
    """Force through the real operation: its committed event wakes the watchers."""
    force_circuit(circuit, "forced_open", reason="db failover", user=None)
    return int(Service.objects.values_list("desired_version", flat=True).get(pk=service_id))


async def _watch(client: AsyncClient, raw: str, since: int | str) -> Any:
    return await client.get(
        f"/api/v1/agent/watch?since={since}", headers={"Authorization": f"Bearer {raw}"}
    )


async def _wait_until_waiting(service_id: int, count: int, timeout: float = 10.0) -> None:
    """Until ``count`` watchers wait and the hub hears the change feed (with Redis, the
    listener subscribes in the background: a change published before would be lost)."""
    from django.conf import settings

    from controlplane.circuits.watchhub import channel_name

    hub = get_hub()

    def ready() -> bool:
        if hub.waiting(service_id) < count:
            return False
        return not settings.REDIS_URL or (
            hub.listening_on() == channel_name() and hub.feed_generation() is not None
        )

    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{hub.waiting(service_id)} of {count} watchers waiting, "
                f"feed on {hub.listening_on()!r}"
            )
        await asyncio.sleep(0.01)


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
    assert 0.15 < loop.time() - started < 5.0


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
    assert json.loads(missing.content)["field"] == "authorization"
    assert missing["WWW-Authenticate"] == 'Bearer realm="agent"'
    wrong = await _watch(client, "sya_not-a-real-token", 0)
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"] == 'Bearer realm="agent", error="invalid_token"'
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
    assert status == 400 and json.loads(body)["field"] == "host"
    call = AsgiCall("/api/v1/agent/watch", "since=0", auth)
    task = asyncio.ensure_future(call.run(app))
    await _wait_until_waiting(service.id, 1)
    call.disconnected.set()
    assert await asyncio.wait_for(task, 2.0) == (0, b"")
    assert get_hub().waiting(service.id) == 0


async def test_fast_path_host_verdicts_follow_allowed_hosts(backend, settings):
    app = WatchFastPath(None)
    _, raw, _ = await sync_to_async(_setup)()
    evil = {"Authorization": f"Bearer {raw}", "host": "evil.example"}
    for _ in range(2):  # the second verdict comes from the fast path's cache
        status, body = await AsgiCall("/api/v1/agent/watch", "since=x", evil).run(app)
        assert status == 400 and json.loads(body)["field"] == "host"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "evil.example"]
    status, body = await AsgiCall("/api/v1/agent/watch", "since=x", evil).run(app)
    assert status == 400 and json.loads(body)["field"] == "since"  # past the host check
    settings.ALLOWED_HOSTS = [h for h in settings.ALLOWED_HOSTS if h != "evil.example"]
    status, body = await AsgiCall("/api/v1/agent/watch", "since=x", evil).run(app)
    assert status == 400 and json.loads(body)["field"] == "host"


# A URL configuration that mounts the watch elsewhere (see the test below).
urlpatterns = [path("agents/v2/watch", agent_watch)]


async def test_fast_path_serves_the_watch_wherever_the_url_configuration_routes_it(settings):
    passed_on: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        passed_on.append(scope["path"])

    app = WatchFastPath(inner)
    assert (await AsgiCall("/api/v1/agent/watch", "since=0").run(app))[0] == 401
    settings.ROOT_URLCONF = __name__
    status, body = await AsgiCall("/agents/v2/watch", "since=0").run(app)
    assert status == 401 and json.loads(body)["field"] == "authorization"
    assert (await AsgiCall("/api/v1/agent/watch", "since=0").run(app)) == (0, b"")
    assert passed_on == ["/api/v1/agent/watch"]
    # Mounted below a root path, as a server with --root-path passes it.
    call = AsgiCall("/switchyard/agents/v2/watch", "since=0")
    call.scope["root_path"] = "/switchyard"
    assert (await call.run(app))[0] == 401


SECURITY_HEADERS = (
    "strict-transport-security",
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "location",
)

SECURITY_SETTINGS = {
    "defaults": {},
    "hsts": {
        "SECURE_HSTS_SECONDS": 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    },
    "ssl-redirect": {
        "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    },
    "policies": {
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "SECURE_REFERRER_POLICY": "no-referrer, strict-origin",
        "SECURE_CROSS_ORIGIN_OPENER_POLICY": "same-origin-allow-popups",
    },
}


@pytest.mark.parametrize("proto", ["http", "https"])
@pytest.mark.parametrize("case", sorted(SECURITY_SETTINGS))
async def test_fast_path_sets_the_security_headers_django_would(settings, case, proto):
    for name, value in SECURITY_SETTINGS[case].items():
        setattr(settings, name, value)
    _, raw, _ = await sync_to_async(_setup)()
    settings.SWITCHYARD_WATCH_HOLD = 0.2
    headers = {"Authorization": f"Bearer {raw}", "X-Forwarded-Proto": proto}

    django = await AsyncClient().get("/api/v1/agent/watch?since=0", headers=headers)
    call = AsgiCall("/api/v1/agent/watch", "since=0", headers)
    status, _ = await call.run(WatchFastPath(None))
    fast = {k.decode(): v.decode() for k, v in call.sent[0]["headers"]}

    assert status == django.status_code
    expected = {h: django.headers[h] for h in SECURITY_HEADERS if h in django.headers}
    assert {h: fast[h] for h in SECURITY_HEADERS if h in fast} == expected
    # What each setting must produce (so the comparison above cannot pass empty-handed).
    assert expected["x-content-type-options"] == "nosniff"
    assert expected["cross-origin-opener-policy"]
    if case == "hsts" and proto == "https":
        assert expected["strict-transport-security"] == ("max-age=3600; includeSubDomains; preload")
    else:
        assert "strict-transport-security" not in expected
    if case == "ssl-redirect" and proto == "http":
        assert status == 301
        assert expected["location"] == "https://testserver/api/v1/agent/watch?since=0"
    else:
        assert status == 204
    if case == "policies":
        assert expected["referrer-policy"] == "no-referrer,strict-origin"


async def test_the_deployed_asgi_application_serves_the_watch_with_security_headers(settings):
    from controlplane.asgi import application

    settings.SECURE_HSTS_SECONDS = 60
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    service, raw, circuit = await sync_to_async(_setup)()
    await sync_to_async(_force)(service.id, circuit)
    headers = {"Authorization": f"Bearer {raw}", "X-Forwarded-Proto": "https"}
    call = AsgiCall("/api/v1/agent/watch", "since=0", headers)
    status, body = await call.run(application)
    sent = {k.decode(): v.decode() for k, v in call.sent[0]["headers"]}
    assert status == 200 and json.loads(body)["desired_version"] == 1
    assert sent["strict-transport-security"] == "max-age=60"
    assert sent["x-content-type-options"] == "nosniff"
    assert sent["content-type"] == "application/json"
    assert "set-cookie" not in sent and "vary" not in sent  # no session stack ran


async def test_hub_distrusts_what_it_learned_before_its_change_feed_broke(settings):
    import redis

    from controlplane.circuits.watchhub import WatchHub, listener_name

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


async def _poll(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def redis_feed(settings: Any) -> None:
    """The Redis change feed of this test process."""
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    settings.SWITCHYARD_REDIS_PREFIX = REDIS_PREFIX
    settings.SWITCHYARD_WATCH_HOLD = 30.0


async def test_a_bogus_version_on_the_change_feed_does_not_make_watches_answer_at_once(
    redis_feed, settings
):
    """A message on the real Redis channel announcing a version the database does not
    have: a watch at the current version keeps waiting, and a real change still wakes it."""
    import redis

    from controlplane.circuits.watchhub import channel_name

    service, raw, circuit = await sync_to_async(_setup)()
    hub = get_hub()
    bogus = 10**9

    # A watcher already held when the message arrives: woken by nothing but a real change.
    held = asyncio.ensure_future(_watch(AsyncClient(), raw, 0))
    await _wait_until_waiting(service.id, 1)
    builds = hub.builds
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        message = json.dumps({"service_id": service.id, "desired_version": bogus})
        assert client.publish(channel_name(), message) >= 1
    finally:
        client.close()
    # The hub heard it, built the desired state once, and believed the database (0).
    await _poll(lambda: hub.builds > builds)
    await _poll(lambda: hub.announced(service.id) == 0)
    assert not held.done()

    # A new watch at the current version long-polls too, instead of answering at once.
    fresh = asyncio.ensure_future(_watch(AsyncClient(), raw, 0))
    await _wait_until_waiting(service.id, 2)
    assert not held.done() and not fresh.done()
    assert hub.current_version(service.id) == 0

    version = await sync_to_async(_force)(service.id, circuit)
    responses = await asyncio.wait_for(asyncio.gather(held, fresh), 5.0)
    assert [r.status_code for r in responses] == [200, 200]
    assert {json.loads(r.content)["desired_version"] for r in responses} == {version} == {1}


async def test_a_bogus_version_heard_without_watchers_costs_one_build(redis_feed, settings):
    """Announced while nobody waits: the first watch checks it against the database and
    waits; the hub then forgets the announcement."""
    import redis

    from controlplane.circuits.watchhub import channel_name

    service, raw, circuit = await sync_to_async(_setup)()
    hub = get_hub()
    hub.listen()
    await _wait_until_waiting(service.id, 0)
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        message = json.dumps({"service_id": service.id, "desired_version": 10**9})
        assert client.publish(channel_name(), message) >= 1
    finally:
        client.close()
    await _poll(lambda: hub.announced(service.id) == 10**9)
    watcher = asyncio.ensure_future(_watch(AsyncClient(), raw, 0))
    await _wait_until_waiting(service.id, 1)
    await _poll(lambda: hub.announced(service.id) == 0)  # checked against the database
    assert not watcher.done() and hub.waiting(service.id) == 1
    version = await sync_to_async(_force)(service.id, circuit)
    response = await asyncio.wait_for(watcher, 5.0)
    assert response.status_code == 200
    assert json.loads(response.content)["desired_version"] == version


def test_announcements_of_made_up_services_do_not_grow_the_hub_without_bound(monkeypatch):
    from controlplane.circuits import watchhub

    monkeypatch.setattr(watchhub, "MAX_ANNOUNCED", 3)
    hub = watchhub.WatchHub(builder=lambda service_id: {"desired_version": 0})
    for service_id in range(1, 11):
        hub.wake(service_id, 10**9)
    assert len(hub._announced) <= 3 and len(hub._heard_at) <= 3
    assert hub.announced(10) == 10**9
    hub.stop()


# -- reads shared by requests that arrive together --------------------------------------


async def test_behind_watchers_arriving_together_share_one_build(backend, monkeypatch):
    """25 agents behind the current version, watching at once before this process built
    that version: one desired state is read from the database for all of them."""
    from controlplane.circuits import watch

    service, raw, circuit = await sync_to_async(_setup)()
    version = await sync_to_async(_force)(service.id, circuit)
    builds: list[int] = []
    real = watch._build

    def counted(service_id: int) -> tuple[int, bytes]:
        builds.append(service_id)
        time.sleep(0.05)  # long enough for every request to arrive while it runs
        return real(service_id)

    monkeypatch.setattr(watch, "_build", counted)
    responses = await asyncio.gather(*(_watch(AsyncClient(), raw, 0) for _ in range(25)))
    assert {r.status_code for r in responses} == {200}
    assert {json.loads(r.content)["desired_version"] for r in responses} == {version}
    assert builds == [service.id]


async def test_syncs_arriving_together_share_the_reads_of_their_answer(settings, monkeypatch):
    """After a change with an override that expires, the answers of syncs that arrive
    together cost one build and one read of the earliest end, not one each."""
    from controlplane.circuits import watch
    from controlplane.circuits.sync import answer

    settings.REDIS_URL = ""
    service, _, circuit = await sync_to_async(_setup)()

    def force_with_expiry() -> int:
        force_circuit(circuit, "forced_open", reason="db failover", user=None, expires_in=600)
        return int(Service.objects.values_list("desired_version", flat=True).get(pk=service.id))

    version = await sync_to_async(force_with_expiry)()
    calls: list[str] = []

    def counting(name: str, real: Any) -> Any:
        def call(service_id: int) -> Any:
            calls.append(name)
            time.sleep(0.05)
            return real(service_id)

        return call

    monkeypatch.setattr(watch, "_build", counting("build", watch._build))
    monkeypatch.setattr(answer, "_earliest_end", counting("end", answer._earliest_end))
    monkeypatch.setattr(answer, "_read_version", counting("version", answer._read_version))
    payloads = await asyncio.gather(*(answer.desired_cached(service.id) for _ in range(25)))
    assert {json.loads(p)["desired_version"] for p in payloads} == {version}
    assert sorted(calls) == ["build", "end", "version"]
    # Known now: the next sync reads nothing.
    calls.clear()
    assert json.loads(await answer.desired_cached(service.id))["desired_version"] == version
    assert calls == []


async def test_a_shared_read_that_fails_fails_its_callers_and_the_next_one_reads_again():
    from controlplane.circuits.watch import shared

    runs: list[int] = []
    gate = asyncio.Event()

    async def read(value: int) -> int:
        runs.append(value)
        await gate.wait()
        if len(runs) == 1:
            raise RuntimeError("database gone")
        return value

    first = [asyncio.ensure_future(shared("k", read, 1)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*first, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError] * 3 and runs == [1]
    assert await shared("k", read, 2) == 2 and runs == [1, 2]


async def test_a_caller_that_goes_away_does_not_cancel_a_shared_read():
    from controlplane.circuits.watch import shared

    gate = asyncio.Event()

    async def read() -> str:
        await gate.wait()
        return "read"

    leaving = asyncio.ensure_future(shared("k2", read))
    staying = asyncio.ensure_future(shared("k2", read))
    await asyncio.sleep(0)
    leaving.cancel()
    gate.set()
    assert await staying == "read"
    assert leaving.cancelled()


async def test_released_watches_answer_204_at_once(settings):
    """What a stopping server does (controlplane.serve): every held watch ends with a
    204, as if its hold had run out; a watch that comes after waits as usual."""
    settings.REDIS_URL = ""
    settings.SWITCHYARD_WATCH_HOLD = 30.0
    service, raw, _ = await sync_to_async(_setup)()
    held = [asyncio.ensure_future(_watch(AsyncClient(), raw, 0)) for _ in range(3)]
    await _wait_until_waiting(service.id, 3)
    assert get_hub().release() >= 3
    responses = await asyncio.wait_for(asyncio.gather(*held), 5.0)
    assert [r.status_code for r in responses] == [204] * 3
    assert [r.content for r in responses] == [b""] * 3
    later = asyncio.ensure_future(_watch(AsyncClient(), raw, 0))
    await _wait_until_waiting(service.id, 1)
    assert not later.done()
    later.cancel()
