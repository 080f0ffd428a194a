"""Request bodies are size-checked, and on the API authenticated, before they are read:
against a real uvicorn, a client that declares (or streams) hundreds of megabytes is
answered after a few kilobytes, and the server has read next to nothing of it: after
the answer it drains at most ``DRAIN`` bytes of the rest (SWITCHYARD_BODY_DRAIN_BYTES,
tests/core/test_body_limit_413.py), none of a body declared longer than that.

``bytes_read`` is the server process's own count of bytes read (``/proc/PID/io``), so
these measure what the server took, not what the client managed to send."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Circuit, Service
from tests.core.rawhttp import RawRequest, bytes_read
from tests.e2e.conftest import ControlPlaneProcess, server_env

LIMIT = 64 * 1024  # SWITCHYARD_MAX_BODY_BYTES and SWITCHYARD_SYNC_MAX_BODY_BYTES here
HUGE = 300 * 1024 * 1024  # declared, never sent
DRAIN = 256 * 1024  # SWITCHYARD_BODY_DRAIN_BYTES here: what a refusal reads after answering
# What the server may read of a refused body: the headers, the first kilobytes the
# client sent before the answer, the server's own buffer (64 KiB), and its database and
# Redis traffic meanwhile. Far below what the client offers (300 MB, or 64 MB pushed).
READ_BOUND = 1024 * 1024

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any) -> Iterator[ControlPlaneProcess]:
    with django_db_blocker.unblock():
        env = server_env(
            SWITCHYARD_MAX_BODY_BYTES=str(LIMIT),
            SWITCHYARD_SYNC_MAX_BODY_BYTES=str(LIMIT),
            SWITCHYARD_BODY_DRAIN_BYTES=str(DRAIN),
        )
    process = ControlPlaneProcess(env)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def circuit(db: None) -> Circuit:
    service = Service.objects.create(name="checkout")
    return Circuit.objects.create(service=service, name="payments")


@pytest.fixture
def api_token(operator: User) -> str:
    return create_api_token(operator)[1]


def _refused_before_the_body(
    server: ControlPlaneProcess,
    method: str,
    path: str,
    headers: dict[str, str],
    *,
    chunked: bool = False,
    first: int = 16 * 1024,
) -> Any:
    """Send the headers and ``first`` body bytes, expect the answer before any more, then
    show the server takes no more: the answer, after checking what the server read."""
    assert server.proc is not None
    before = bytes_read(server.proc.pid)
    request = RawRequest(server.port, method, path, headers, chunked=chunked, first=b"{" * first)
    try:
        answer = request.answer(within=10)
        assert answer.headers.get("connection") == "close"
        pushed = request.push(64 * 1024 * 1024)
    finally:
        request.close()
    read = bytes_read(server.proc.pid) - before
    assert pushed < 32 * 1024 * 1024, f"the server kept taking the body: {pushed} bytes"
    assert read < DRAIN + READ_BOUND, f"the server read {read} bytes of a refused request"
    print(f"{method} {path}: {answer.status} after {first} bytes; server read {read} bytes")
    return answer


def _stream_past(
    server: ControlPlaneProcess, path: str, headers: dict[str, str], limit: int
) -> tuple[Any, int, int]:
    """Stream a chunked body one byte past ``limit`` and no further, expect the answer,
    then offer 64 MB more: (the answer, bytes sent before it, bytes taken after it)."""
    request = RawRequest(server.port, "POST", path, headers, chunked=True)
    try:
        for _ in range(limit // 8192):
            assert request.send(b" " * 8192)
        assert request.send(b" " * (limit % 8192 + 1))
        answer = request.answer(within=10)
        assert answer.headers.get("connection") == "close"
        return answer, request.sent, request.push(64 * 1024 * 1024)
    finally:
        request.close()


def _json_headers(length: int | None = None, token: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if length is not None:
        headers["Content-Length"] = str(length)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def test_a_declared_300_mb_body_is_refused_413_before_it_is_read(
    server: ControlPlaneProcess, circuit: Circuit, api_token: str
) -> None:
    paths = [
        f"/api/v1/circuits/{circuit.pk}/override/",  # the operator API, unauthenticated
        "/login/",  # the dashboard's sign-in form
        "/admin/login/",
    ]
    for path in paths:
        answer = _refused_before_the_body(server, "POST", path, _json_headers(HUGE))
        assert answer.status == 413, path
        assert answer.body["field"] == "body"
        assert answer.body["reason"] == f"at most {LIMIT} bytes per request, got {HUGE}"
    # Authenticated makes no difference to the size.
    answer = _refused_before_the_body(
        server, "POST", f"/api/v1/circuits/{circuit.pk}/override/", _json_headers(HUGE, api_token)
    )
    assert answer.status == 413


def test_unauthenticated_api_writes_are_refused_401_before_the_body(
    server: ControlPlaneProcess, circuit: Circuit, operator: User
) -> None:
    path = f"/api/v1/circuits/{circuit.pk}/override/"
    revoked, raw_revoked = create_api_token(operator)
    revoked.revoked_at = revoked.created_at
    revoked.save()
    agent = create_agent_token(circuit.service)[1]
    cases = [
        # (headers, chunked, challenge, reason)
        (
            _json_headers(LIMIT),
            False,
            'Bearer realm="api"',
            "Authentication credentials were not provided.",
        ),
        (
            _json_headers(None),
            True,
            'Bearer realm="api"',
            "Authentication credentials were not provided.",
        ),
        (
            _json_headers(LIMIT, "syu_not-a-token"),
            False,
            'Bearer realm="api", error="invalid_token"',
            "Invalid or revoked API token.",
        ),
        (
            _json_headers(None, raw_revoked),
            True,
            'Bearer realm="api", error="invalid_token"',
            "Invalid or revoked API token.",
        ),
        (
            _json_headers(LIMIT, agent),
            False,
            'Bearer realm="api", error="invalid_token"',
            "Bearer token is not a personal API token (syu_...).",
        ),
    ]
    for headers, chunked, challenge, reason in cases:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            answer = _refused_before_the_body(
                server, method, path, headers, chunked=chunked, first=4096
            )
            assert answer.status == 401, (method, headers)
            assert answer.headers["www-authenticate"] == challenge
            assert answer.body == {
                "detail": f"authorization: {reason}",
                "field": "authorization",
                "reason": reason,
                "errors": {"authorization": reason},
            }


def test_an_authenticated_chunked_body_is_cut_off_at_the_limit(
    server: ControlPlaneProcess, circuit: Circuit, api_token: str
) -> None:
    assert server.proc is not None
    path = f"/api/v1/circuits/{circuit.pk}/override/"
    before = bytes_read(server.proc.pid)
    answer, sent, pushed = _stream_past(server, path, _json_headers(None, api_token), LIMIT)
    read = bytes_read(server.proc.pid) - before
    assert answer.status == 413
    assert answer.body["field"] == "body"
    assert answer.body["reason"] == f"at most {LIMIT} bytes per request"
    assert read < LIMIT + DRAIN + READ_BOUND
    assert pushed < 32 * 1024 * 1024, f"the server kept taking the body: {pushed} bytes"
    print(f"chunked upload: 413 after {sent} bytes; then it took {pushed}; server read {read}")


def test_requests_within_the_limits_still_work(
    server: ControlPlaneProcess, circuit: Circuit, api_token: str
) -> None:
    path = f"/api/v1/circuits/{circuit.pk}/override/"
    status, body = server.request(
        "POST", path, {"state": "forced_open", "reason": "drill"}, token=api_token
    )
    assert status == 201, body
    # Chunked, authenticated, small: counted and passed on.
    request = RawRequest(server.port, "DELETE", path, _json_headers(None, api_token), chunked=True)
    try:
        assert request.send(b'{"reason": "drill over"}')
        assert request.send(b"")  # the last chunk
        answer = request.answer()
    finally:
        request.close()
    assert answer.status == 204
    # Reads need no credentials check before the body (there is none): 401 from DRF.
    assert server.request("GET", "/api/v1/circuits/")[0] == 401
    assert server.request("GET", "/api/v1/circuits/", token=api_token)[0] == 200
    # The sign-in page and the health check are unaffected.
    assert server.request("GET", "/login/")[0] == 200
    assert server.request("GET", "/healthz")[0] in (200, 503)  # 503: a check timed out


def test_agent_sync_checks_token_and_size_before_reading(
    server: ControlPlaneProcess, circuit: Circuit
) -> None:
    """The sync (the fast path) was already in this order; shown over real HTTP."""
    token = create_agent_token(circuit.service)[1]
    sync = "/api/v1/agent/sync"
    answer = _refused_before_the_body(server, "POST", sync, _json_headers(HUGE))
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="agent"'
    answer = _refused_before_the_body(server, "POST", sync, _json_headers(None), chunked=True)
    assert answer.status == 401
    answer = _refused_before_the_body(server, "POST", sync, _json_headers(HUGE, "sya_bogus"))
    assert answer.status == 401
    assert answer.body["reason"] == "invalid or revoked agent token"
    answer = _refused_before_the_body(server, "POST", sync, _json_headers(HUGE, token))
    assert answer.status == 413
    assert answer.body["reason"] == f"at most {LIMIT} bytes per sync, got {HUGE}"
    # Authenticated and streamed: cut off at the sync's limit.
    assert server.proc is not None
    before = bytes_read(server.proc.pid)
    answer, _, pushed = _stream_past(server, sync, _json_headers(None, token), LIMIT)
    assert answer.headers.get("connection") == "close"
    assert pushed < 32 * 1024 * 1024
    assert answer.status == 413
    assert answer.body["reason"] == f"at most {LIMIT} bytes per sync"
    assert bytes_read(server.proc.pid) - before < LIMIT + DRAIN + READ_BOUND


def test_the_agent_watch_takes_no_body(server: ControlPlaneProcess, circuit: Circuit) -> None:
    token = create_agent_token(circuit.service)[1]
    watch = "/api/v1/agent/watch?since=0"
    for headers, chunked in [
        (_json_headers(HUGE, token), False),
        (_json_headers(None, token), True),
    ]:
        answer = _refused_before_the_body(server, "GET", watch, headers, chunked=chunked)
        assert answer.status == 413
        assert answer.body["errors"] == {"body": "the watch takes no request body"}
