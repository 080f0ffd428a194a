"""CircuitBreakerRegistry, the health document and the WSGI/ASGI health apps."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from email.message import Message
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import uvicorn
from breaker_helpers import ok, trip

import breakers
from breakers import CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState
from breakers.health import make_asgi_app, make_wsgi_app


def test_get_or_create_returns_one_breaker_per_name(clock):
    registry = CircuitBreakerRegistry()
    first = registry.get_or_create("db", CircuitBreakerConfig(failure_threshold=2), clock=clock)
    again = registry.get_or_create("db", CircuitBreakerConfig(failure_threshold=9))
    assert again is first
    assert first.config.failure_threshold == 2
    assert registry.get("db") is first
    assert registry.get("nope") is None
    assert "db" in registry and "nope" not in registry
    assert len(registry) == 1
    assert list(registry) == [first]


def test_get_or_create_is_atomic_under_threads():
    registry = CircuitBreakerRegistry()
    seen = []
    start = threading.Barrier(8)

    def create() -> None:
        start.wait()
        seen.append(registry.get_or_create("shared"))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(b) for b in seen}) == 1
    assert len(registry) == 1


def test_states_open_circuits_and_health(clock):
    registry = CircuitBreakerRegistry()
    a = registry.get_or_create("a", CircuitBreakerConfig(failure_threshold=1), clock=clock)
    b = registry.get_or_create("b", clock=clock)
    c = registry.get_or_create("c", clock=clock)
    assert registry.health() == {
        "healthy": True,
        "open_circuits": [],
        "all_circuits": registry.get_all_states(),
    }
    trip(a)
    c.force_open("maintenance")
    b.force_closed()
    assert registry.get_open_circuits() == ["a", "c"]
    health = registry.health()
    assert health["healthy"] is False
    assert health["open_circuits"] == ["a", "c"]
    assert [s["name"] for s in health["all_circuits"]] == ["a", "b", "c"]
    assert [s["state"] for s in health["all_circuits"]] == ["open", "forced_closed", "forced_open"]
    json.dumps(health)  # JSON-ready


def test_registry_listeners_reach_existing_and_future_breakers(clock):
    registry = CircuitBreakerRegistry()
    early = registry.get_or_create("early", CircuitBreakerConfig(failure_threshold=1), clock=clock)
    events = []
    registry.add_transition_listener(events.append)
    registry.add_transition_listener(events.append)  # registered once
    late = registry.get_or_create("late", CircuitBreakerConfig(failure_threshold=1), clock=clock)
    trip(early)
    trip(late)
    assert [(e.breaker, e.to_state) for e in events] == [
        ("early", CircuitState.OPEN),
        ("late", CircuitState.OPEN),
    ]
    registry.remove_transition_listener(events.append)
    early.reset()
    registry.get_or_create("later").force_open()
    assert len(events) == 2


def test_registry_size_is_capped():
    registry = CircuitBreakerRegistry(max_breakers=2)
    registry.get_or_create("a")
    registry.get_or_create("b")
    assert registry.get_or_create("a") is registry.get("a")  # existing names still work
    with pytest.raises(ValueError, match=r"^max_breakers \(2\) reached: cannot create 'c'"):
        registry.get_or_create("c")
    assert len(registry) == 2
    for bad in (0, 1_000_001, True, 2.0):
        with pytest.raises(ValueError, match=r"^max_breakers must be an integer between 1"):
            CircuitBreakerRegistry(max_breakers=bad)


def test_default_registry_aliases():
    assert breakers.circuit_registry is breakers.default_registry
    assert isinstance(breakers.default_registry, CircuitBreakerRegistry)
    assert breakers.__version__ == "0.1.0"


def test_library_imports_and_works_without_django():
    # A fresh interpreter in which importing Django fails outright.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'django':\n"
        "            raise ImportError('django is not allowed here')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import breakers, breakers.health, breakers.window, breakers.registry\n"
        "b = breakers.default_registry.get_or_create('x')\n"
        "assert b.call(lambda: 41) == 41\n"
        "print(sorted(m for m in sys.modules if m.startswith('django')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- health apps over real servers --------------------------------------------------------


def fetch(url: str, method: str = "GET") -> tuple[int, Message, bytes]:
    """(status, headers looked up case-insensitively, body) of one request."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def unhealthy_registry(clock):
    registry = CircuitBreakerRegistry()
    registry.get_or_create("ok", clock=clock).call(ok)
    trip(registry.get_or_create("down", CircuitBreakerConfig(failure_threshold=1), clock=clock))
    return registry


@pytest.fixture
def wsgi_server():
    servers = []

    def serve(app) -> str:
        server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}/health/circuits"

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def asgi_server():
    servers = []

    def serve(app) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started
        servers.append((server, thread, sock))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/health/circuits"

    yield serve
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_health_app_serves_the_registry_as_json(kind, unhealthy_registry, wsgi_server, asgi_server):
    serve, make = (wsgi_server, make_wsgi_app) if kind == "wsgi" else (asgi_server, make_asgi_app)
    url = serve(make(unhealthy_registry))
    status, headers, body = fetch(url)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    document = json.loads(body)
    assert document["healthy"] is False
    assert document["open_circuits"] == ["down"]
    assert [c["name"] for c in document["all_circuits"]] == ["ok", "down"]
    assert document["all_circuits"][0]["successes"] == 1

    status, headers, body = fetch(url, "HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) > 0

    status, headers, body = fetch(url, "POST")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert json.loads(body)["error"] == "method_not_allowed"


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_health_app_can_answer_503_when_circuits_are_open(
    kind, unhealthy_registry, wsgi_server, asgi_server
):
    serve, make = (wsgi_server, make_wsgi_app) if kind == "wsgi" else (asgi_server, make_asgi_app)
    url = serve(make(unhealthy_registry, unhealthy_status=503))
    status, _, body = fetch(url)
    assert status == 503
    assert json.loads(body)["open_circuits"] == ["down"]
    unhealthy_registry.get("down").reset()
    status, _, body = fetch(url)
    assert status == 200
    assert json.loads(body)["healthy"] is True


def test_module_level_apps_serve_the_default_registry(wsgi_server):
    name = "health-default-registry-test"
    breakers.default_registry.get_or_create(name).force_open("test")
    try:
        status, _, body = fetch(wsgi_server(breakers.health.wsgi_app))
        assert status == 200
        assert name in json.loads(body)["open_circuits"]
    finally:
        breakers.default_registry.get(name).release()


def test_health_status_is_validated():
    with pytest.raises(ValueError, match=r"^unhealthy_status must be 200 or 503"):
        make_wsgi_app(unhealthy_status=500)
    with pytest.raises(ValueError, match=r"^unhealthy_status must be 200 or 503"):
        make_asgi_app(unhealthy_status=True)
