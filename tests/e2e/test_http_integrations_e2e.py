"""The HTTP integrations steered by a real control plane: an application whose httpx,
requests and aiohttp clients guard their calls, its agent syncing with uvicorn; an
operator forces the upstream's circuit open through the API and the clients reject
within a second, then pass again after the release. The upstream is a real HTTP server
on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import httpx
import pytest
import requests

from breakers import CircuitBreakerRegistry, CircuitOpenError
from breakers.integrations.aiohttp import BreakerMiddleware
from breakers.integrations.httpx import BreakerTransport
from breakers.integrations.requests import BreakerAdapter
from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Service
from tests.breakers.test_http_integrations import Upstream
from tests.e2e.conftest import ControlPlaneProcess, change_feed_listeners, override, wait_for
from tests.e2e.test_agent_e2e import circuit_id, new_agent

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def rejects(call: Any) -> bool:
    try:
        call()
    except CircuitOpenError:
        return True
    return False


async def aiohttp_get(url: str, registry: CircuitBreakerRegistry, routes: dict[str, str]) -> int:
    middleware = BreakerMiddleware(registry=registry, routes=routes)
    async with (
        aiohttp.ClientSession(middlewares=(middleware,)) as session,
        session.get(f"{url}/stock") as response,
    ):
        return response.status


def test_a_force_from_the_control_plane_reaches_httpx_requests_and_aiohttp_within_a_second(
    control_plane: ControlPlaneProcess, operator: Any
) -> None:
    service = Service.objects.create(name="checkout")
    token = create_agent_token(service)[1]
    operator_token = create_api_token(operator)[1]
    upstream = Upstream()
    registry = CircuitBreakerRegistry()
    routes = {f"127.0.0.1:{upstream.port}": "inventory-api"}
    client = httpx.Client(transport=BreakerTransport(registry=registry, routes=routes))
    session = requests.Session()
    session.mount("http://", BreakerAdapter(registry=registry, routes=routes))
    try:
        assert client.get(f"{upstream.url}/stock").status_code == 200  # creates the breaker
        with new_agent(control_plane.url, token, registry) as agent:
            assert wait_for(lambda: circuit_id(control_plane, operator_token, "inventory-api"))
            cid = circuit_id(control_plane, operator_token, "inventory-api")
            assert wait_for(lambda: agent.stats()["syncs_ok"] >= 1)
            assert wait_for(lambda: change_feed_listeners() >= 1, timeout=10.0)
            hits = upstream.hits
            started = time.monotonic()
            override(control_plane, operator_token, cid, "forced_open", "inventory failover")
            get = lambda: client.get(f"{upstream.url}/stock")  # noqa: E731
            assert wait_for(lambda: rejects(get), timeout=1.0)
            assert time.monotonic() - started < 1.0
            assert rejects(lambda: session.get(f"{upstream.url}/stock"))
            assert rejects(lambda: asyncio.run(aiohttp_get(upstream.url, registry, routes)))
            override(control_plane, operator_token, cid, None, "recovered")
            assert wait_for(lambda: not rejects(get), timeout=1.0)
            assert session.get(f"{upstream.url}/stock").status_code == 200
            assert asyncio.run(aiohttp_get(upstream.url, registry, routes)) == 200
            # While forced, nothing reached the upstream: only the requests that polled
            # for the release (each one that was let through) did.
            breaker = registry.get("inventory-api")
            assert breaker is not None and breaker.traffic()["rejected"] >= 3
            assert upstream.hits - hits == breaker.traffic()["calls"] - 1
    finally:
        client.close()
        session.close()
        upstream.close()
