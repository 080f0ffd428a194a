"""Live delivery: events that go out over Redis after a durable write, off its path.

The writes that matter (a force, a config edit, a sync's transitions) are committed in
PostgreSQL before any event about them leaves. Events (the channel layer groups
"fleet" and "alerts", the watch hub's change feed) are a live view of those rows, so a
slow, hung or absent Redis must cost them, never the write's answer:

* events bound for Redis are handed to one delivery thread per process, with its own
  event loop (so the channel layer keeps its connections instead of opening one per
  call), through a queue of ``SWITCHYARD_EVENTS_QUEUE`` items: when it is full an event
  is dropped and counted, never waited for;
* every Redis connection has ``SWITCHYARD_REDIS_TIMEOUT_MS`` connect and read timeouts,
  and one delivery is abandoned after twice that;
* a circuit breaker (the project's own :mod:`breakers`) skips delivery for
  ``SWITCHYARD_EVENTS_PAUSE_SECONDS`` after three failures in a row, so a Redis known to
  be down costs nothing at all; the next delivery after the pause probes it.

Dropped events are logged and counted (:attr:`Dispatcher.dropped`); agents still sync
periodically and dashboards reload from the API, so nothing durable is lost. The
in-process channel layer (no Redis, the embedded mode) cannot hang and is sent to
inline, as before.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import logging
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import InMemoryChannelLayer
from django.conf import settings

from breakers import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError

logger = logging.getLogger(__name__)

# Failures in a row that pause delivery.
FAILURES_TO_PAUSE = 3

Job = Callable[[], Awaitable[Any] | None]


def redis_timeout() -> float:
    """Connect and read timeout of every Redis connection, seconds."""
    return float(settings.SWITCHYARD_REDIS_TIMEOUT_MS) / 1000.0


def queue_size() -> int:
    return int(settings.SWITCHYARD_EVENTS_QUEUE)


def pause_seconds() -> float:
    return float(settings.SWITCHYARD_EVENTS_PAUSE_SECONDS)


class Dispatcher:
    """The delivery thread of this process and its bounded queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._queue: queue.Queue[tuple[str, Job]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._breaker = self._new_breaker()
        self.sent = 0  # deliveries done
        self.failed = 0  # deliveries that raised or timed out
        self.dropped = 0  # events never attempted: queue full or delivery paused
        self._last_drop_log = 0.0

    @staticmethod
    def _new_breaker() -> CircuitBreaker:
        return CircuitBreaker(
            "switchyard-live-events",
            CircuitBreakerConfig(
                failure_threshold=FAILURES_TO_PAUSE,
                timeout=pause_seconds(),
                success_threshold=1,
                half_open_max_calls=1,
                minimum_calls=1000,  # consecutive failures alone pause it
                sliding_window_size=1000,
            ),
        )

    def submit(self, what: str, job: Job) -> bool:
        """Queue ``job`` (a function, or one returning an awaitable run on the delivery
        loop); False if it was dropped. Never blocks."""
        self._ensure_thread()
        try:
            self._queue.put_nowait((what, job))
        except queue.Full:
            self._drop(what, "the delivery queue is full")
            return False
        return True

    def pending(self) -> int:
        """Events queued or being delivered."""
        return self._queue.unfinished_tasks

    def wait_idle(self, timeout: float) -> bool:
        """Until everything queued was delivered or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def paused(self) -> bool:
        """Whether delivery is skipped now (Redis failed repeatedly, recently); after the
        pause the next event is delivered as a probe."""
        state = self._breaker.get_state()
        return bool(state["state"] == "open" and (state["retry_after"] or 0) > 0)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                # A fresh process (a forked worker): the parent's thread is not here.
                self._pid = os.getpid()
                self._queue = queue.Queue(maxsize=queue_size())
                self._thread = None
                self._breaker = self._new_breaker()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="switchyard-live", daemon=True
                )
                self._thread.start()

    def _drop(self, what: str, why: str) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log >= 5.0:  # at most one line every 5 s
            self._last_drop_log = now
            logger.warning(
                "live events: dropped %s (%s; %d dropped so far)", what, why, self.dropped
            )

    def _run(self, jobs: queue.Queue[tuple[str, Job]]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        while True:
            what, job = jobs.get()
            try:
                self._breaker.call(self._attempt, None, loop, job)
                self.sent += 1
            except CircuitOpenError:
                self._drop(what, "Redis failed repeatedly; delivery paused")
            except Exception as exc:
                self.failed += 1
                logger.warning("live events: could not deliver %s: %r", what, exc)
            finally:
                jobs.task_done()

    @staticmethod
    def _attempt(loop: asyncio.AbstractEventLoop, job: Job) -> None:
        result = job()
        if inspect.isawaitable(result):
            loop.run_until_complete(asyncio.wait_for(_awaited(result), 2 * redis_timeout()))


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


_dispatcher = Dispatcher()


def dispatcher() -> Dispatcher:
    """This process's dispatcher."""
    return _dispatcher


def send_to_group(layer: Any, what: str, send: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """Run ``send(*args)`` (a coroutine function using ``layer``): inline on the in-process
    layer, which cannot hang, else on the delivery thread."""
    if isinstance(layer, InMemoryChannelLayer):
        from asgiref.sync import async_to_sync

        async_to_sync(send)(*args)
        return
    _dispatcher.submit(what, lambda: send(*args))


@atexit.register
def _drain_at_exit() -> None:
    # A short-lived process (a management command) sends what it queued, within bounds.
    if _dispatcher.pending() and _dispatcher._pid == os.getpid():
        _dispatcher.wait_idle(2 * redis_timeout())
