"""A body over the limit is answered 413, and ordinary clients read that answer.

Most HTTP clients write the whole request body before they read a byte of the answer.
A server that answers early and closes the connection with part of the body unread
makes the kernel reset the connection, and the reset discards the answer: the client
sees "connection reset" instead of the 413. Against a real uvicorn, ``requests``,
``httpx`` and ``curl`` send a 2 MiB body (the limits are 1 MiB) to the agent sync (the
fast path) and to an operator API route (the request guard) and must each read the 413
and its JSON error body; the rest of the body is read and discarded up to
``SWITCHYARD_BODY_DRAIN_BYTES`` and ``SWITCHYARD_BODY_DRAIN_SECONDS``, no further."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from django.contrib.auth.models import User

from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Circuit, Service
from tests.core.rawhttp import RawRequest
from tests.e2e.conftest import ControlPlaneProcess, server_env

LIMIT = 1024 * 1024  # the default of both body limits
BODY = b"{" + b" " * (2 * LIMIT - 2) + b"}"  # 2 MiB
DRAIN_BYTES = 16 * 1024 * 1024  # the default
DRAIN_SECONDS = 2

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any) -> Iterator[ControlPlaneProcess]:
    with django_db_blocker.unblock():
        env = server_env(
            SWITCHYARD_MAX_BODY_BYTES=str(LIMIT),
            SWITCHYARD_SYNC_MAX_BODY_BYTES=str(LIMIT),
            SWITCHYARD_BODY_DRAIN_SECONDS=str(DRAIN_SECONDS),
            # Every client below shares one agent token.
            SWITCHYARD_AGENT_RATE_PER_SECOND="0",
        )
    process = ControlPlaneProcess(env)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def routes(operator: User) -> list[tuple[str, str, str]]:
    """(path, bearer token, the 413's reason) of the agent sync and an operator route."""
    service = Service.objects.create(name="checkout")
    circuit = Circuit.objects.create(service=service, name="payments")
    agent = create_agent_token(service)[1]
    api = create_api_token(operator)[1]
    return [
        ("/api/v1/agent/sync", agent, f"at most {LIMIT} bytes per sync, got {len(BODY)}"),
        (
            f"/api/v1/circuits/{circuit.pk}/override/",
            api,
            f"at most {LIMIT} bytes per request, got {len(BODY)}",
        ),
    ]


def _assert_refused(status: int, body: Any, reason: str) -> None:
    assert status == 413, body
    assert body["errors"] == {"body": reason}
    assert body["field"] == "body"


def test_requests_reads_the_413(
    server: ControlPlaneProcess, routes: list[tuple[str, str, str]]
) -> None:
    for path, token, reason in routes:
        with requests.Session() as session:
            response = session.post(
                server.url + path,
                data=BODY,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=10,
            )
        _assert_refused(response.status_code, response.json(), reason)
        assert response.headers["Connection"] == "close"


def test_httpx_reads_the_413(
    server: ControlPlaneProcess, routes: list[tuple[str, str, str]]
) -> None:
    with httpx.Client(timeout=10) as client:
        for path, token, reason in routes:
            response = client.post(
                server.url + path,
                content=BODY,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            _assert_refused(response.status_code, response.json(), reason)
        # The connection was closed after the refusal: the next request opens another.
        assert client.get(server.url + "/healthz").status_code in (200, 503)


@pytest.mark.parametrize("expect", ["", "100-continue"], ids=["body-at-once", "expect-100"])
def test_curl_reads_the_413(
    server: ControlPlaneProcess,
    routes: list[tuple[str, str, str]],
    tmp_path: Path,
    expect: str,
) -> None:
    """curl waits for ``100 Continue`` before a large body unless told not to ("Expect:"
    empty): in both ways it gets the answer."""
    upload = tmp_path / "body.json"
    upload.write_bytes(BODY)
    for path, token, reason in routes:
        done = subprocess.run(
            [
                "curl",
                "--silent",
                "--show-error",
                "--max-time",
                "10",
                "--expect100-timeout",
                "5",
                "-H",
                f"Authorization: Bearer {token}",
                "-H",
                "Content-Type: application/json",
                "-H",
                f"Expect: {expect}",
                "--data-binary",
                f"@{upload}",
                "--write-out",
                "\n%{http_code}",
                server.url + path,
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        text, _, code = done.stdout.decode().rpartition("\n")
        _assert_refused(int(code), json.loads(text), reason)


def test_the_connection_ends_in_an_orderly_close_not_a_reset(
    server: ControlPlaneProcess, routes: list[tuple[str, str, str]]
) -> None:
    """The whole body sent, the answer read to the end of the connection: a reset there
    is what loses the answer on the way (a stack may drop what it had received)."""
    for path, token, reason in routes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head + BODY)
            received = b""
            while chunk := sock.recv(65536):  # ConnectionResetError: the defect
                received += chunk
        status_line, _, rest = received.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
        _assert_refused(413, json.loads(rest.partition(b"\r\n\r\n")[2]), reason)


def test_the_standard_library_client_reads_the_413_of_a_body_past_socket_buffers(
    server: ControlPlaneProcess, routes: list[tuple[str, str, str]]
) -> None:
    """``http.client`` gives up on a write error: the server must take the whole body
    (8 MiB, more than loopback buffers hold) for it to get to the answer."""
    body = b" " * (8 * LIMIT)
    for path, token, _ in routes:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request(
                "POST", path, body, {"Authorization": f"Bearer {token}", "Content-Type": "text/x"}
            )
            response = conn.getresponse()
            status, answer = response.status, json.loads(response.read())
        finally:
            conn.close()
        assert status == 413
        assert set(answer["errors"]) == {"body"}


def test_a_body_past_the_drain_bound_is_not_read(
    server: ControlPlaneProcess, routes: list[tuple[str, str, str]]
) -> None:
    """Declared past the bound: the answer comes and the connection closes at once;
    streamed past it: the server stops taking the body at the bound."""
    for path, token, _ in routes:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        request = RawRequest(
            server.port,
            "POST",
            path,
            {**headers, "Content-Length": str(DRAIN_BYTES + LIMIT + 1)},
            first=b"{" * 4096,
        )
        try:
            answer = request.answer(within=10)
            assert answer.status == 413
            pushed = request.push(64 * 1024 * 1024)
        finally:
            request.close()
        assert pushed < DRAIN_BYTES, f"{path}: the server took {pushed} bytes"

        request = RawRequest(server.port, "POST", path, headers, chunked=True)
        try:
            for _ in range(LIMIT // 65536 + 1):
                assert request.send(b" " * 65536)
            answer = request.answer(within=10)
            assert answer.status == 413
            pushed = request.push(64 * 1024 * 1024)
        finally:
            request.close()
        assert pushed < DRAIN_BYTES + 16 * 1024 * 1024, f"{path}: the server took {pushed}"


def test_a_client_that_stops_sending_is_closed_after_the_drain_time(
    server: ControlPlaneProcess, routes: list[tuple[str, str, str]]
) -> None:
    for path, token, reason in routes:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Length": str(len(BODY)),
        }
        request = RawRequest(server.port, "POST", path, headers, first=b"{" * 4096)
        try:
            started = time.monotonic()
            answer = request.answer(within=10)
            _assert_refused(answer.status, answer.body, reason)
            # Nothing more is sent: the server closes once the drain time is over.
            assert request.answered(within=DRAIN_SECONDS + 10)
            assert request.sock.recv(1) == b""
            waited = time.monotonic() - started
        finally:
            request.close()
        assert DRAIN_SECONDS - 0.5 <= waited < DRAIN_SECONDS + 10, waited
