"""The buffered sync path (controlplane.circuits.intake) against real PostgreSQL.

Each test drives :class:`Intake` objects without their flusher thread and calls
``flush()`` itself, so that what is buffered and what is written is decided by the test,
not by timing. Two Intake objects stand for two web processes (or hosts).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.ingest import parse_sync
from controlplane.circuits.intake import AgentFastPath, FlushResult, Intake
from controlplane.circuits.models import AgentToken, Instance, Service, Snapshot, Transition
from controlplane.circuits.watch import forget_tokens

# serialized_rollback: the flush after each test keeps the roles for the tests after it.
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> Any:
    yield
    await sync_to_async(connections.close_all)()


def _service(name: str = "checkout") -> tuple[int, str]:
    service = Service.objects.create(name=name)
    _, raw = create_agent_token(service)
    return service.pk, raw


def _transition(tid: int, breaker: str = "dep_0", to: str = "open") -> dict[str, Any]:
    return {
        "id": tid,
        "breaker": breaker,
        "from": "closed" if to == "open" else "open",
        "to": to,
        "at": "2026-11-28T04:00:00Z",
        "reason": "failure_rate" if to == "open" else "probes_succeeded",
    }


def _batch(sync_body: Any, instance: str, breakers: int, tids: list[int], calls: int = 0) -> Any:
    states = {f"dep_{i}": "closed" for i in range(breakers)}
    for tid in tids:
        states["dep_0"] = "open" if tid % 2 else "closed"
    return parse_sync(
        sync_body(
            instance={"id": instance},
            breakers=[
                {"name": name, "state": state, "calls": calls}
                for name, state in sorted(states.items())
            ],
            transitions=[_transition(tid, to="open" if tid % 2 else "closed") for tid in tids],
        )
    )


async def _flush(intake: Intake, counters: bool | None = None) -> tuple[FlushResult, int]:
    """Flush on a thread of its own; returns the result and the statements it ran."""

    def run() -> tuple[FlushResult, int]:
        try:
            with CaptureQueriesContext(connection) as queries:
                result = intake.flush(counters=counters)
            return result, len(queries)
        finally:
            connections.close_all()

    return await sync_to_async(run, thread_sensitive=False)()


async def _until_buffered(intake: Intake, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(intake._syncs) < count:
        assert time.monotonic() < deadline, "the syncs were not buffered"
        await asyncio.sleep(0.005)


def _answer(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    return dict(json.loads(response.content))


async def test_unchanged_snapshots_are_not_written_and_counters_wait(sync_body: Any) -> None:
    service_id, _ = await sync_to_async(_service)()
    intake = Intake(flusher=False)
    await intake.accept(service_id, "checkout", _batch(sync_body, "i", 3, []))
    # Same values again: nothing to write at all, answered at once.
    answer = _answer(await intake.accept(service_id, "checkout", _batch(sync_body, "i", 3, [])))
    assert answer["acked_through"] == 0 and intake._syncs == [] and intake.pending_counters() == 0
    # Counters alone changed: kept for the slower cadence, not written by the next flush.
    await intake.accept(service_id, "checkout", _batch(sync_body, "i", 3, [], calls=7))
    assert intake._syncs == [] and intake.pending_counters() == 3
    result, statements = await _flush(intake, counters=False)
    assert statements == 0 and result.snapshots == 0
    result, statements = await _flush(intake, counters=True)
    assert result.snapshots == 3 and result.instances == 1 and result.events == []
    calls = await sync_to_async(lambda: sorted(Snapshot.objects.values_list("calls", flat=True)))()
    assert calls == [7, 7, 7]


async def test_crash_between_buffering_and_flush_loses_nothing_acknowledged(
    sync_body: Any,
) -> None:
    service_id, _ = await sync_to_async(_service)()
    before = Intake(flusher=False)
    await before.accept(service_id, "checkout", _batch(sync_body, "i", 2, []))
    # A sync with transitions 1-3 is buffered; the process dies before its flush.
    pending = asyncio.ensure_future(
        before.accept(service_id, "checkout", _batch(sync_body, "i", 2, [1, 2, 3]))
    )
    await _until_buffered(before, 1)
    pending.cancel()  # the crash: the agent never got an answer
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert await sync_to_async(Transition.objects.count)() == 0
    assert await sync_to_async(lambda: Instance.objects.get().acked_through)() == 0

    # The restarted server knows nothing; the agent sends 1-3 again, with 4.
    after = Intake(flusher=False)
    task = asyncio.ensure_future(
        after.accept(service_id, "checkout", _batch(sync_body, "i", 2, [1, 2, 3, 4]))
    )
    await _until_buffered(after, 1)
    result, _ = await _flush(after)
    assert _answer(await task)["acked_through"] == 4 and result.transitions_new == 4
    # And a replay of the same batch (its answer lost too) stores nothing twice.
    replay = asyncio.ensure_future(
        after.accept(service_id, "checkout", _batch(sync_body, "i", 2, [1, 2, 3, 4]))
    )
    await _until_buffered(after, 1)
    result, _ = await _flush(after)
    assert _answer(await replay)["acked_through"] == 4
    assert result.transitions_new == 0
    assert not [e for e in result.events if e["type"] == "fleet.transitions"]
    seqs = await sync_to_async(lambda: sorted(Transition.objects.values_list("seq", flat=True)))()
    assert seqs == [1, 2, 3, 4]


async def test_two_processes_flush_overlapping_batches_of_one_instance(sync_body: Any) -> None:
    service_id, _ = await sync_to_async(_service)()
    a, b = Intake(flusher=False), Intake(flusher=False)
    await a.accept(service_id, "checkout", _batch(sync_body, "i", 4, []))
    await b.accept(service_id, "checkout", _batch(sync_body, "i", 4, []))
    # The agent's sync to A timed out; it sent again to B with more (behind a balancer).
    to_a = asyncio.ensure_future(
        a.accept(service_id, "checkout", _batch(sync_body, "i", 4, [1, 2, 3, 4, 5]))
    )
    to_b = asyncio.ensure_future(
        b.accept(service_id, "checkout", _batch(sync_body, "i", 4, [3, 4, 5, 6, 7, 8]))
    )
    await _until_buffered(a, 1)
    await _until_buffered(b, 1)
    (result_a, _), (result_b, _) = await asyncio.gather(_flush(a), _flush(b))
    acked_a = _answer(await to_a)["acked_through"]
    acked_b = _answer(await to_b)["acked_through"]

    assert acked_a >= 5 and acked_b == 8
    seqs = await sync_to_async(lambda: sorted(Transition.objects.values_list("seq", flat=True)))()
    assert seqs == [1, 2, 3, 4, 5, 6, 7, 8]
    published = [
        item
        for result in (result_a, result_b)
        for event in result.events
        if event["type"] == "fleet.transitions"
        for item in event["transitions"]
    ]
    assert len(published) == 8  # each transition published once, by whoever stored it
    assert result_a.transitions_new + result_b.transitions_new == 8
    assert await sync_to_async(lambda: Instance.objects.get().acked_through)() == 8


async def test_a_restart_handled_elsewhere_sends_the_sync_through_one_transaction(
    sync_body: Any,
) -> None:
    service_id, _ = await sync_to_async(_service)()
    a, b = Intake(flusher=False), Intake(flusher=False)
    await a.accept(service_id, "checkout", _batch(sync_body, "i", 1, []))
    buffered = asyncio.ensure_future(
        a.accept(service_id, "checkout", _batch(sync_body, "i", 1, [1]))
    )
    await _until_buffered(a, 1)
    await _flush(a)
    assert _answer(await buffered)["acked_through"] == 1
    # The process restarts; its first sync reaches B, which records the new start.
    restarted = _batch(sync_body, "i", 1, [1])
    restarted.instance = dataclasses.replace(restarted.instance, started_at=timezone.now())
    assert _answer(await b.accept(service_id, "checkout", restarted))["acked_through"] == 1
    # A still caches the old start: the new process's next sync must not be buffered
    # under the old generation.
    again = _batch(sync_body, "i", 1, [1, 2])
    again.instance = restarted.instance
    assert _answer(await a.accept(service_id, "checkout", again))["acked_through"] == 2
    rows = await sync_to_async(
        lambda: sorted(Transition.objects.values_list("generation", "seq"))
    )()
    assert rows == [(0, 1), (1, 1), (1, 2)]


async def test_a_dropped_count_refused_by_the_flush_is_stored_all_the_same(
    sync_body: Any,
) -> None:
    service_id, _ = await sync_to_async(_service)()
    a, b = Intake(flusher=False), Intake(flusher=False)
    await a.accept(service_id, "checkout", _batch(sync_body, "i", 1, []))
    # The process restarts and B records the new start; A still caches the old one.
    restarted = _batch(sync_body, "i", 1, [])
    restarted.instance = dataclasses.replace(restarted.instance, started_at=timezone.now())
    await b.accept(service_id, "checkout", restarted)
    # A late sync of the old process carries only a dropped count: A buffers it, the
    # flush's instance update refuses it (another start), and it is stored all the same.
    late = _batch(sync_body, "i", 1, [])
    late.dropped_transitions = 3
    answer = asyncio.ensure_future(a.accept(service_id, "checkout", late))
    await _until_buffered(a, 1)
    assert not answer.done()  # answered only once stored
    result, _ = await _flush(a)
    assert result.instances == 0  # refused by the flush
    assert _answer(await answer)["desired_version"] >= 0
    dropped = await sync_to_async(
        lambda: Instance.objects.values_list("dropped_transitions", flat=True).get()
    )()
    assert dropped == 3


class _Call:
    """One HTTP request straight into an ASGI application."""

    def __init__(self, body: bytes, headers: dict[str, str], method: str = "POST") -> None:
        self.scope = {
            "type": "http",
            "method": method,
            "path": "/api/v1/agent/sync",
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "server": ("testserver", 80),
            "scheme": "http",
        }
        self.body = body
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def run(self) -> tuple[int, dict[str, Any]]:
        await AgentFastPath(None)(self.scope, self.receive, self.send)
        body = b"".join(m.get("body", b"") for m in self.sent[1:])
        return self.sent[0]["status"], json.loads(body) if body else {}


async def test_a_revoked_token_is_refused_within_the_bound(settings: Any, sync_body: Any) -> None:
    settings.SWITCHYARD_INTAKE_TOKEN_SECONDS = 1
    forget_tokens()
    _, raw = await sync_to_async(_service)()
    body = json.dumps(sync_body(breakers=[{"name": "dep_0"}])).encode()
    headers = {"Authorization": f"Bearer {raw}", "Host": "testserver"}
    assert (await _Call(body, headers).run())[0] == 200

    await sync_to_async(AgentToken.objects.update)(revoked_at=timezone.now())
    revoked = time.monotonic()
    # Whatever was cached, a sync sent once the bound has passed is refused.
    await asyncio.sleep(max(0.0, revoked + 1.0 - time.monotonic()))
    status, error = await _Call(body, headers).run()
    assert status == 401 and error["field"] == "authorization"


async def _fast_path_agrees_with_the_view(raw: bytes, client: Any) -> int:
    """Send ``raw`` as a sync to the Django view and to the fast path; assert the two
    answers (status and JSON body) are the same, and return the status."""
    _, token = await sync_to_async(_service)()
    django = await sync_to_async(client.post)(
        "/api/v1/agent/sync",
        data=raw,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    headers = {"Authorization": f"Bearer {token}", "Host": "testserver"}
    status, body = await _Call(raw, headers).run()
    assert (status, body) == (django.status_code, django.json())
    return status


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"instance": {"id": "web-1"}, "dropped_transitions": NaN}',
        b'{"instance": {"id": "web-1"}, "dropped_transitions": 123456789012345678901234567890}',
        b'{"instance": {"id": "bad id"}}',
        b'{"instance": {"id": "web-1"}, "service": "other"}',
        b"[]",
    ],
)
async def test_the_fast_path_refuses_what_the_django_view_refuses(raw: bytes, client: Any) -> None:
    status = await _fast_path_agrees_with_the_view(raw, client)
    assert status in {400, 403}


_SECURITY = ("strict-transport-security", "x-content-type-options", "referrer-policy")


@pytest.mark.parametrize("proto", ["http", "https"])
async def test_an_accepted_sync_carries_the_security_headers_django_would(
    proto: str, settings: Any, sync_body: Any
) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    _, token = await sync_to_async(_service)()
    raw = json.dumps(sync_body(breakers=[{"name": "dep_0"}])).encode()
    headers = {"Authorization": f"Bearer {token}", "Host": "testserver", "X-Forwarded-Proto": proto}
    seen = []
    for hsts in (0, 3600):  # a settings change reaches the next answer
        settings.SECURE_HSTS_SECONDS = hsts
        client = Client()  # Django's middleware reads the settings when first loaded
        django = await sync_to_async(client.post)(
            "/api/v1/agent/sync",
            data=raw,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
            HTTP_X_FORWARDED_PROTO=proto,
        )
        call = _Call(raw, headers)
        status, body = await call.run()
        sent = {k.decode(): v.decode() for k, v in call.sent[0]["headers"]}
        assert status == django.status_code == 200
        assert body["breakers"] == django.json()["breakers"]
        assert sent["content-type"] == "application/json"
        assert int(sent["content-length"]) == len(call.sent[1]["body"])
        expected = {h: django.headers[h] for h in _SECURITY if h in django.headers}
        assert {h: sent[h] for h in _SECURITY if h in sent} == expected
        seen.append(sent.get("strict-transport-security"))
    assert sent["x-content-type-options"] == "nosniff"
    assert seen == [None, "max-age=3600" if proto == "https" else None]
