"""The framework integrations with a real control plane: an ASGI application wrapped in
breakers.integrations.asgi.SwitchyardMiddleware, served by uvicorn with the lifespan
protocol (one application that speaks it, one that raises on it as Django's ASGI
handler does), and Django's SwitchyardMiddleware in this process. Each answers
/health/circuits, and its agent reaches the control plane without any call of its own."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings

from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Circuit, Instance, Service
from tests.e2e.conftest import (
    ROOT,
    ControlPlaneProcess,
    change_feed_listeners,
    free_port,
    override,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def service_token() -> tuple[Service, str]:
    service = Service.objects.create(name="storefront")
    return service, create_agent_token(service)[1]


@contextlib.contextmanager
def uvicorn(app: str, env: dict[str, str]) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--lifespan", "on", "--log-level", "info", "--no-access-log"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def up() -> bool:
            with contextlib.suppress(OSError, http.client.HTTPException):
                return get(port, "/health/circuits")[0] == 200
            return False

        assert wait_for(up, timeout=30.0), proc.stdout.read() if proc.poll() is not None else ""
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("app", ["app", "app_without_lifespan"])
def test_the_asgi_middleware_starts_the_agent_at_startup_and_answers_health(
    control_plane: ControlPlaneProcess, service_token: tuple[Service, str], app: str, operator: Any
) -> None:
    service, token = service_token
    operator_token = create_api_token(operator)[1]
    env = {
        **control_plane.env,
        "SWITCHYARD_URL": control_plane.url,
        "SWITCHYARD_TOKEN": token,
        "SWITCHYARD_SERVICE": service.name,
        "SWITCHYARD_INTERVAL": "1",
    }
    with uvicorn(f"tests.breakers.asgi_app:{app}", env) as (port, proc):
        # The agent registered at lifespan startup, before any request of the app's own.
        assert wait_for(lambda: Instance.objects.filter(service=service).exists(), timeout=10)
        assert wait_for(
            lambda: Circuit.objects.filter(service=service, name="inventory").exists(), timeout=10
        )
        status, body = get(port, "/health/circuits")
        health = json.loads(body)
        assert status == 200 and health["healthy"] is True and len(health["all_circuits"]) == 1
        assert get(port, "/work") == (200, b"in stock")
        for _ in range(5):  # the library's default: five failures in a row open it
            assert get(port, "/fail") == (503, b"Down")
        assert get(port, "/work") == (503, b"CircuitOpenError")
        status, body = get(port, "/health/circuits")
        assert status == 200 and json.loads(body)["open_circuits"] == ["inventory"]
        # The trip reaches the control plane through the agent.
        assert wait_for(
            lambda: service.instances.filter(snapshots__state="open").exists(), timeout=10
        )
        # An operator forces it closed: the application's calls run again within a second.
        assert wait_for(lambda: change_feed_listeners() >= 1, timeout=10.0)
        cid = Circuit.objects.get(service=service, name="inventory").pk
        started = time.monotonic()
        override(control_plane, operator_token, cid, "forced_closed", "inventory is fine")
        assert wait_for(lambda: get(port, "/work") == (200, b"in stock"), timeout=1.0)
        assert time.monotonic() - started < 1.0
        proc.send_signal(signal.SIGTERM)
        # uvicorn ends with the signal it was sent, after the lifespan shutdown (which
        # stopped the agent: its last flush) completed without an error.
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        assert proc.stdout is not None
        log = proc.stdout.read().decode()
        assert "Application startup complete." in log and "Application shutdown complete." in log
        assert "Traceback" not in log and "ERROR" not in log, log


def test_the_django_middleware_answers_health_and_starts_the_agent(
    control_plane: ControlPlaneProcess, service_token: tuple[Service, str]
) -> None:
    from breakers.integrations.django import SwitchyardMiddleware

    service, token = service_token
    conf = {
        "URL": control_plane.url,
        "TOKEN": token,
        "SERVICE": service.name,
        "UNHEALTHY_STATUS": 503,
    }
    seen: list[str] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request.path)
        return HttpResponse("page")

    with override_settings(SWITCHYARD=conf):
        middleware = SwitchyardMiddleware(view)
    factory = RequestFactory()
    try:
        assert middleware(factory.get("/shop/")).content == b"page"
        assert wait_for(lambda: Instance.objects.filter(service=service).exists(), timeout=10)
        health = middleware(factory.get("/health/circuits"))
        assert health.status_code == 200 and json.loads(health.content)["healthy"] is True
        assert health["Cache-Control"] == "no-store"
        assert middleware(factory.post("/health/circuits")).status_code == 405
        assert seen == ["/shop/"]  # the health path never reaches the views
        agent = middleware.lifecycle.agent
        assert agent is not None and agent.registry is middleware.registry
        assert wait_for(lambda: agent.stats()["syncs_ok"] >= 1, timeout=10)
    finally:
        middleware.lifecycle.stop()


async def test_the_django_middleware_is_async_capable() -> None:
    from breakers.integrations.django import SwitchyardMiddleware

    async def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("async page")

    with override_settings(SWITCHYARD={"URL": ""}):  # no agent
        middleware = SwitchyardMiddleware(view)
    factory = RequestFactory()
    assert (await middleware(factory.get("/x"))).content == b"async page"
    answer = await middleware(factory.get("/health/circuits"))
    assert answer.status_code == 200 and "healthy" in json.loads(answer.content)
    assert middleware.lifecycle.agent is None


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"HEALTH_PATH": "health"}, "SWITCHYARD\\['HEALTH_PATH'\\] must start with '/'"),
        ({"UNHEALTHY_STATUS": 500}, "unhealthy_status must be 200 or 503"),
        ({"URL": 8000}, "SWITCHYARD\\['URL'\\] must be a string"),
    ],
)
def test_bad_django_settings_are_a_value_error_naming_the_key(conf: Any, message: str) -> None:
    from breakers.integrations.django import SwitchyardMiddleware

    with override_settings(SWITCHYARD=conf), pytest.raises(ValueError, match=message):
        SwitchyardMiddleware(lambda request: HttpResponse())
