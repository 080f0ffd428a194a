"""A real loopback HTTP server that speaks (or breaks) the sync protocol.

Each test scripts its behaviour: answer properly, answer 500, answer garbage,
answer slowly, hold the watch until the test publishes a new desired state.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

TOKEN = "sya_test-secret-token-value"

# (status, body) or (status, body, extra headers); None: the proper answer.
Behaviour = Callable[["Recorded"], tuple[Any, ...] | None]


class Recorded:
    """One request as the server saw it."""

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = urlsplit(path).path
        self.query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        self.headers = headers
        self.body = body
        self.json: Any = json.loads(body) if body else None
        self.at = time.monotonic()


class LoopbackControlPlane:
    """Keeps a desired state; acks every transition it receives unless told otherwise.

    Like the real server it enforces per-sync limits when given them (``max_breakers``,
    ``max_transitions``: 413 naming the list; ``max_body_bytes``: 413 naming the body)
    and tells them in ``limits`` of its answers when ``limits`` is set. It remembers
    which breakers each instance reported (``known``), every transition id in the order
    it arrived (``received``, repeats included) and every transition that named a
    breaker it had not been told of (``unknown_named``).
    """

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Recorded] = []
        self.lock = threading.Condition()
        self.desired_version = 1
        self.breakers: dict[str, Any] = {}
        self.poll_interval = 5
        self.sync_behaviour: Behaviour | None = None  # None: the proper answer
        self.watch_hold = 0.5  # seconds before a 204
        self.ack_limit: int | None = None  # ack at most this id
        self.stored_transitions: dict[tuple[str, int], dict[str, Any]] = {}
        self.limits: dict[str, Any] | None = None  # told in every sync answer when set
        self.max_breakers: int | None = None
        self.max_transitions: int | None = None
        self.max_body_bytes: int | None = None
        self.known: dict[str, dict[str, float]] = {}  # instance -> breaker -> when first
        self.received: list[tuple[str, int]] = []
        self.unknown_named: list[tuple[str, int, str]] = []
        self.too_large: list[Recorded] = []  # the syncs answered 413
        # Telemetry reports stored once per (instance, seq), as the server does; a seq
        # above telemetry_ack_limit is not stored. answer_telemetry False: an older
        # server (no telemetry_through in its answers).
        self.reports: dict[tuple[str, int], dict[str, Any]] = {}
        self.telemetry_ack_limit: int | None = None
        self.answer_telemetry = True
        self.dropped_reports = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def desired(self) -> dict[str, Any]:
        return {
            "desired_version": self.desired_version,
            "poll_interval": self.poll_interval,
            "breakers": json.loads(json.dumps(self.breakers)),
        }

    def publish(self, breakers: dict[str, Any]) -> None:
        """Change the desired state and wake every watcher."""
        with self.lock:
            self.breakers = breakers
            self.desired_version += 1
            self.lock.notify_all()

    def syncs(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path == "/api/v1/agent/sync"]

    def watches(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path == "/api/v1/agent/watch"]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        # A deadline, not a delay: it returns as soon as the predicate holds (a loaded
        # 2-core machine can take seconds to run a thread).
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def _over_limit(self, req: Recorded) -> tuple[int, bytes] | None:
        for field, limit, size in (
            ("body", self.max_body_bytes, len(req.body)),
            ("breakers", self.max_breakers, len(req.json["breakers"])),
            ("transitions", self.max_transitions, len(req.json["transitions"])),
        ):
            if limit is not None and size > limit:
                reason = f"at most {limit} per sync, got {size}"
                body = {"detail": f"{field}: {reason}", "errors": {field: reason}}
                return 413, json.dumps(body).encode()
        return None

    def answer_sync(self, req: Recorded) -> tuple[int, bytes]:
        refusal = self._over_limit(req)
        if refusal is not None:
            with self.lock:
                self.too_large.append(req)
            return refusal
        instance = req.json["instance"]["id"]
        with self.lock:
            known = self.known.setdefault(instance, {})
            for b in req.json["breakers"]:
                known.setdefault(b["name"], req.at)
            for t in req.json["transitions"]:
                self.received.append((instance, t["id"]))
                if t["breaker"] not in known:
                    self.unknown_named.append((instance, t["id"], t["breaker"]))
                if self.ack_limit is None or t["id"] <= self.ack_limit:
                    self.stored_transitions.setdefault((instance, t["id"]), t)
            for report in req.json.get("telemetry", []):
                if self.telemetry_ack_limit is None or report["seq"] <= self.telemetry_ack_limit:
                    self.reports.setdefault((instance, report["seq"]), report)
            self.dropped_reports += req.json.get("dropped_reports", 0)
            body = self.desired()
            body["acked_through"] = max(
                (i for (inst, i) in self.stored_transitions if inst == instance), default=0
            )
            if self.answer_telemetry:
                body["telemetry_through"] = max(
                    (q for (inst, q) in self.reports if inst == instance), default=0
                )
            if self.limits is not None:
                body["limits"] = self.limits
        return 200, json.dumps(body).encode()

    def answer_watch(self, req: Recorded) -> tuple[int, bytes]:
        since = int(req.query.get("since", "0"))
        deadline = time.monotonic() + self.watch_hold
        with self.lock:
            while self.desired_version <= since:
                left = deadline - time.monotonic()
                if left <= 0:
                    return 204, b""
                self.lock.wait(left)
            return 200, json.dumps(self.desired()).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        plane = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Recorded(self.command, self.path, dict(self.headers), body)
                with plane.lock:
                    plane.requests.append(req)
                    plane.lock.notify_all()
                result = None
                if plane.sync_behaviour is not None:
                    result = plane.sync_behaviour(req)
                if result is None:
                    if req.path == "/api/v1/agent/watch":
                        result = plane.answer_watch(req)
                    else:
                        result = plane.answer_sync(req)
                status, payload, *extra = result
                try:
                    self.send_response(status)
                    for name, value in (extra[0] if extra else {}).items():
                        self.send_header(name, value)
                    if status != 204:
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if status != 204:
                        self.wfile.write(payload)
                except OSError:
                    pass

            do_GET = _serve
            do_POST = _serve

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def plane() -> Iterator[LoopbackControlPlane]:
    server = LoopbackControlPlane()
    yield server
    server.close()


@pytest.fixture
def refused_url() -> str:
    """A loopback URL nobody listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
