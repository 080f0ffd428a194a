"""The HTTP integrations (breakers.integrations.httpx / .requests) against a real HTTP
server on 127.0.0.1: answers pass through, 5xx and timeouts count as failures, an open
breaker rejects without reaching the server (raise or fallback), under threads and
asyncio; route rules and the default naming."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import requests

from breakers import CircuitBreakerConfig, CircuitBreakerRegistry, CircuitOpenError, CircuitState
from breakers.integrations.http import Guard, breaker_name
from breakers.integrations.httpx import AsyncBreakerTransport, BreakerTransport
from breakers.integrations.requests import BreakerAdapter

CONFIG = CircuitBreakerConfig(failure_threshold=3, timeout=60)


class Upstream:
    """A real HTTP server: ``/status/<code>`` answers that code, ``/slow`` waits 1 s,
    anything else 200 "ok"; counts the requests it served."""

    def __init__(self) -> None:
        upstream = self
        self.hits = 0
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no delayed-ACK stall between header and body

            def do_GET(self) -> None:
                with upstream.lock:
                    upstream.hits += 1
                status = 200
                if self.path.startswith("/status/"):
                    status = int(self.path.rsplit("/", 1)[1])
                elif self.path == "/slow":
                    time.sleep(1.0)
                body = f"{status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def registry() -> CircuitBreakerRegistry:
    return CircuitBreakerRegistry()


def name_of(upstream: Upstream) -> str:
    return f"127.0.0.1:{upstream.port}"


# -- httpx, sync ---------------------------------------------------------------------------


def test_httpx_answers_pass_through_and_5xx_trips_the_hosts_breaker(upstream, registry):
    with httpx.Client(transport=BreakerTransport(registry=registry, config=CONFIG)) as client:
        ok = client.get(f"{upstream.url}/hello")
        assert (ok.status_code, ok.text) == (200, "200")
        assert client.get(f"{upstream.url}/status/404").status_code == 404  # not a failure
        breaker = registry.get(name_of(upstream))
        assert breaker is not None and breaker.state is CircuitState.CLOSED
        for _ in range(3):
            failed = client.get(f"{upstream.url}/status/503")
            assert (failed.status_code, failed.text) == (503, "503")  # still returned
        assert breaker.state is CircuitState.OPEN
        hits = upstream.hits
        with pytest.raises(CircuitOpenError) as info:
            client.get(f"{upstream.url}/hello")
        assert info.value.name == name_of(upstream) and info.value.retry_after is not None
        assert upstream.hits == hits  # rejected without reaching the server
    traffic = breaker.traffic()
    assert (traffic["calls"], traffic["successes"], traffic["failures"]) == (5, 2, 3)
    assert traffic["rejected"] == 1 and sum(traffic["latency"].values()) == 5


def test_httpx_timeouts_count_as_failures_and_a_fallback_answers_when_open(upstream, registry):
    def fallback(request: httpx.Request, error: CircuitOpenError) -> httpx.Response:
        return httpx.Response(503, text=f"cached, {error.name} is open", request=request)

    transport = BreakerTransport(registry=registry, config=CONFIG, fallback=fallback)
    with httpx.Client(transport=transport, timeout=0.2) as client:
        for _ in range(3):
            with pytest.raises(httpx.ReadTimeout):
                client.get(f"{upstream.url}/slow")
        answer = client.get(f"{upstream.url}/hello")
    assert answer.status_code == 503 and answer.text == f"cached, {name_of(upstream)} is open"
    breaker = registry.get(name_of(upstream))
    assert breaker is not None and breaker.traffic()["failures"] == 3


def test_httpx_under_threads_counts_every_request(upstream, registry):
    transport = BreakerTransport(registry=registry, config=CircuitBreakerConfig(timeout=60))
    with httpx.Client(transport=transport) as client:

        def get(i: int) -> int:
            return client.get(f"{upstream.url}/n/{i}").status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(get, range(200)))
    assert statuses == [200] * 200
    breaker = registry.get(name_of(upstream))
    assert breaker is not None and breaker.traffic()["successes"] == 200 == upstream.hits


def test_a_forced_open_breaker_rejects_at_once_and_a_release_lets_requests_through(
    upstream, registry
):
    with httpx.Client(transport=BreakerTransport(registry=registry)) as client:
        client.get(f"{upstream.url}/hello")
        breaker = registry.get(name_of(upstream))
        assert breaker is not None
        breaker.force_open("drill")
        with pytest.raises(CircuitOpenError) as info:
            client.get(f"{upstream.url}/hello")
        assert info.value.state is CircuitState.FORCED_OPEN and info.value.retry_after is None
        breaker.release()
        assert client.get(f"{upstream.url}/hello").status_code == 200
    assert upstream.hits == 2


# -- httpx, async --------------------------------------------------------------------------


async def test_async_httpx_trips_under_concurrency_and_rejects_without_the_server(
    upstream, registry
):
    transport = AsyncBreakerTransport(registry=registry, config=CONFIG)
    async with httpx.AsyncClient(transport=transport) as client:
        ok = await asyncio.gather(*(client.get(f"{upstream.url}/a/{i}") for i in range(50)))
        assert [r.status_code for r in ok] == [200] * 50
        failed = await asyncio.gather(*(client.get(f"{upstream.url}/status/500") for _ in range(3)))
        assert [r.status_code for r in failed] == [500] * 3
        breaker = registry.get(name_of(upstream))
        assert breaker is not None and breaker.state is CircuitState.OPEN
        hits = upstream.hits
        with pytest.raises(CircuitOpenError):
            await client.get(f"{upstream.url}/hello")
        assert upstream.hits == hits

        async def fallback(request: httpx.Request, error: CircuitOpenError) -> httpx.Response:
            return httpx.Response(200, text="from the fallback", request=request)

    transport = AsyncBreakerTransport(registry=registry, config=CONFIG, fallback=fallback)
    async with httpx.AsyncClient(transport=transport) as client:
        answer = await client.get(f"{upstream.url}/hello")
    assert answer.text == "from the fallback" and upstream.hits == hits
    traffic = breaker.traffic()
    assert (traffic["successes"], traffic["failures"], traffic["rejected"]) == (50, 3, 2)


async def test_async_httpx_timeouts_are_failures(upstream, registry):
    transport = AsyncBreakerTransport(registry=registry, config=CONFIG)
    async with httpx.AsyncClient(transport=transport, timeout=0.2) as client:
        results = await asyncio.gather(
            *(client.get(f"{upstream.url}/slow") for _ in range(3)), return_exceptions=True
        )
    assert all(isinstance(r, httpx.TimeoutException) for r in results)
    breaker = registry.get(name_of(upstream))
    assert breaker is not None and breaker.state is CircuitState.OPEN


# -- requests ------------------------------------------------------------------------------


def session_with(adapter: BreakerAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def test_requests_adapter_trips_on_5xx_and_connection_errors_and_rejects(upstream, registry):
    session = session_with(BreakerAdapter(registry=registry, config=CONFIG))
    assert session.get(f"{upstream.url}/hello").text == "200"
    assert session.get(f"{upstream.url}/status/502").status_code == 502
    breaker = registry.get(name_of(upstream))
    assert breaker is not None and breaker.traffic()["failures"] == 1
    # A refused connection is a failure of its own host's breaker.
    closed = Upstream()
    closed.close()
    with pytest.raises(requests.ConnectionError):
        session.get(f"{closed.url}/hello", timeout=1)
    refused = registry.get(name_of(closed))
    assert refused is not None and refused.traffic()["failures"] == 1
    for _ in range(2):
        session.get(f"{upstream.url}/status/500")
    assert breaker.state is CircuitState.OPEN
    hits = upstream.hits
    with pytest.raises(CircuitOpenError):
        session.get(f"{upstream.url}/hello")
    assert upstream.hits == hits


def test_requests_adapter_under_threads_with_a_fallback(upstream, registry):
    def fallback(request: requests.PreparedRequest, error: CircuitOpenError) -> requests.Response:
        response = requests.Response()
        response.status_code = 299
        response.request = request
        return response

    adapter = BreakerAdapter(registry=registry, config=CONFIG, fallback=fallback, pool_maxsize=8)
    session = session_with(adapter)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda i: session.get(f"{upstream.url}/{i}").status_code, range(100))
        )
    assert statuses == [200] * 100
    breaker = registry.get(name_of(upstream))
    assert breaker is not None
    breaker.force_open("drill")
    assert session.get(f"{upstream.url}/hello").status_code == 299
    assert breaker.traffic()["successes"] == 100 == upstream.hits


# -- which breaker ---------------------------------------------------------------------------


def test_route_rules_pick_the_breaker_longest_first(upstream, registry):
    authority = name_of(upstream)
    routes = {authority: "upstream", f"{authority}/payments": "payments-api"}
    transport = BreakerTransport(registry=registry, routes=routes)
    with httpx.Client(transport=transport) as client:
        client.get(f"{upstream.url}/payments/charge")
        client.get(f"{upstream.url}/payments")
        client.get(f"{upstream.url}/paymentsx")
        client.get(f"{upstream.url}/other")
    assert registry.get("payments-api").traffic()["calls"] == 2  # type: ignore[union-attr]
    assert registry.get("upstream").traffic()["calls"] == 2  # type: ignore[union-attr]
    assert name_of(upstream) not in registry


def test_name_for_can_leave_a_request_unguarded(upstream, registry):
    transport = BreakerTransport(
        registry=registry, name_for=lambda host, port, path: None if path == "/health" else "api"
    )
    with httpx.Client(transport=transport) as client:
        client.get(f"{upstream.url}/health")
        client.get(f"{upstream.url}/work")
    assert list(b.name for b in registry) == ["api"]
    assert upstream.hits == 2


@pytest.mark.parametrize(
    ("host", "port", "name"),
    [
        ("API.example.com", None, "api.example.com"),
        ("127.0.0.1", 8080, "127.0.0.1:8080"),
        ("[::1]", 8443, "_::1:8443"),
        ("bücher.example", None, "b_cher.example"),
        ("-odd", None, "_-odd"),
    ],
)
def test_default_names_are_names_the_control_plane_accepts(host, port, name):
    assert breaker_name(host, port) == name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"routes": {"https://x": "n"}}, "routes: a rule is 'host' or 'host/path'"),
        ({"routes": {"x": ""}}, "routes: the breaker name of 'x' must be a string"),
        ({"failure_statuses": [500, 700]}, "failure_statuses must be HTTP status codes"),
    ],
)
def test_bad_settings_are_a_value_error_naming_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Guard(CircuitBreakerRegistry(), **kwargs)


def test_failure_statuses_can_be_changed(upstream, registry):
    transport = BreakerTransport(registry=registry, failure_statuses={429, 503}, config=CONFIG)
    with httpx.Client(transport=transport) as client:
        client.get(f"{upstream.url}/status/500")
        client.get(f"{upstream.url}/status/429")
    breaker = registry.get(name_of(upstream))
    assert breaker is not None
    assert (breaker.traffic()["successes"], breaker.traffic()["failures"]) == (1, 1)


# -- aiohttp -------------------------------------------------------------------------------


async def test_aiohttp_middleware_trips_on_5xx_and_rejects_without_the_server(upstream, registry):
    import aiohttp

    from breakers.integrations.aiohttp import BreakerMiddleware

    middleware = BreakerMiddleware(registry=registry, config=CONFIG)
    async with aiohttp.ClientSession(middlewares=(middleware,)) as session:

        async def get(path: str) -> tuple[int, str]:
            async with session.get(f"{upstream.url}{path}") as response:
                return response.status, await response.text()

        answers = await asyncio.gather(*(get(f"/a/{i}") for i in range(40)))
        assert answers == [(200, "200")] * 40
        assert await get("/status/404") == (404, "404")  # not a failure
        for _ in range(3):
            assert await get("/status/503") == (503, "503")  # returned, and counted
        breaker = registry.get(name_of(upstream))
        assert breaker is not None and breaker.state is CircuitState.OPEN
        hits = upstream.hits
        with pytest.raises(CircuitOpenError):
            await get("/hello")
        assert upstream.hits == hits
    traffic = breaker.traffic()
    assert (traffic["successes"], traffic["failures"], traffic["rejected"]) == (41, 3, 1)


async def test_aiohttp_read_timeouts_and_refused_connections_are_failures(upstream, registry):
    import aiohttp

    from breakers.integrations.aiohttp import BreakerMiddleware

    middleware = BreakerMiddleware(registry=registry, config=CONFIG)
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    async with aiohttp.ClientSession(middlewares=(middleware,), timeout=timeout) as session:
        for _ in range(3):
            with pytest.raises(aiohttp.ServerTimeoutError):
                async with session.get(f"{upstream.url}/slow") as response:
                    await response.read()
        closed = Upstream()
        closed.close()
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{closed.url}/x")
    breaker = registry.get(name_of(upstream))
    assert breaker is not None and breaker.state is CircuitState.OPEN
    refused = registry.get(name_of(closed))
    assert refused is not None and refused.traffic()["failures"] == 1
