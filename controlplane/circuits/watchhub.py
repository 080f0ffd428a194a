"""The watch hub: wakes long-polling agents when their service's desired state moves.

Each web process keeps one :class:`WatchHub`. Watch requests register a waiter
(service id, the version the agent already has, the event loop it waits on).
When a service's desired state changes, the hub builds that desired state once,
serialises it once, and hands the same bytes to every waiter of the service, so
a thousand woken agents cost one ``build_desired_state`` call, not a thousand syncs.

How a change reaches the hubs (the change feed): :func:`announce` is the sink that
``controlplane.circuits.events.publish`` hands every committed event that moves a
service's desired version to.

* With ``REDIS_URL`` set, it publishes ``{"service_id", "desired_version"}`` on the
  Redis channel :func:`channel_name` (namespaced by ``SWITCHYARD_REDIS_PREFIX``) and
  every web process runs one listener thread subscribed to it (started with its first
  waiter), so a change made in any process (web, Celery) wakes the agents of all.
* Without Redis (the embedded default, one process), it hands the change straight to
  this process's hub.

Building and delivering happen on the hub's own thread, never on an event loop.

What the hub hears is a hint, never the truth: anyone who can publish on the Redis
channel can announce any version. An announced version only makes the hub build the
desired state from the database; waiters are compared with the version that build
read, and an announcement above what the database says (heard before the build
started) is forgotten (:meth:`WatchHub.settle`), so a bogus message costs one build,
not a stream of immediate answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections

from controlplane.core import live

logger = logging.getLogger(__name__)

# Redis reconnects back off up to this many seconds.
MAX_RECONNECT_DELAY = 5.0
# What a released watch is woken with (:meth:`WatchHub.release`): no desired state.
RELEASED = b""
# Services whose announced version the hub keeps; a flood of messages naming made-up
# services empties the table instead of growing it without bound.
MAX_ANNOUNCED = 100_000


@dataclass(eq=False)
class Waiter:
    """One held watch request."""

    service_id: int
    since: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[bytes] = field(repr=False)


def _resolve(waiters: list[Waiter], payload: bytes) -> None:
    # Runs on the waiters' event loop.
    for waiter in waiters:
        if not waiter.future.done():
            waiter.future.set_result(payload)


def _answer(waiters: list[Waiter], payload: bytes) -> None:
    """Resolve ``waiters`` with ``payload``, on each one's event loop (from any thread)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Waiter]] = {}
    for waiter in waiters:
        by_loop.setdefault(waiter.loop, []).append(waiter)
    for loop, held in by_loop.items():
        # A closed loop raises RuntimeError: its requests are gone anyway.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, held, payload)


def _default_builder(service_id: int) -> dict[str, Any]:
    from controlplane.circuits.desired import build_desired_state

    return build_desired_state(service_id)


