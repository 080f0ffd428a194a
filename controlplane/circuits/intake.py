"""The agents' sync at fleet scale: served on the event loop, written by group commit.

Under ASGI, :class:`AgentFastPath` serves ``POST /api/v1/agent/sync`` ahead of Django's
middleware stack (the mechanism of :mod:`.fastpath`, shared with the watch). A sync in
steady state costs no ORM work and no thread of its own:

* the token -> service mapping is cached for ``SWITCHYARD_INTAKE_TOKEN_SECONDS``
  (default 5): a revoked token is refused within that bound;
* the instance's row id and start time and the service's circuit ids are cached per
  process; the desired state is the watch hub's serialised copy (rebuilt only when the
  service's desired version moves), with ``acked_through`` appended;
* the body is decoded by orjson and validated by :func:`.ingest.parse_sync`, unchanged.

What it writes is buffered per process and written by one thread in one transaction
every ``SWITCHYARD_INTAKE_FLUSH_MS`` (default 25 ms), with three set-based statements
whatever the number of syncs (:meth:`Intake.flush`):

* instances with transitions (``acked_through``), dropped counts, or a due ``last_seen``;
* transitions, ``ON CONFLICT DO NOTHING RETURNING``: only what is new is published, so a
  transition is published once however many processes or replays carry it;
* snapshots whose state or config version changed, or that a transition names, at once;
  snapshots whose counters alone changed, and ``last_seen``, every
  ``SWITCHYARD_INTAKE_COUNTER_SECONDS`` (default 5); unchanged snapshots are not written.
  A row never overwrites one received later (``updated_at``), so several processes or
  hosts can take syncs of one instance.

A sync carrying transitions is answered only after the flush that stores them commits,
so ``acked_through`` means durable; a crash before that loses nothing the agent was told
is stored (it sends again what was not acknowledged). A sync without transitions is
answered at once with the last ``acked_through`` this process stored or read.

Anything else (first sight of an instance, a new breaker, a restarted process, an
override past its expiry, a flush refused by a constraint) goes through the one-sync
transaction of :func:`.ingest.ingest_sync` on the agent routes' database threads, after
what is buffered has been written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, IntegrityError, connection, connections, transaction
from django.http import HttpResponse, JsonResponse
from django.utils import timezone

from breakers import wire
from controlplane.circuits import events
from controlplane.circuits.fastpath import Handler, View
from controlplane.circuits.ingest import (
    SNAPSHOT_FIELDS,
    SyncBatch,
    SyncError,
    ingest_sync,
    parse_sync,
)
from controlplane.circuits.models import Circuit, Instance, Service, Snapshot, Transition
from controlplane.circuits.views import agent_sync
from controlplane.circuits.watch import (
    WatchFastPath,
    cached_token,
    desired_payload,
    in_db_thread,
    lookup_token,
    token_key,
)
from controlplane.circuits.watchhub import get_hub
from controlplane.core.errors import (
    CREDENTIALS_FIELD,
    NON_FIELD,
    UNAVAILABLE_RETRY_AFTER,
    error_response,
)

logger = logging.getLogger(__name__)

# A flush that meets a deadlock with another process's is tried again this many times.
FLUSH_ATTEMPTS = 3
# Bounds of the per-process caches (emptied when full; they refill from the database).
INSTANCES_MAX = 100_000
WRITTEN_MAX = 2_000_000

# Snapshot values in the order of the flush statement's columns (after the two ids).
_VALUE_FIELDS = (
    "state",
    "config_version",
    *wire.BREAKER_COUNTERS,
    "failure_rate",
    "last_failure",
    "state_since",
    "retry_after",
)
Values = tuple[Any, ...]
_values: Callable[[Any], Values] = operator.attrgetter(*_VALUE_FIELDS)
K = TypeVar("K")
V = TypeVar("V")


def group_commit() -> bool:
    """Whether syncs are buffered and written together: on PostgreSQL (the flush's
    statements are PostgreSQL's). The embedded SQLite database takes each sync in its
    own transaction, through :func:`ingest_sync`."""
    return bool(connections["default"].vendor == "postgresql")


def flush_seconds() -> float:
    return float(settings.SWITCHYARD_INTAKE_FLUSH_MS) / 1000.0


def token_seconds() -> float:
    """How long a revoked token may still sync (SWITCHYARD_INTAKE_TOKEN_SECONDS)."""
    return float(settings.SWITCHYARD_INTAKE_TOKEN_SECONDS)


def counter_seconds() -> float:
    return float(settings.SWITCHYARD_INTAKE_COUNTER_SECONDS)


class _Later(Generic[K, V]):
    """Rows kept for the slower cadence. Each key is taken once ``wait`` seconds have
    passed since it first changed, so that every flush writes a share of them rather
    than one flush writing all of them (and the syncs behind it waiting)."""

    def __init__(self) -> None:
        self.values: dict[K, V] = {}
        self._since: dict[K, float] = {}
        self._order: deque[tuple[float, K]] = deque()

    def __len__(self) -> int:
        return len(self.values)

    def put(self, key: K, value: V, now: float) -> None:
        if key not in self.values:
            self._since[key] = now
            self._order.append((now, key))
        self.values[key] = value

    def discard(self, key: K) -> None:
        self.values.pop(key, None)
        self._since.pop(key, None)

    def take(self, now: float, wait: float) -> dict[K, V]:
        """The rows due at ``now`` (all of them if ``wait`` is negative)."""
        if wait < 0:
            everything = self.values
            self.values, self._since, self._order = {}, {}, deque()
            return everything
        taken: dict[K, V] = {}
        while self._order and self._order[0][0] + wait <= now:
            since, key = self._order.popleft()
            if self._since.get(key) == since:
                taken[key] = self.values.pop(key)
                del self._since[key]
        return taken

    def clear(self) -> None:
        self.take(0.0, -1.0)


class Retry(Exception):
    """The buffered path could not store this sync; take the one-sync transaction."""


@dataclass(slots=True)
class _Instance:
    pk: int
    started_at: datetime | None
    acked_through: int


@dataclass(slots=True)
class _Snap:
    """A snapshot row to write, and what its change event needs."""

    key: tuple[int, int]  # instance pk, circuit id
    values: Values
    updated_at: datetime
    service_id: int
    service: str
    instance: str
    circuit: str


@dataclass(slots=True)
class _Touch:
    started_at: datetime | None
    last_seen: datetime
    hostname: str
    pid: int | None
    library_version: str


@dataclass(slots=True)
class _Sync:
    """One sync's rows waiting for a flush."""

    service_id: int
    service: str
    entry: _Instance
    instance: str
    touch: _Touch
    snaps: list[_Snap]
    transitions: list[tuple[Any, ...]]  # (circuit id, breaker, report)
    acked: int
    dropped: int
    done: asyncio.Future[int] | None = None
    loop: asyncio.AbstractEventLoop | None = None


@dataclass
class FlushResult:
    """What one flush stored (for tests)."""

    syncs: int = 0
    instances: int = 0
    transitions_new: int = 0
    snapshots: int = 0
    events: list[events.FleetEvent] = field(default_factory=list)


# -- the statements ------------------------------------------------------------------------

_INSTANCES = """
UPDATE {instance} AS i SET
    last_seen = GREATEST(i.last_seen, u.last_seen),
    hostname = u.hostname, pid = u.pid, library_version = u.library_version,
    acked_through = GREATEST(i.acked_through, u.acked),
    dropped_transitions = i.dropped_transitions + u.dropped
FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::integer[],
            %s::text[], %s::bigint[], %s::bigint[])
     AS u(id, started_at, last_seen, hostname, pid, library_version, acked, dropped)
WHERE i.id = u.id AND i.started_at IS NOT DISTINCT FROM u.started_at
RETURNING i.id, i.generation, i.acked_through
"""

_TRANSITIONS = """
INSERT INTO {transition} (instance_id, circuit_id, generation, seq, from_state, to_state, at,
    reason, failure_rate, calls, failures, config_version, received_at)
SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::integer[], %s::bigint[], %s::text[],
    %s::text[], %s::timestamptz[], %s::text[], %s::double precision[], %s::integer[],
    %s::integer[], %s::integer[], %s::timestamptz[])
ON CONFLICT (instance_id, generation, seq) DO NOTHING
RETURNING instance_id, seq
"""

_DELTA = "CASE WHEN o.{c} IS NULL OR i.{c} < o.{c} THEN i.{c} ELSE i.{c} - o.{c} END"
_SNAPSHOTS = """
WITH incoming AS (
    SELECT * FROM unnest(
        %s::bigint[], %s::bigint[], %s::text[], %s::integer[], %s::bigint[], %s::bigint[],
        %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
        %s::double precision[], %s::timestamptz[], %s::timestamptz[], %s::double precision[],
        %s::timestamptz[]
    ) AS i(instance_id, circuit_id, state, config_version, calls, successes, failures,
           slow_calls, rejected, trip_count, failure_count, success_count, failure_rate,
           last_failure, state_since, retry_after, updated_at)
),
old AS (
    SELECT s.instance_id, s.circuit_id, s.state, s.config_version, s.calls, s.failures,
           s.slow_calls, s.rejected
    FROM {snapshot} s JOIN incoming i USING (instance_id, circuit_id)
),
upserted AS (
    INSERT INTO {snapshot} AS s (instance_id, circuit_id, state, config_version, calls,
        successes, failures, slow_calls, rejected, trip_count, calls_delta, failures_delta,
        slow_calls_delta, rejected_delta, failure_rate, failure_count, success_count,
        last_failure, state_since, retry_after, updated_at)
    SELECT i.instance_id, i.circuit_id, i.state, i.config_version, i.calls, i.successes,
        i.failures, i.slow_calls, i.rejected, i.trip_count, {calls}, {failures}, {slow},
        {rejected}, i.failure_rate, i.failure_count, i.success_count, i.last_failure,
        i.state_since, i.retry_after, i.updated_at
    FROM incoming i LEFT JOIN old o USING (instance_id, circuit_id)
    ORDER BY i.instance_id, i.circuit_id
    ON CONFLICT (instance_id, circuit_id) DO UPDATE SET {updates}
    WHERE s.updated_at <= EXCLUDED.updated_at
    RETURNING s.instance_id, s.circuit_id
)
SELECT u.instance_id, u.circuit_id, o.state
FROM upserted u JOIN incoming i USING (instance_id, circuit_id)
     LEFT JOIN old o USING (instance_id, circuit_id)
WHERE o.state IS DISTINCT FROM i.state OR o.config_version IS DISTINCT FROM i.config_version
"""


def _statements() -> tuple[str, str, str]:
    quote = connection.ops.quote_name
    snapshots = _SNAPSHOTS.format(
        snapshot=quote(Snapshot._meta.db_table),
        calls=_DELTA.format(c="calls"),
        failures=_DELTA.format(c="failures"),
        slow=_DELTA.format(c="slow_calls"),
        rejected=_DELTA.format(c="rejected"),
        updates=", ".join(f"{f} = EXCLUDED.{f}" for f in SNAPSHOT_FIELDS),
    )
    return (
        _INSTANCES.format(instance=quote(Instance._meta.db_table)),
        _TRANSITIONS.format(transition=quote(Transition._meta.db_table)),
        snapshots,
    )


def _is_deadlock(exc: BaseException) -> bool:
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) in {"40P01", "40001"}


