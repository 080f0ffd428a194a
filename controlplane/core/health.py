"""Liveness for load balancers: the process answers, and says which dependency is down.

``/healthz`` answers within :data:`CHECK_SECONDS` (plus the request's own overhead)
whatever is down: each dependency is checked on a thread of its own, with its own
short timeouts (a fresh database connection, not the request pool, so a pool that
waits for a database never holds the answer), and a check that has not answered in
time counts as "timeout". A check still running from an earlier request is waited
for, not started again, so a hung dependency cannot pile threads up.

* ``database``: ``ok``, ``unreachable`` (an error) or ``timeout``; anything but ``ok``
  makes the answer 503 with ``"status": "error"`` (no request can be served).
* ``redis``: ``ok``, ``unreachable``, ``timeout`` or ``off`` (no ``REDIS_URL``); down, the
  answer stays 200 with ``"status": "degraded"``: durable writes and agent syncs work,
  live updates and watch wake-ups do not (agents still sync periodically).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import connection, connections
from django.http import HttpRequest, JsonResponse

from controlplane.core import live
from controlplane.core.errors import error_response

# The longest /healthz waits for its checks, seconds.
CHECK_SECONDS = 0.8

_executor = concurrent.futures.ThreadPoolExecutor(
    max_workers=4, thread_name_prefix="switchyard-health"
)
_running: dict[str, concurrent.futures.Future[None]] = {}
_lock = threading.Lock()


def check_database() -> None:
    """SELECT 1 on a connection of its own, outside the pool."""
    if connection.vendor != "postgresql":
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            connections.close_all()  # this thread's: never kept
        return
    import psycopg

    params = connection.get_connection_params()
    params["connect_timeout"] = 2  # libpq's least; the wait below is shorter anyway
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute("SELECT 1")


def check_redis() -> None:
    """PING with the configured Redis timeouts (capped by the check's bound)."""
    import redis

    timeout = min(live.redis_timeout(), CHECK_SECONDS)
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        client.ping()
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _start(name: str, check: Callable[[], None]) -> concurrent.futures.Future[None]:
    with _lock:
        running = _running.get(name)
        if running is None or running.done():
            running = _executor.submit(check)
            _running[name] = running
        return running


def check_all(timeout: float = CHECK_SECONDS) -> dict[str, str]:
    """{dependency: "ok" | "unreachable" | "timeout" | "off"}, within ``timeout``."""
    checks: dict[str, Callable[[], None]] = {"database": check_database}
    results = {"database": "timeout", "redis": "off"}
    if getattr(settings, "REDIS_URL", ""):
        checks["redis"] = check_redis
        results["redis"] = "timeout"
    futures = {name: _start(name, check) for name, check in checks.items()}
    concurrent.futures.wait(futures.values(), timeout=timeout)
    for name, future in futures.items():
        if future.done():
            results[name] = _outcome(future.exception())
    return results


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    # A connect or read that timed out (the check's own timeouts) is no answer.
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
        return "timeout"
    return "timeout" if "timeout expired" in str(exc).lower() else "unreachable"


def healthz(request: HttpRequest) -> JsonResponse:
    """GET /healthz: ``{"status", "database", "redis"}``; 503 if the database is down."""
    if request.method not in ("GET", "HEAD"):
        response = error_response(405, {"detail": f'Method "{request.method}" not allowed.'})
        response["Allow"] = "GET, HEAD"
        return response
    results = check_all()
    if results["database"] != "ok":
        return JsonResponse({"status": "error", **results}, status=503)
    status = "ok" if results["redis"] in ("ok", "off") else "degraded"
    return JsonResponse({"status": status, **results})