class WatchHub:
    """Holds the waiting watchers of this process and wakes them with one shared payload."""

    def __init__(self, builder: Callable[[int], dict[str, Any]] | None = None) -> None:
        self._builder = builder or _default_builder
        self._lock = threading.Lock()
        self._waiters: dict[int, set[Waiter]] = {}
        self._announced: dict[int, int] = {}  # service id -> highest version heard of
        # Announcements heard so far, and the count when each service's last one was heard:
        # a database read that started after an announcement was heard sees its commit.
        self._heard = 0
        self._heard_at: dict[int, int] = {}
        # What this process knows of each service's current version without asking the
        # database: valid only while the change feed has been live since it was learned.
        self._feed_generation = 0 if not redis_url() else -1  # -1: feed not (yet) live
        self._known: dict[int, tuple[int, int]] = {}  # service id -> (version, generation)
        self._payloads: dict[int, tuple[int, bytes]] = {}  # service id -> last built
        self._listen_generation = 0
        self._channel: str | None = None  # the Redis channel the listener is subscribed to
        self._changes: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()
        self.builds = 0  # desired states built (for tests and benchmarks)
        self.deliveries = 0  # waiters answered

    # -- waiters (event loop side) ---------------------------------------------------------

    def register(self, service_id: int, since: int) -> Waiter:
        """Register a waiter on the running loop; call before reading the current version."""
        loop = asyncio.get_running_loop()
        waiter = Waiter(service_id, since, loop, loop.create_future())
        with self._lock:
            self._waiters.setdefault(service_id, set()).add(waiter)
        self._ensure_threads()
        return waiter

    def listen(self) -> None:
        """Subscribe to the change feed without a waiter: the agents' sync answers from
        :meth:`current_version` and :meth:`payload` too, so the versions it learns must
        stay current in a process that serves no watch."""
        self._ensure_threads()

    def unregister(self, waiter: Waiter) -> None:
        """Forget a waiter (answered, timed out or disconnected)."""
        with self._lock:
            waiters = self._waiters.get(waiter.service_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.service_id]

    def feed_generation(self) -> int | None:
        """An id of the current unbroken stretch of change notifications, None if none.

        Read it before reading a version from the database; pass it to :meth:`learn`.
        """
        with self._lock:
            if not redis_url():
                return 0
            return self._feed_generation if self._feed_generation >= 0 else None

    def listening_on(self) -> str | None:
        """The Redis channel whose messages this hub hears now (None: not subscribed)."""
        with self._lock:
            return self._channel

    def learn(self, service_id: int, version: int, generation: int | None) -> None:
        """Remember a version read from the database while the feed was ``generation``."""
        with self._lock:
            current = 0 if not redis_url() else self._feed_generation
            if generation is None or generation != current:
                return
            old = self._known.get(service_id)
            if old is None or old[1] != generation or old[0] < version:
                self._known[service_id] = (version, generation)

    def current_version(self, service_id: int) -> int | None:
        """The service's current desired version if this process knows it, else None."""
        with self._lock:
            generation = 0 if not redis_url() else self._feed_generation
            known = self._known.get(service_id)
            if generation < 0 or known is None or known[1] != generation:
                return None
            return max(known[0], self._announced.get(service_id, 0))

    def payload(self, service_id: int, version: int) -> bytes | None:
        """The serialised desired state of ``version``, if this process built it."""
        with self._lock:
            cached = self._payloads.get(service_id)
        return cached[1] if cached is not None and cached[0] == version else None

    def remember_payload(
        self, service_id: int, version: int, payload: bytes, generation: int | None
    ) -> None:
        """Keep the last built desired state of a service (and learn its version)."""
        with self._lock:
            old = self._payloads.get(service_id)
            if old is None or old[0] <= version:
                self._payloads[service_id] = (version, payload)
        self.learn(service_id, version, generation)

    def mark(self) -> int:
        """How many announcements this hub has heard; read it before a database read
        and pass it to :meth:`settle` with the version that read found."""
        with self._lock:
            return self._heard

    def settle(self, service_id: int, version: int, mark: int) -> None:
        """The database says the service's desired version is ``version``, read after
        :meth:`mark` returned ``mark``. Changes are announced after they commit, so an
        announcement heard before that mark and above ``version`` announced nothing that
        exists: forget it (it would make every watch answer at once)."""
        with self._lock:
            announced = self._announced.get(service_id, 0)
            if announced <= version or self._heard_at.get(service_id, 0) > mark:
                return
            self._announced[service_id] = version
        logger.warning(
            "watch hub: service %s was announced at desired version %s but the database "
            "has %s; ignored",
            service_id,
            announced,
            version,
        )

    def announced(self, service_id: int) -> int:
        """The highest desired version this process has heard announced (0 if none)."""
        with self._lock:
            return self._announced.get(service_id, 0)

    def release(self) -> int:
        """End every held watch now, as if its hold had run out (the watch answers
        204 and the agent watches again): the server is stopping, and a held watch
        would otherwise keep it waiting to the end of its graceful shutdown and then be
        cancelled. How many were released."""
        with self._lock:
            waiters = [w for held in self._waiters.values() for w in held]
        _answer(waiters, RELEASED)
        return len(waiters)

    def waiting(self, service_id: int | None = None) -> int:
        """How many watchers wait (for one service, or in all)."""
        with self._lock:
            if service_id is not None:
                return len(self._waiters.get(service_id, ()))
            return sum(len(w) for w in self._waiters.values())

    # -- changes (any thread) --------------------------------------------------------------

    def wake(self, service_id: int, desired_version: int) -> None:
        """A service's desired state moved to ``desired_version``: wake its waiters."""
        with self._lock:
            if len(self._announced) >= MAX_ANNOUNCED and service_id not in self._announced:
                logger.warning("watch hub: %d services announced; table emptied", MAX_ANNOUNCED)
                self._announced.clear()
                self._heard_at.clear()
            self._heard += 1
            self._heard_at[service_id] = self._heard
            if desired_version > self._announced.get(service_id, 0):
                self._announced[service_id] = desired_version
            if service_id not in self._waiters:
                return  # nobody here waits for it: nothing to build
        self._changes.put((service_id, desired_version))
        self._ensure_threads()

    def _ensure_threads(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="switchyard-watch-hub", daemon=True
                )
                self._worker.start()
            if redis_url() and (self._listener is None or not self._listener.is_alive()):
                self._listener = threading.Thread(
                    target=self._listen, name="switchyard-watch-redis", daemon=True
                )
                self._listener.start()

    def _work(self) -> None:
        while not self._stopping.is_set():
            item = self._changes.get()
            if item is None:
                break
            # Coalesce a burst: one build per service, at its highest announced version.
            latest = {item[0]: item[1]}
            while True:
                try:
                    more = self._changes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._stopping.set()
                    break
                latest[more[0]] = max(more[1], latest.get(more[0], 0))
            try:
                for service_id, version in latest.items():
                    self._deliver(service_id, version)
            except Exception:
                logger.exception("watch hub: delivery failed")
            finally:
                # Never hold a database connection between bursts.
                connections.close_all()

    def _deliver(self, service_id: int, version: int) -> None:
        with self._lock:
            pending = [w for w in self._waiters.get(service_id, ()) if w.since < version]
        if not pending:
            return
        generation = self.feed_generation()
        mark = self.mark()
        desired = self._builder(service_id)
        self.builds += 1
        # The database's version, not the announced one, decides who is answered.
        built_version = int(desired["desired_version"])
        payload = json.dumps(desired, separators=(",", ":")).encode()
        self.remember_payload(service_id, built_version, payload, generation)
        self.settle(service_id, built_version, mark)
        answered = [waiter for waiter in pending if waiter.since < built_version]
        self.deliveries += len(answered)
        _answer(answered, payload)

    def _listen(self) -> None:
        import redis

        delay = 0.1
        while not self._stopping.is_set():
            client = None
            try:
                # Reads wait in get_message(timeout=...); the connect and each command
                # are bounded, so a hung Redis makes the listener retry, not stick.
                client = redis.Redis.from_url(
                    redis_url(),
                    socket_keepalive=True,
                    client_name=listener_name(),
                    socket_connect_timeout=live.redis_timeout(),
                    socket_timeout=live.redis_timeout(),
                )
                pubsub = client.pubsub()
                channel = channel_name()
                pubsub.subscribe(channel)
                delay = 0.1
                while not self._stopping.is_set():
                    if channel != channel_name():  # the prefix changed (tests): resubscribe
                        with self._lock:
                            self._feed_generation = -1
                            self._channel = None
                        break
                    message = pubsub.get_message(timeout=0.2)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        with self._lock:  # from now on no change can pass unheard
                            self._feed_generation = self._listen_generation + 1
                            self._listen_generation += 1
                            self._channel = channel
                        continue
                    if message["type"] != "message":
                        continue
                    try:
                        data = json.loads(message["data"])
                        self.wake(int(data["service_id"]), int(data["desired_version"]))
                    except (ValueError, KeyError, TypeError):
                        logger.warning("watch hub: ignored malformed message %r", message)
            except Exception as exc:
                with self._lock:  # changes may pass unheard until resubscribed
                    self._feed_generation = -1
                    self._channel = None
                # Waiters still time out and agents still sync periodically.
                logger.warning("watch hub: Redis listener error (%s); reconnecting", exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
            finally:
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()

    def stop(self) -> None:
        """Stop the hub's threads (tests)."""
        self._stopping.set()
        self._changes.put(None)


def listener_name() -> str:
    """The Redis client name of this process's listener (for operators and tests)."""
    return f"switchyard-watch-hub-{os.getpid()}"


def channel_name() -> str:
    """The Redis channel of the change feed, under ``SWITCHYARD_REDIS_PREFIX``."""
    prefix = getattr(settings, "SWITCHYARD_REDIS_PREFIX", "switchyard")
    return f"{prefix}:desired_state_changed"


def redis_url() -> str:
    """The Redis URL that carries change notifications between processes ('' = in-process)."""
    return getattr(settings, "REDIS_URL", "") or ""


_hub: WatchHub | None = None
_hub_lock = threading.Lock()


def get_hub() -> WatchHub:
    """This process's hub."""
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = WatchHub()
        return _hub


_redis_client: Any = None


def _publish(service_id: int, desired_version: int) -> None:
    """Publish on the change feed; raises when Redis fails (the delivery thread counts it).
    A dropped connection (Redis restarted) is retried once; a time-out is not."""
    global _redis_client
    import redis

    message = json.dumps({"service_id": service_id, "desired_version": desired_version})
    for attempt in (0, 1):
        try:
            if _redis_client is None:
                _redis_client = redis.Redis.from_url(
                    redis_url(),
                    socket_timeout=live.redis_timeout(),
                    socket_connect_timeout=live.redis_timeout(),
                )
            _redis_client.publish(channel_name(), message)
            return
        except redis.RedisError as exc:
            client, _redis_client = _redis_client, None
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            if attempt or isinstance(exc, redis.TimeoutError):
                raise


def announce(service_id: int, desired_version: int) -> None:
    """Tell every web process's hub (Redis) or this one's that a service's desired
    state moved to ``desired_version``. Call after the commit."""
    started = time.monotonic()
    if redis_url():
        _publish(service_id, desired_version)
    else:
        get_hub().wake(service_id, desired_version)
    logger.debug(
        "desired state of service %s -> %s announced in %.1f ms",
        service_id,
        desired_version,
        (time.monotonic() - started) * 1000,
    )
