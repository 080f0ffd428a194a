"""The request guard's decisions, in process: what reaches the application behind it and
what is answered without a byte of the body read (the real server: test_request_limits)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from controlplane import requestguard
from controlplane.requestguard import RequestGuard

LIMIT = 4096


class Inner:
    """The application behind the guard: reads the whole body, answers 200."""

    def __init__(self) -> None:
        self.calls = 0
        self.body = b""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # as Django does: nobody to answer
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _run(
    method: str,
    path: str,
    headers: dict[str, str],
    chunks: list[bytes],
    inner: Inner | None = None,
    taken_in_all: list[int] | None = None,
) -> tuple[int, dict[str, str], Any, int, Inner]:
    """One request through the guard: (status, headers, JSON body or text, body messages
    taken from the client before the answer began, the inner app). ``taken_in_all``
    gets the messages taken by the end (a refusal drains the rest of the body)."""
    inner = inner or Inner()
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks or [b""])
    ]
    taken = 0
    taken_at_answer: int | None = None
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal taken
        if taken < len(messages):
            taken += 1
            return messages[taken - 1]
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal taken_at_answer
        if message["type"] == "http.response.start":
            taken_at_answer = taken
        elif taken_at_answer is not None and len(sent) == 1:
            assert taken == taken_at_answer, "the answer's body came after reading more"
        sent.append(message)

    asyncio.run(RequestGuard(inner)(scope, receive, send))
    assert taken_at_answer is not None
    if taken_in_all is not None:
        taken_in_all.append(taken)
    start = sent[0]
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    parsed = (
        json.loads(body) if response_headers.get("content-type") == "application/json" else body
    )
    return start["status"], response_headers, parsed, taken_at_answer, inner


@pytest.fixture(autouse=True)
def _limit() -> Iterator[None]:
    requestguard.forget_tokens()
    with override_settings(SWITCHYARD_MAX_BODY_BYTES=LIMIT):
        yield
    requestguard.forget_tokens()


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    status, headers, body, taken, inner = _run(
        "POST", "/login/", {"Content-Length": str(LIMIT + 1)}, [b"x" * (LIMIT + 1)]
    )
    assert (status, taken, inner.calls) == (413, 0, 0)
    assert headers["connection"] == "close"
    assert body["errors"] == {"body": f"at most {LIMIT} bytes per request, got {LIMIT + 1}"}
    # At the limit it passes.
    status, _, _, _, inner = _run("POST", "/login/", {"Content-Length": str(LIMIT)}, [b"x" * LIMIT])
    assert (status, inner.body) == (200, b"x" * LIMIT)


def test_a_refused_body_is_drained_after_the_answer_within_the_bound() -> None:
    """The answer goes out whole (a Content-Length) before a byte is read; then the rest of
    the body is read and discarded so that the client can finish writing and read it."""
    chunks = [b"x" * 1000] * 6
    taken: list[int] = []
    with override_settings(SWITCHYARD_BODY_DRAIN_BYTES=LIMIT * 4):
        status, headers, body, before, _ = _run(
            "POST", "/login/", {"Content-Length": "6000"}, chunks, taken_in_all=taken
        )
        assert (status, before, taken) == (413, 0, [6])
        assert headers["content-length"] == str(len(json.dumps(body)))
        # Declared past the bound: nothing is read, the connection is closed at once.
        status, _, _, _, _ = _run(
            "POST", "/login/", {"Content-Length": str(LIMIT * 4 + 1)}, chunks, taken_in_all=taken
        )
        assert (status, taken[-1]) == (413, 0)
        # Streamed: read up to the bound, no further.
        status, _, _, before, _ = _run(
            "POST", "/login/", {}, [b"x" * 1000] * 40, taken_in_all=taken
        )
        assert (status, before) == (413, 5)
        assert taken[-1] == 5 + 17  # 17 more passes the bound of 16,384 bytes
        # A client waiting for 100 Continue has sent no body: none is read (reading would
        # send the 100 Continue after the answer).
        expect = {"Content-Length": "6000", "Expect": "100-continue"}
        status, _, _, _, _ = _run("POST", "/login/", expect, chunks, taken_in_all=taken)
        assert (status, taken[-1]) == (413, 0)
    with override_settings(SWITCHYARD_BODY_DRAIN_BYTES=0):
        _run("POST", "/login/", {"Content-Length": "6000"}, chunks, taken_in_all=taken)
        assert taken[-1] == 0


def test_a_content_length_that_is_not_a_number_is_400() -> None:
    status, _, body, taken, inner = _run("POST", "/login/", {"Content-Length": "lots"}, [b"x"])
    assert (status, taken, inner.calls) == (400, 0, 0)
    assert body["field"] == "body"


def test_a_streamed_body_is_cut_off_past_the_limit() -> None:
    chunks = [b"x" * 1000] * 10
    status, headers, body, taken, inner = _run("POST", "/login/", {}, chunks)
    assert status == 413
    assert headers["connection"] == "close"
    assert body["reason"] == f"at most {LIMIT} bytes per request"
    assert taken == 5  # the chunk that passed the limit, not one more
    assert inner.calls == 1 and len(inner.body) == 4000
    # Under the limit, the whole stream goes through.
    status, _, _, _, inner = _run("POST", "/login/", {}, [b"x" * 1000] * 4)
    assert (status, len(inner.body)) == (200, 4000)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_api_writes_without_credentials_are_refused_unread(method: str) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Cookie": "theme=dark"}):
        status, response_headers, body, taken, inner = _run(
            method, "/api/v1/circuits/1/override/", {"Content-Length": "10", **headers}, [b"x" * 10]
        )
        assert (status, taken, inner.calls) == (401, 0, 0), headers
        assert response_headers["www-authenticate"] == 'Bearer realm="api"'
        assert body["field"] == "authorization"


def test_what_goes_on_to_the_application() -> None:
    cases = [
        ("POST", "/api/v1/circuits/1/override/", {"Cookie": "sessionid=abc"}),  # Django decides
        ("GET", "/api/v1/circuits/", {}),  # reads: DRF answers 401 itself
        ("HEAD", "/api/v1/circuits/", {}),
        ("POST", "/login/", {}),  # not the API: the form's own checks
        ("POST", "/admin/login/", {}),
    ]
    for method, path, headers in cases:
        status, _, _, _, inner = _run(method, path, {"Content-Length": "2", **headers}, [b"{}"])
        assert (status, inner.calls, inner.body) == (200, 1, b"{}"), (method, path)


def test_a_valid_api_token_is_looked_up_once_per_cache_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups: list[str] = []
    clock = [1000.0]

    def lookup(raw: str) -> requestguard.FoundToken | None:
        lookups.append(raw)
        return requestguard.FoundToken(expires_at=None) if raw == "syu_good" else None

    monkeypatch.setattr(requestguard, "_find_api_token", lookup)
    monkeypatch.setattr(requestguard.time, "monotonic", lambda: clock[0])
    path = "/api/v1/circuits/1/override/"

    def post(token: str) -> int:
        headers = {"Content-Length": "2", "Authorization": f"Bearer {token}"}
        return _run("POST", path, headers, [b"{}"])[0]

    assert [post("syu_good"), post("syu_good")] == [200, 200]
    assert lookups == ["syu_good"]
    clock[0] += requestguard.TOKEN_CACHE_SECONDS + 1
    assert post("syu_good") == 200
    assert lookups == ["syu_good"] * 2
    # Refused tokens are looked up every time (never cached as valid).
    assert [post("syu_bad"), post("syu_bad")] == [401, 401]
    assert lookups.count("syu_bad") == 2
    # An agent token is not an API token: refused without a lookup.
    assert post("sya_agent") == 401
    assert "sya_agent" not in lookups


@pytest.mark.django_db(transaction=True)
def test_an_expired_api_token_is_refused_unread_with_the_apis_reason(operator: Any) -> None:
    """As DRF would answer after reading the body: 401, field authorization, the expiry
    named; and a token remembered as valid is refused once its expiry passes."""
    from datetime import timedelta

    import time_machine

    from controlplane.circuits.auth import create_api_token

    start = timezone.now()
    token, raw = create_api_token(
        operator, label="ci", days=7, now=start - timedelta(days=7, seconds=1)
    )
    headers = {"Content-Length": "2", "Authorization": f"Bearer {raw}"}
    path = "/api/v1/circuits/1/override/"
    status, response_headers, body, taken, inner = _run("POST", path, headers, [b"{}"])
    assert (status, taken, inner.calls) == (401, 0, 0)
    assert response_headers["www-authenticate"] == 'Bearer realm="api", error="invalid_token"'
    assert body["errors"] == {
        "authorization": f"API token expired at {token.expires_at.isoformat()}."
    }
    # Valid now, cached as valid, expired a minute later: refused within the cache period.
    fresh, raw = create_api_token(operator, label="ci", days=1, now=start)
    headers["Authorization"] = f"Bearer {raw}"
    with time_machine.travel(start + timedelta(hours=23, minutes=59), tick=False):
        assert _run("POST", path, headers, [b"{}"])[0] == 200
    with time_machine.travel(start + timedelta(days=1, minutes=1), tick=False):
        status, _, body, _, _ = _run("POST", path, headers, [b"{}"])
    assert status == 401
    assert body["reason"] == f"API token expired at {fresh.expires_at.isoformat()}."