# -- the buffer and its flush ----------------------------------------------------------------


class Intake:
    """This process's caches and write buffer; one flusher thread writes the buffer."""

    def __init__(self, *, flusher: bool = True) -> None:
        # flusher=False: no thread; whoever holds it calls flush() (tests).
        self._flusher = flusher
        self._lock = threading.Lock()
        self._syncs: list[_Sync] = []
        self._dirty: _Later[tuple[int, int], _Snap] = _Later()  # counters changed only
        self._touch: _Later[int, _Touch] = _Later()  # instance pk -> last_seen, host, pid
        self._drains: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._wake = threading.Event()
        self._urgent = False
        self._thread: threading.Thread | None = None
        # What this process last stored of each snapshot (instance pk, circuit id).
        self._written: dict[tuple[int, int], Values] = {}
        self.instances: dict[tuple[int, str], _Instance] = {}
        self.circuits: dict[int, dict[str, int]] = {}
        self._expiry: dict[int, tuple[bytes, datetime | None]] = {}
        self.flushes = 0  # flushes that wrote something (tests, benchmarks)

    # -- event loop side -------------------------------------------------------------------

    async def accept(self, service_id: int, service: str, batch: SyncBatch) -> HttpResponse:
        """Store ``batch`` (buffered if it can be, else in one transaction) and answer."""
        if not group_commit():
            return await self.one_transaction(service_id, service, batch)
        now = timezone.now()
        entry = self.instances.get((service_id, batch.instance.id))
        circuits = self.circuits.get(service_id)
        if entry is None or circuits is None or not _known(batch, circuits):
            # New to this process (another one registered it, or this one restarted):
            # one read instead of the whole one-sync transaction.
            entry, circuits = await in_db_thread(_learn, service_id, batch.instance.id)
            if circuits:
                self.circuits[service_id] = circuits
            if entry is not None:
                self._remember(service_id, batch.instance.id, entry)
        payload = None
        if (
            entry is not None
            and circuits is not None
            and entry.started_at == batch.instance.started_at
            and _known(batch, circuits)
        ):
            payload = await self._desired(service_id, now)
        if entry is None or circuits is None or payload is None:
            return await self.one_transaction(service_id, service, batch)
        sync = self._rows(service_id, service, batch, entry, circuits, now)
        acked = entry.acked_through
        if sync.transitions:
            loop = asyncio.get_running_loop()
            sync.loop, sync.done = loop, loop.create_future()
            self._submit(sync)
            try:
                acked = await asyncio.shield(sync.done)
            except Retry:
                return await self.one_transaction(service_id, service, batch)
            except DatabaseError:
                response = error_response(
                    503, {NON_FIELD: "could not store the sync; send it again"}
                )
                response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
                return response
        elif sync.snaps or sync.dropped:
            self._submit(sync)
        return _answer(payload, acked)

    def _rows(
        self,
        service_id: int,
        service: str,
        batch: SyncBatch,
        entry: _Instance,
        circuits: Mapping[str, int],
        now: datetime,
    ) -> _Sync:
        info = batch.instance
        named = {t.breaker for t in batch.transitions}
        snaps: list[_Snap] = []
        dirty: list[_Snap] = []
        for report in batch.breakers:
            key = (entry.pk, circuits[report.name])
            values = _values(report)
            last = self._written.get(key)
            if last == values and report.name not in named:
                continue  # unchanged: not written again
            snap = _Snap(key, values, now, service_id, service, info.id, report.name)
            if last is None or last[:2] != values[:2] or report.name in named:
                snaps.append(snap)
            else:
                dirty.append(snap)
        touch = _Touch(entry.started_at, now, info.hostname, info.pid, info.library_version)
        clock = time.monotonic()
        with self._lock:
            for snap in dirty:
                self._dirty.put(snap.key, snap, clock)
            for snap in snaps:
                self._dirty.discard(snap.key)
            self._touch.put(entry.pk, touch, clock)
        return _Sync(
            service_id=service_id,
            service=service,
            entry=entry,
            instance=info.id,
            touch=touch,
            snaps=snaps,
            transitions=[(circuits[t.breaker], t) for t in batch.transitions],
            acked=max((t.id for t in batch.transitions), default=0),
            dropped=batch.dropped_transitions,
        )

    async def _desired(self, service_id: int, now: datetime) -> bytes | None:
        """The hub's serialised desired state of the service, None if an override in it
        is past its expiry (the one-sync transaction ends it and moves the version)."""
        hub = get_hub()
        hub.listen()
        version = hub.current_version(service_id)
        if version is None:
            generation = hub.feed_generation()
            version = await in_db_thread(_read_version, service_id)
            hub.learn(service_id, version, generation)
        payload = await desired_payload(service_id, version)
        cached = self._expiry.get(service_id)
        if cached is None or cached[0] is not payload:
            cached = (payload, _earliest_expiry(payload))
            self._expiry[service_id] = cached
        expiry = cached[1]
        return None if expiry is not None and expiry <= now else payload

    async def one_transaction(self, service_id: int, service: str, batch: SyncBatch) -> Any:
        """The sync through :func:`ingest_sync`, after the buffer is written (so that no
        older buffered row lands after it); refreshes this process's caches."""
        await self.drain()
        hub = get_hub()
        generation = hub.feed_generation()  # before the version is read
        try:
            answer, entry, circuits = await in_db_thread(_ingest, service_id, service, batch)
        except SyncError as exc:
            return JsonResponse(exc.as_json(), status=exc.status)
        hub.learn(service_id, int(answer["desired_version"]), generation)
        self._remember(service_id, batch.instance.id, entry)
        self.circuits[service_id] = circuits
        for report in batch.breakers:
            key = (entry.pk, circuits[report.name])
            self._written[key] = _values(report)
        return _json(orjson.dumps(answer))

    def _remember(self, service_id: int, instance_id: str, entry: _Instance) -> None:
        if len(self.instances) >= INSTANCES_MAX:
            self.instances.clear()
        self.instances[(service_id, instance_id)] = entry

    def _submit(self, sync: _Sync) -> None:
        with self._lock:
            self._syncs.append(sync)
        self._ensure_thread()
        self._wake.set()

    async def drain(self) -> None:
        """Return once everything buffered so far (counters aside) is written."""
        if not self._flusher:
            await in_db_thread(self._flush_and_close)
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._drains.append((loop, done))
            self._urgent = True
        self._ensure_thread()
        self._wake.set()
        await done

    def _flush_and_close(self) -> None:
        try:
            self.flush()
        finally:
            connections.close_all()

    def _ensure_thread(self) -> None:
        if not self._flusher or (self._thread is not None and self._thread.is_alive()):
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="switchyard-intake-flush", daemon=True
                )
                self._thread.start()

    # -- flusher side ----------------------------------------------------------------------

    def _run(self) -> None:
        last = 0.0
        while True:
            self._wake.wait(timeout=0.5)  # also to write counters that came due
            # Group commit: at most one flush per interval; a drain does not wait.
            delay = last + flush_seconds() - time.monotonic()
            if delay > 0 and not self._urgent:
                time.sleep(delay)
            self._wake.clear()
            last = time.monotonic()
            try:
                self.flush()
            except Exception:
                logger.exception("intake: flush failed")

    def flush(self, *, counters: bool | None = None) -> FlushResult:
        """Write what is buffered in one transaction and answer the syncs waiting for it.

        Counter-only snapshot changes and ``last_seen`` go along when their cadence is due
        (or ``counters`` says so).
        """
        with self._lock:
            syncs, self._syncs = self._syncs, []
            drains, self._drains = self._drains, []
            self._urgent = False
            # All (counters=True), none (False), or those due (None).
            wait = -1.0 if counters else counter_seconds()
            dirty = self._dirty.take(time.monotonic(), wait) if counters is not False else {}
            touch = self._touch.take(time.monotonic(), wait) if counters is not False else {}
        result = FlushResult(syncs=len(syncs))
        try:
            if syncs or dirty or touch:
                self._flush(syncs, dirty, touch, result)
        finally:
            for loop, done in drains:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(_set_result, done, None)
        return result

    def _flush(
        self,
        syncs: list[_Sync],
        dirty: dict[tuple[int, int], _Snap],
        touch: dict[int, _Touch],
        result: FlushResult,
    ) -> None:
        outcome: dict[int, int | BaseException] = {}
        for attempt in range(FLUSH_ATTEMPTS):
            try:
                with transaction.atomic():
                    outcome = self._write(syncs, dirty, touch, result)
                break
            except IntegrityError as exc:
                # A row this process cached is gone (a deleted service, say): forget the
                # caches; the waiting syncs take the one-sync transaction.
                logger.warning("intake: flush refused (%s); caches cleared", exc)
                self.forget()
                result.events.clear()
                outcome = {id(s): Retry() for s in syncs}
                break
            except DatabaseError as exc:
                if _is_deadlock(exc) and attempt + 1 < FLUSH_ATTEMPTS:
                    result.events.clear()
                    continue
                logger.warning("intake: flush failed: %s", exc)
                result.events.clear()
                with contextlib.suppress(Exception):
                    connection.close()
                outcome = {id(s): exc for s in syncs}
                break
        for sync in syncs:
            if sync.done is not None and sync.loop is not None:
                value = outcome.get(id(sync), Retry())
                with contextlib.suppress(RuntimeError):
                    sync.loop.call_soon_threadsafe(_settle, sync.done, value)
        if result.events:
            events.deliver(*result.events)
        if syncs or dirty:
            self.flushes += 1

    def _write(
        self,
        syncs: list[_Sync],
        dirty: dict[tuple[int, int], _Snap],
        touch: dict[int, _Touch],
        result: FlushResult,
    ) -> dict[int, int | BaseException]:
        instances_sql, transitions_sql, snapshots_sql = _statements()
        outcome: dict[int, int | BaseException] = {}
        # 1. Instances: one row per instance, with the highest acked id of its syncs.
        rows: dict[int, list[Any]] = {}
        conflicting: set[int] = set()
        for pk, t in touch.items():
            rows[pk] = [t.started_at, t.last_seen, t.hostname, t.pid, t.library_version, 0, 0]
        for sync in syncs:
            if not sync.transitions and not sync.dropped:
                continue
            pk, t = sync.entry.pk, sync.touch
            row = rows.get(pk)
            if row is not None and row[0] != t.started_at:
                conflicting.add(id(sync))  # another start of the process in one flush
                continue
            if row is None or row[1] <= t.last_seen:
                rows[pk] = [
                    t.started_at,
                    t.last_seen,
                    t.hostname,
                    t.pid,
                    t.library_version,
                    max(sync.acked, row[5] if row else 0),
                    sync.dropped + (row[6] if row else 0),
                ]
            else:
                row[5] = max(row[5], sync.acked)
                row[6] += sync.dropped
        stored: dict[int, tuple[int, int]] = {}  # pk -> (generation, acked_through)
        with connection.cursor() as cursor:
            if rows:
                ids = sorted(rows)  # one lock order for every process
                columns = list(zip(*(rows[pk] for pk in ids), strict=True))
                cursor.execute(instances_sql, [ids, *map(list, columns)])
                stored = {pk: (generation, acked) for pk, generation, acked in cursor.fetchall()}
                result.instances = len(stored)
            live = [s for s in syncs if id(s) not in conflicting]
            refused = {
                id(s) for s in live if (s.transitions or s.dropped) and s.entry.pk not in stored
            }
            # 2. Transitions, new ones returned.
            t_rows = []
            for sync in live:
                if id(sync) in refused:
                    continue
                pk = sync.entry.pk
                for circuit_id, t in sync.transitions:
                    t_rows.append(
                        (
                            pk,
                            circuit_id,
                            stored[pk][0],
                            t.id,
                            t.from_state,
                            t.to_state,
                            t.at,
                            t.reason,
                            t.failure_rate,
                            t.calls,
                            t.failures,
                            t.config_version,
                            sync.touch.last_seen,
                        )
                    )
            new: set[tuple[int, int]] = set()
            if t_rows:
                t_rows.sort(key=lambda r: (r[0], r[3]))
                cursor.execute(transitions_sql, [list(c) for c in zip(*t_rows, strict=True)])
                new = {(pk, seq) for pk, seq in cursor.fetchall()}
                result.transitions_new = len(new)
            # 3. Snapshots: the latest row of each (instance, circuit).
            refused_pks = {s.entry.pk for s in live if id(s) in refused}
            latest: dict[tuple[int, int], _Snap] = {}
            for snap in [*dirty.values(), *(snap for s in live for snap in s.snaps)]:
                if snap.key[0] in refused_pks:
                    continue
                old = latest.get(snap.key)
                if old is None or old.updated_at <= snap.updated_at:
                    latest[snap.key] = snap
            changed: list[tuple[int, int, str | None]] = []
            if latest:
                keys = sorted(latest)
                columns_s: list[list[Any]] = [[k[0] for k in keys], [k[1] for k in keys]]
                for index in range(len(_VALUE_FIELDS)):
                    columns_s.append([latest[k].values[index] for k in keys])
                columns_s.append([latest[k].updated_at for k in keys])
                cursor.execute(snapshots_sql, columns_s)
                changed = cursor.fetchall()
                result.snapshots = len(keys)
        transaction.on_commit(lambda: self._committed(live, latest, stored))
        for sync in syncs:
            if id(sync) in conflicting or id(sync) in refused:
                outcome[id(sync)] = Retry()
            elif sync.transitions or sync.dropped:
                outcome[id(sync)] = stored[sync.entry.pk][1]
        result.events.extend(_events(live, refused, new, latest, changed))
        return outcome

    def _committed(
        self,
        syncs: list[_Sync],
        latest: dict[tuple[int, int], _Snap],
        stored: dict[int, tuple[int, int]],
    ) -> None:
        if len(self._written) + len(latest) > WRITTEN_MAX:
            self._written.clear()  # bounded; the next sync of each breaker rewrites it
        for key, snap in latest.items():
            self._written[key] = snap.values
        for sync in syncs:
            found = stored.get(sync.entry.pk)
            if found is not None:
                sync.entry.acked_through = max(sync.entry.acked_through, found[1])

    def forget(self) -> None:
        """Drop every cache (the next sync of each instance takes the one-sync path)."""
        self.instances.clear()
        self.circuits.clear()
        self._written.clear()
        with self._lock:
            self._dirty.clear()
            self._touch.clear()


