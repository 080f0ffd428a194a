"""A real control plane for end-to-end tests: uvicorn serving controlplane.asgi on
127.0.0.1, in a subprocess, on pytest-django's test database (tests use
``transactional_db`` so the server sees their rows and they see the server's)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RUN_REDIS_PREFIX

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    """The URL of the database the test process uses right now (the test database)."""
    from django.db import connection

    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{s['NAME']}"


class ControlPlaneProcess:
    """One uvicorn process serving the control plane; can be stopped and restarted."""

    def __init__(
        self, env: dict[str, str], port: int | None = None, app: list[str] | None = None
    ) -> None:
        self.env = env
        self.app = app or ["controlplane.asgi:application"]
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []  # of every process started (tests of this fixture)
        fd, self.log_path = tempfile.mkstemp(prefix="switchyard-e2e-", suffix=".log")
        os.close(fd)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start uvicorn and wait until it answers; on any failure (time-out, early exit,
        an interrupt) the process and its group are killed before the error goes on."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    *self.app,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--lifespan",
                    "off",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                    "--timeout-graceful-shutdown",
                    "1",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one
            )
        self.pids.append(self.proc.pid)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"control plane exited at start:\n{self.output()}")
                with contextlib.suppress(OSError, http.client.HTTPException):
                    if self.request("GET", "/healthz")[0] == 200:
                        return
                time.sleep(0.1)
            raise RuntimeError(f"control plane did not come up in {timeout} s:\n{self.output()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the process and anything it started (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            self._signal_group(proc, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        finally:
            if proc.poll() is None:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait(5)

    def kill(self) -> None:
        """Kill the process group with SIGKILL at once: a crash, nothing flushed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        self._signal_group(proc, signal.SIGKILL)
        proc.wait(5)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # the group id is the leader's pid (new session)

    def output(self) -> str:
        return Path(self.log_path).read_text(errors="replace")[-4000:]

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, data.decode(errors="replace")


# Redis pub/sub is server-wide, not per database: the servers of this test run share the
# run's prefix with this process (tests/conftest.py), so what a test publishes reaches
# their sockets and another run's changes (same service ids) wake nothing here.
REDIS_PREFIX = RUN_REDIS_PREFIX


def server_env(**extra: str) -> dict[str, str]:
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL or "",
        SWITCHYARD_REDIS_PREFIX=REDIS_PREFIX,
        DEBUG="1",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONPATH=str(ROOT),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def control_plane(django_db_setup: Any, django_db_blocker: Any) -> Iterator[ControlPlaneProcess]:
    """A control plane shared by the e2e tests of the session."""
    with django_db_blocker.unblock():
        server = ControlPlaneProcess(server_env())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_control_plane(
    transactional_db: None,
) -> Iterator[ControlPlaneProcess]:
    """A control plane of this test alone (it may stop and restart it)."""
    server = ControlPlaneProcess(server_env())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (tests/dashboard/browser.py)."""
    from playwright.sync_api import sync_playwright

    from tests.dashboard.browser import launch

    # Playwright's sync API keeps an event loop in this thread; the test's ORM calls
    # are plain sync code (Django documents this switch for Playwright).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        chromium = launch(p)
        yield chromium
        chromium.close()


def change_feed_listeners() -> int:
    """How many web processes (of this run's servers) listen to the change feed."""
    import redis
    from django.conf import settings

    if not settings.REDIS_URL:
        return 1  # one process: changes go straight to its hub
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        ((_, count),) = client.pubsub_numsub(f"{REDIS_PREFIX}:desired_state_changed")
        return int(count)
    finally:
        client.close()


def override(
    server: ControlPlaneProcess, token: str, circuit_id: int, state: str | None, reason: str
) -> None:
    """Force a circuit (``state`` forced_open or forced_closed) or release it (None)
    through the operator API, as an operator does; asserts the API's answer."""
    path = f"/api/v1/circuits/{circuit_id}/override/"
    if state is None:
        status, body = server.request("DELETE", path, {"reason": reason}, token=token)
        assert status == 204, body
    else:
        body = {"state": state, "reason": reason}
        status, answer = server.request("POST", path, body, token=token)
        assert status == 201, answer


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