def _events(
    syncs: list[_Sync],
    refused: set[int],
    new: set[tuple[int, int]],
    latest: Mapping[tuple[int, int], _Snap],
    changed: list[tuple[int, int, str | None]],
) -> list[events.FleetEvent]:
    """One "fleet.transitions" event per service, one "fleet.snapshots" per instance."""
    transitions: dict[tuple[int, str], list[events.TransitionItem]] = {}
    for sync in syncs:
        if id(sync) in refused:
            continue
        for circuit_id, t in sync.transitions:
            if (sync.entry.pk, t.id) in new:
                new.discard((sync.entry.pk, t.id))  # once, even if sent twice in a flush
                transitions.setdefault((sync.service_id, sync.service), []).append(
                    events.transition_item(
                        circuit_id=circuit_id,
                        circuit=t.breaker,
                        instance=sync.instance,
                        from_state=t.from_state,
                        to_state=t.to_state,
                        at=wire.format_timestamp(t.at),
                        reason=t.reason,
                    )
                )
    batch: list[events.FleetEvent] = [
        events.transitions_event(service_id=sid, service=name, transitions=items)
        for (sid, name), items in transitions.items()
    ]
    snapshots: dict[tuple[int, str, str], list[events.SnapshotItem]] = {}
    for pk, circuit_id, previous in changed:
        snap = latest[(pk, circuit_id)]
        snapshots.setdefault((snap.service_id, snap.service, snap.instance), []).append(
            {
                "circuit_id": circuit_id,
                "circuit": snap.circuit,
                "state": snap.values[0],
                "previous_state": previous,
                "config_version": snap.values[1],
            }
        )
    batch.extend(
        events.snapshots_event(service_id=sid, service=name, instance=inst, snapshots=items)
        for (sid, name, inst), items in snapshots.items()
    )
    return batch


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _settle(future: asyncio.Future[int], value: int | BaseException) -> None:
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


def _known(batch: SyncBatch, circuits: Mapping[str, int]) -> bool:
    return all(b.name in circuits for b in batch.breakers) and all(
        t.breaker in circuits for t in batch.transitions
    )


def _learn(service_id: int, instance_id: str) -> tuple[_Instance | None, dict[str, int]]:
    """The instance's row (None if it has none yet) and the service's circuit ids."""
    try:
        row = (
            Instance.objects.filter(service_id=service_id, instance_id=instance_id)
            .values_list("pk", "started_at", "acked_through")
            .first()
        )
        circuits = dict(Circuit.objects.filter(service_id=service_id).values_list("name", "pk"))
        return (_Instance(*row) if row is not None else None), circuits
    finally:
        connections.close_all()


def _read_version(service_id: int) -> int:
    try:
        version: int = (
            Service.objects.filter(pk=service_id).values_list("desired_version", flat=True).get()
        )
        return version
    finally:
        connections.close_all()


def _ingest(
    service_id: int, service: str, batch: SyncBatch
) -> tuple[dict[str, Any], _Instance, dict[str, int]]:
    try:
        answer = ingest_sync(Service(pk=service_id, name=service), batch)
        pk, started_at, acked = (
            Instance.objects.filter(service_id=service_id, instance_id=batch.instance.id)
            .values_list("pk", "started_at", "acked_through")
            .get()
        )
        circuits = dict(Circuit.objects.filter(service_id=service_id).values_list("name", "pk"))
        return answer, _Instance(pk, started_at, acked), circuits
    finally:
        connections.close_all()


def _earliest_expiry(payload: bytes) -> datetime | None:
    desired = orjson.loads(payload)
    until = [
        wire.parse_timestamp(b["override"]["until"])
        for b in desired.get("breakers", {}).values()
        if b.get("override") and b["override"].get("until")
    ]
    return min(until, default=None)


def _answer(payload: bytes, acked_through: int) -> HttpResponse:
    # The hub's bytes are a JSON object: acked_through goes in before its closing brace.
    return _json(b"".join((memoryview(payload)[:-1], b',"acked_through":%d}' % acked_through)))


def _json(body: bytes) -> HttpResponse:
    response = HttpResponse(body, content_type="application/json")
    response["Content-Length"] = str(len(body))
    return response


_intake: Intake | None = None
_intake_lock = threading.Lock()


def get_intake() -> Intake:
    """This process's intake."""
    global _intake
    with _intake_lock:
        if _intake is None:
            _intake = Intake()
        return _intake


# -- the route ---------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The request body, None if the client went away; _TooLarge past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _decode(body: bytes) -> Any:
    return orjson.loads(body)


def _error(status: int, field_name: str, reason: str, **headers: str) -> HttpResponse:
    response = error_response(status, {field_name: reason})
    for name, value in headers.items():
        response[name] = value
    return response


async def serve_sync(request: ASGIRequest, receive: Any) -> HttpResponse | None:
    """``POST /api/v1/agent/sync`` on the event loop: the same checks, limits and error
    shape as :func:`controlplane.circuits.views.agent_sync`, then :meth:`Intake.accept`."""
    from controlplane.circuits.auth import bearer_token

    if request.method != "POST":
        return _error(405, NON_FIELD, f'Method "{request.method}" not allowed.', Allow="POST")
    raw_token = bearer_token(request.headers.get("Authorization"))
    if raw_token is None:
        return _error(
            401,
            CREDENTIALS_FIELD,
            "send an agent token as 'Authorization: Bearer sya_...'",
            **{"WWW-Authenticate": 'Bearer realm="agent"'},
        )
    found = cached_token(token_key(raw_token), token_seconds())
    if found is None:
        info = await lookup_token(raw_token)
        if info is None:
            return _error(
                401,
                CREDENTIALS_FIELD,
                "invalid or revoked agent token",
                **{"WWW-Authenticate": 'Bearer realm="agent", error="invalid_token"'},
            )
        found = info.service_id, info.service
    service_id, service = found

    limit = settings.SWITCHYARD_SYNC_MAX_BODY_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return _error(400, "body", "Content-Length is not an integer")
    if declared > limit:
        return _error(413, "body", f"at most {limit} bytes per sync, got {declared}")
    try:
        body = await _read_body(receive, limit)
    except _TooLarge:
        return _error(413, "body", f"at most {limit} bytes per sync")
    if body is None:
        return None
    try:
        batch = parse_sync(_decode(body))
    except (ValueError, UnicodeDecodeError, SyncError):
        # Refused: decode and validate again as the Django view does, so that the
        # answer is the same to the letter (orjson reads integers past 64 bits as floats).
        try:
            batch = parse_sync(json.loads(body))
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(400, "body", f"malformed JSON: {exc}"[:300])
        except SyncError as exc:
            return JsonResponse(exc.as_json(), status=exc.status)
    if batch.service is not None and batch.service != service:
        return _error(
            403, "service", f"this token belongs to service {service!r}, not {batch.service!r}"
        )
    response: HttpResponse = await get_intake().accept(service_id, service, batch)
    return response


class AgentFastPath(WatchFastPath):
    """The agent routes ahead of Django's stack: the watch and the sync.

    ``controlplane/asgi.py`` mounts it: ``"http": AgentFastPath(django_asgi_app)``.
    """

    def routes(self) -> Mapping[View, Handler]:
        return {**super().routes(), agent_sync: serve_sync}
