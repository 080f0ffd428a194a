"""The only writer of instances, snapshots and transitions: syncs in one transaction.

:meth:`Store.write` stores any number of parsed syncs in the caller's transaction with
set-based statements (the same count for 1 or 500 syncs):

1. circuits the syncs name that this process does not know are read, and those the
   service does not have yet are registered (the service's row locked, its
   ``SWITCHYARD_MAX_CIRCUITS_PER_SERVICE`` checked); a sync refused here (400) writes
   nothing;
2. instances: one upsert for every reporting process -- ``last_seen`` on every sync
   (liveness is the instance's), a new ``started_at`` a restart (the generation moves on
   and transition ids start over), ``acked_through`` the highest transition id stored;
3. transitions, ``ON CONFLICT DO NOTHING RETURNING``: only the new ones are published,
   however many replays or processes carry them;
4. snapshots whose state or config changed, that a transition names, or whose counters
   changed (at most once per ``SWITCHYARD_SYNC_COUNTER_SECONDS`` of the agent's clock),
   each with the growth of its counters since the row before and the seconds that growth
   covers (by the agent's clock; after a restart, since the process started), so rates are
   exact. A row already at zero growth whose counters did not move is not rewritten.
5. traffic: the new telemetry reports added up per circuit and 10-second bucket, and,
   for circuits with an active canary rollout, per rollout group too (the group of the
   version the reporting instance runs: docs/rollouts.md).

:class:`GroupCommit` feeds it under ASGI: syncs queue, and one thread writes whatever
queued as soon as the previous write committed (at once when idle), so a lone sync
costs one transaction and batches grow with load. A sync with anything to lose
(transitions, a dropped count, a breaker new to this process, a new start of a process)
is answered after the transaction that stored it commits (``acked_through`` means
durable); one with states, cumulative counters and reports alone is answered at once
(:meth:`Store.settled`), acknowledging only what was stored before it. A write
that fails for any reason answers each sync waiting for it with a retryable 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import operator
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from breakers.config import CircuitBreakerConfig
from breakers.wire import format_timestamp
from controlplane.circuits import events
from controlplane.circuits.choices import ConfigSource, RolloutGroup, RolloutState
from controlplane.circuits.models import (
    Circuit,
    ConfigVersion,
    Instance,
    Rollout,
    RolloutTraffic,
    Service,
    ShadowBucket,
    ShadowEvaluation,
    ShadowTransition,
    Snapshot,
    Traffic10s,
    Transition,
)
from controlplane.circuits.sync.parse import SyncError, config_of
from controlplane.circuits.sync.reports import Traffic, Watermark, add_up
from controlplane.circuits.sync.reports import rows as reports_rows
from controlplane.circuits.sync.wire import (
    COUNTERS,
    MAX_COUNTER,
    TRAFFIC_COUNTERS,
    Breaker,
    Report,
    Sync,
)
from controlplane.core.errors import ApiError, database_unavailable, unavailable

logger = logging.getLogger(__name__)

#: Syncs written in one transaction at most (the rest wait for the next one).
MAX_SYNCS_PER_WRITE = 500
#: Seconds a sync answered before its write waits at most for a write to ride along.
SETTLED_DELAY = 0.1
#: A write that meets a deadlock with another process's is tried this many times.
WRITE_ATTEMPTS = 3
#: Seconds a thread runs before the interpreter hands the GIL over (the default: 0.005).
SWITCH_INTERVAL = 0.0005
#: Pooled connections tried after a failed write before the next write goes ahead.
CONNECTION_PROBES = 5
#: Bounds of the per-process caches (emptied when full; they refill from the database).
CIRCUITS_MAX = 100_000
INSTANCES_MAX = 100_000
ROWS_MAX = 2_000_000

Key = tuple[int, int]  # instance pk, circuit id


@dataclass(slots=True)
class Item:
    """One parsed sync on its way through the store, and what became of it."""

    service_id: int
    service: str
    sync: Sync
    received: datetime
    acked_through: int = 0
    telemetry_through: int = 0
    error: ApiError | None = None
    done: asyncio.Future[None] | None = None
    loop: asyncio.AbstractEventLoop | None = None


class Row(msgspec.Struct, frozen=True, gc=False):
    """What this process last wrote (or read) of one snapshot: the base of the next
    row's growth, and what its change event compares with. The cache holds one per
    snapshot (a worker: hundreds of thousands), so it is not tracked by the cyclic
    garbage collector (it holds no container that could lead back to it): a full
    collection does not walk the cache."""

    generation: int
    clock: float | None
    counters: tuple[int, ...]
    state: str
    config_version: int
    growing: bool  # its deltas are not all zero


# A snapshot whose state or config version changed: its sync, its report, its key and
# the state it had before (None: new).
Change = tuple["Item", Breaker, Key, str | None]


@dataclass
class Written:
    """What one :meth:`Store.write` stored (tests, benchmarks)."""

    syncs: int = 0
    instances: int = 0
    transitions_new: int = 0
    snapshots: int = 0
    traffic: int = 0  # traffic rows added to (circuit x bucket)
    events: list[events.FleetEvent] = field(default_factory=list)


# -- statements: one text per vendor, the same columns and outcome ----------------------


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


def _upsert(
    table: str, columns: list[tuple[str, str]], tail: str, rows: list[tuple[Any, ...]]
) -> Pending:
    """``INSERT INTO table AS x (columns) <rows> <tail>``; the rows of its RETURNING
    when asked for (in a pipeline: the statements sent meanwhile travel with it).

    PostgreSQL: one statement with one parameter, the rows as a JSON array of arrays
    (serialised by orjson, in C) that the statement casts column by column: a thousand
    rows cost one ``orjson.dumps`` rather than a Python loop per value and column (the
    binary array dumpers). ``jsonb`` columns take their value as it is.
    SQLite: a statement per row (in-process, no round trip), ``GREATEST``/``LEAST``
    spelled ``MAX``/``MIN``, times in the form Django stores.
    """
    if not rows:
        return Pending()
    names = ", ".join(name for name, _ in columns)
    if _postgresql():
        return _sent(
            _json_insert(table, tuple(columns), tail),
            [orjson.dumps(rows).decode()],
            returning="RETURNING" in tail,
        )
    tail = tail.replace("GREATEST(", "MAX(").replace("LEAST(", "MIN(").replace(_CREATED, "NULL")
    marks = ", ".join(["%s"] * len(columns))
    sql = f"INSERT INTO {table} AS x ({names}) VALUES ({marks}) {tail}"
    adapt = connection.ops.adapt_datetimefield_value
    out: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for row in rows:
            values = [adapt(v) if isinstance(v, datetime) else v for v in row]
            cursor.execute(sql, [json.dumps(v) if isinstance(v, dict) else v for v in values])
            if cursor.description:
                out.extend(cursor.fetchall())
    return Pending(rows=out)


class Pending:
    """The rows a statement returns, read the first time they are asked for: in a
    pipeline (:func:`_pipelined`) the statements sent before that go to the database
    together, and none of them waits for another's answer."""

    __slots__ = ("_cursor", "_rows")

    def __init__(self, cursor: Any = None, rows: list[tuple[Any, ...]] | None = None) -> None:
        self._cursor = cursor
        self._rows = rows or []

    def __call__(self) -> list[tuple[Any, ...]]:
        cursor = self._cursor
        if cursor is not None:
            self._cursor = None
            try:
                self._rows = list(cursor.fetchall())
            finally:
                cursor.close()
        return self._rows


def _sent(sql: str, params: list[Any], *, returning: bool) -> Pending:
    """Execute ``sql`` on a binding cursor (PostgreSQL); its rows when asked for
    (``returning``), else nothing to read."""
    cursor = _binding_cursor()
    try:
        cursor.execute(sql, params)
    except BaseException:
        cursor.close()
        raise
    if returning:
        return Pending(cursor)
    cursor.close()
    return Pending()


@contextlib.contextmanager
def _pipelined() -> Iterator[None]:
    """One transaction sent as a pipeline (psycopg's pipeline mode): ``BEGIN`` goes
    with the first statement and ``COMMIT`` with the last ones, so the write waits for
    the database only where it reads what a statement returned (the instances' ids):
    two round trips for a steady write instead of five. Django's connection stays in
    autocommit meanwhile, so the block must not use what needs Django's transaction (an
    atomic block, ``select_for_update``): :meth:`Store.write` runs registrations
    without it."""
    connection.ensure_connection()
    pg = connection.connection
    with connection.wrap_database_errors:
        try:
            with pg.pipeline():
                pg.execute("BEGIN", prepare=False)
                yield
                pg.execute("COMMIT", prepare=False)
        except BaseException:
            # A statement failed (the rest were skipped) or the block raised: the
            # transaction is rolled back; a connection that cannot is closed by the
            # caller's error handling.
            with contextlib.suppress(Exception):
                pg.rollback()
            raise


@functools.cache
def _json_insert(table: str, columns: tuple[tuple[str, str], ...], tail: str) -> str:
    """The PostgreSQL statement of :func:`_upsert`: row ``r``'s value ``i`` is
    ``r->>i`` cast to its column's type (``r->i`` for a ``jsonb`` column)."""
    names = ", ".join(name for name, _ in columns)
    values = ", ".join(
        f"r->{i}" if kind == "jsonb" else f"(r->>{i})::{kind}"
        for i, (_, kind) in enumerate(columns)
    )
    return (
        f"INSERT INTO {table} AS x ({names}) "
        f"SELECT {values} FROM jsonb_array_elements(%s::jsonb) AS r {tail}"
    )


def _binding_cursor() -> Any:
    """A cursor that sends the parameters apart from the statement, in binary (``%b``),
    as Django's ``server_side_binding`` option would: arrays of thousands of values are
    not quoted into the text, and the statements are prepared once per connection.
    Django's execute wrappers and query log still see every statement."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    connection.validate_thread_sharing()
    binding: Any = ServerBindingCursor
    cursor = binding(connection.connection)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


# In the RETURNING of an upsert: whether the row was inserted (PostgreSQL: a row the
# statement updated, or locked earlier in the transaction, has an xmax). SQLite: unknown.
_CREATED = "(x.xmax = 0)"
_RESTART = (
    "(EXCLUDED.started_at IS NOT NULL AND x.started_at IS NOT NULL "
    "AND EXCLUDED.started_at <> x.started_at)"
)
_INSTANCE_COLUMNS = [
    ("service_id", "bigint"),
    ("instance_id", "text"),
    ("hostname", "text"),
    ("pid", "integer"),
    ("library_version", "text"),
    ("started_at", "timestamptz"),
    ("generation", "integer"),
    ("restarts", "integer"),
    ("acked_through", "bigint"),
    ("dropped_transitions", "bigint"),
    ("dropped_reports", "bigint"),
    ("first_seen", "timestamptz"),
    ("last_seen", "timestamptz"),
    # The telemetry watermark: worked out under the rows' locks when the write has
    # reports (Store._watermarks), else kept (or started over by a restart).
    ("telemetry_through", "bigint"),
    ("telemetry_seen", "bigint"),
]
_INSTANCE_TAIL = f"""
ON CONFLICT (service_id, instance_id) DO UPDATE SET
    hostname = EXCLUDED.hostname, pid = EXCLUDED.pid,
    library_version = EXCLUDED.library_version,
    started_at = COALESCE(EXCLUDED.started_at, x.started_at),
    generation = x.generation + CASE WHEN {_RESTART} THEN 1 ELSE 0 END,
    restarts = x.restarts + CASE WHEN {_RESTART} THEN 1 ELSE 0 END,
    acked_through = CASE WHEN {_RESTART} THEN EXCLUDED.acked_through
        ELSE GREATEST(x.acked_through, EXCLUDED.acked_through) END,
    dropped_transitions = x.dropped_transitions
        + LEAST(EXCLUDED.dropped_transitions, {MAX_COUNTER} - x.dropped_transitions),
    dropped_reports = x.dropped_reports
        + LEAST(EXCLUDED.dropped_reports, {MAX_COUNTER} - x.dropped_reports),
    last_seen = GREATEST(x.last_seen, EXCLUDED.last_seen),
    {{telemetry}}
RETURNING id, service_id, instance_id, generation, acked_through, telemetry_through, {_CREATED}
"""
_INSTANCE_PLAIN_TAIL = _INSTANCE_TAIL.replace(
    "{telemetry}",
    f"telemetry_through = CASE WHEN {_RESTART} THEN 0 ELSE x.telemetry_through END, "
    f"telemetry_seen = CASE WHEN {_RESTART} THEN 0 ELSE x.telemetry_seen END",
)
_INSTANCE_TELEMETRY_TAIL = _INSTANCE_TAIL.replace(
    "{telemetry}",
    "telemetry_through = EXCLUDED.telemetry_through, telemetry_seen = EXCLUDED.telemetry_seen",
)
_TRAFFIC_COLUMNS = [
    ("circuit_id", "bigint"),
    ("bucket", "timestamptz"),
    *((name, "bigint") for name in TRAFFIC_COUNTERS),
    ("latency", "jsonb"),
]
_TRAFFIC_TAIL = "ON CONFLICT (circuit_id, bucket) DO UPDATE SET {sums}, {latency}".format(
    sums=", ".join(f"{name} = x.{name} + EXCLUDED.{name}" for name in TRAFFIC_COUNTERS),
    latency="latency = switchyard_latency_add(x.latency, EXCLUDED.latency)",
)
_SHADOW_COUNTERS = ("rejected", "unobserved", "opened", "half_opened", "closed")
_SHADOW_BUCKET_COLUMNS = [
    ("evaluation_id", "bigint"),
    ("bucket", "timestamptz"),
    *((name, "bigint") for name in _SHADOW_COUNTERS),
]
_SHADOW_BUCKET_TAIL = "ON CONFLICT (evaluation_id, bucket) DO UPDATE SET " + ", ".join(
    f"{name} = x.{name} + EXCLUDED.{name}" for name in _SHADOW_COUNTERS
)
_SHADOW_TRANSITION_COLUMNS = [
    ("evaluation_id", "bigint"),
    ("instance_id", "bigint"),
    ("from_state", "text"),
    ("to_state", "text"),
    ("at", "timestamptz"),
    ("reason", "text"),
]
_ROLLOUT_TRAFFIC_COLUMNS = [
    ("rollout_id", "bigint"),
    ("rollout_group", "text"),
    ("bucket", "timestamptz"),
    ("calls", "bigint"),
    ("failures", "bigint"),
    ("slow_calls", "bigint"),
    ("rejected", "bigint"),
    ("latency", "jsonb"),
]
_ROLLOUT_TRAFFIC_TAIL = (
    "ON CONFLICT (rollout_id, rollout_group, bucket) DO UPDATE SET "
    "calls = x.calls + EXCLUDED.calls, failures = x.failures + EXCLUDED.failures, "
    "slow_calls = x.slow_calls + EXCLUDED.slow_calls, "
    "rejected = x.rejected + EXCLUDED.rejected, "
    "latency = switchyard_latency_add(x.latency, EXCLUDED.latency)"
)
_TRANSITION_COLUMNS = [
    ("instance_id", "bigint"),
    ("circuit_id", "bigint"),
    ("generation", "integer"),
    ("seq", "bigint"),
    ("from_state", "text"),
    ("to_state", "text"),
    ("at", "timestamptz"),
    ("reason", "text"),
    ("failure_rate", "double precision"),
    ("calls", "integer"),
    ("failures", "integer"),
    ("config_version", "integer"),
    ("received_at", "timestamptz"),
]
_TRANSITION_TAIL = (
    "ON CONFLICT (instance_id, generation, seq, at) DO NOTHING RETURNING instance_id, seq"
)
_SNAPSHOT_COLUMNS = [
    ("instance_id", "bigint"),
    ("circuit_id", "bigint"),
    ("state", "text"),
    ("config_version", "integer"),
    *((name, "bigint") for name in COUNTERS),
    ("generation", "integer"),
    ("clock", "double precision"),
    ("calls_delta", "bigint"),
    ("failures_delta", "bigint"),
    ("slow_calls_delta", "bigint"),
    ("rejected_delta", "bigint"),
    ("delta_seconds", "double precision"),
    ("failure_rate", "double precision"),
    ("state_since", "timestamptz"),
    ("retry_after", "double precision"),
    ("updated_at", "timestamptz"),
]
_SNAPSHOT_TAIL = """
ON CONFLICT (instance_id, circuit_id) DO UPDATE SET {updates}
WHERE x.generation < EXCLUDED.generation OR (x.generation = EXCLUDED.generation AND (
    x.clock IS NULL OR EXCLUDED.clock IS NULL OR x.clock < EXCLUDED.clock))
RETURNING instance_id, circuit_id
""".format(
    updates=", ".join(
        f"{name} = EXCLUDED.{name}"
        for name, _ in _SNAPSHOT_COLUMNS
        if name not in ("instance_id", "circuit_id")
    )
)
_WATERMARKS = """
SELECT service_id, instance_id, started_at, telemetry_through, telemetry_seen
FROM {table}
WHERE (service_id, instance_id) IN (SELECT * FROM unnest(%b::bigint[], %b::text[]))
ORDER BY service_id, instance_id
FOR UPDATE
""".format(table='"circuits_instance"')
_ACTIVE_ROLLOUTS = """
SELECT r.id, r.circuit_id, f.version, t.version
FROM {rollout} r
JOIN {version} f ON f.id = r.from_version_id
JOIN {version} t ON t.id = r.to_version_id
WHERE r.state = %b AND r.circuit_id = ANY(%b::bigint[])
ORDER BY r.id
""".format(rollout='"circuits_rollout"', version='"circuits_configversion"')
_UNSIGNED = (1 << 64) - 1


def _signed(bits: int) -> int:
    """``bits`` (at most 63 of them) as the signed 64-bit value the column holds."""
    return bits - (1 << 64) if bits >= 1 << 63 else bits


_DELTAS = (0, 2, 3, 4)  # calls, failures, slow_calls, rejected in COUNTERS
_KEY = operator.itemgetter(0, 1)


def _table(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)


# -- the store -------------------------------------------------------------------------------


class Store:
    """This process's caches (circuit ids, the last row of each snapshot) and the write."""

    def __init__(self) -> None:
        self.circuits: dict[int, dict[str, int]] = {}
        self.rows: dict[Key, Row] = {}
        # (service id, instance id) -> (started_at, acked_through, telemetry_through)
        # as last stored.
        self.instances: dict[tuple[int, str], tuple[datetime | None, int, int]] = {}
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Drop every cache (they refill from the database)."""
        with self._lock:
            self.circuits.clear()
            self.rows.clear()
            self.instances.clear()

    def settled(self, item: Item) -> bool:
        """Whether ``item`` may be answered before it is written, or must wait for its
        write: it carries transitions or a dropped count, names a breaker this process
        has not stored yet, or a new start of a process this process stored (what was
        acknowledged belongs to the start before). What may go ahead carries states,
        cumulative counters and telemetry reports, which the agent sends again until an
        answer covers them (a report is stored once however often it comes:
        :mod:`.reports`). Its ``acked_through`` and ``telemetry_through`` are what this
        process last stored of the process, or 0 for one it has not stored: the first
        sync of a new instance (a registration) acknowledges nothing, so it need not
        wait for its instance row."""
        sync = item.sync
        if sync.transitions or sync.dropped_transitions or sync.dropped_reports:
            return False
        known = self.instances.get((item.service_id, sync.instance.id))
        if known is not None and known[0] != sync.instance.started_at:
            return False
        circuits = self.circuits.get(item.service_id)
        if circuits is None or not _named(sync) <= circuits.keys():
            return False
        item.acked_through, item.telemetry_through = (0, 0) if known is None else known[1:]
        return True

    def write(self, items: list[Item], *, publish: bool = True) -> Written:
        """Store ``items`` in one transaction (the caller's, or one of its own) and set
        each one's ``acked_through``, or its ``error`` (a refused sync: nothing of it is
        written). Events go out once the transaction commits, or (``publish=False``)
        are left in the result for the caller to deliver.

        On PostgreSQL, outside a caller's transaction, a write that registers nothing
        is sent as a pipeline (:func:`_pipelined`)."""
        now = timezone.now()
        result = Written(syncs=len(items))
        with _pipelined() if self._pipelines(items) else transaction.atomic():
            circuits = self._circuits(items)
            accepted = [item for item in items if item.error is None]
            rollouts = self._rollouts(accepted, circuits)
            instances, reports, created = self._instances(accepted)
            for item in accepted:
                found = instances.get((item.service_id, item.sync.instance.id))
                if found is not None:
                    item.acked_through, item.telemetry_through = found[2], found[3]
            accepted = [item for item in accepted if item.error is None]
            stored_transitions = self._transitions(accepted, circuits, instances, now)
            rows, changed, read, stored_rows = self._snapshots(
                accepted, circuits, instances, now, created
            )
            grown = self._traffic(reports, circuits)
            self._shadows(reports, circuits, instances)
            if grown:
                self._rollout_traffic(reports, circuits, instances, rollouts())
        # Committed (or, in a caller's transaction, written): what the statements
        # returned is read now, in a pipeline all of it at once.
        new = {(pk, seq) for pk, seq in stored_transitions()}
        kept = {(pk, cid) for pk, cid in stored_rows()}
        rows = {key: row for key, row in rows.items() if key in kept}
        changed = [change for change in changed if change[2] in kept]
        result.traffic = len(grown)
        result.instances = len(instances)
        result.transitions_new = len(new)
        result.snapshots = len(rows)
        result.events = _events(accepted, circuits, instances, new, changed)
        if grown:
            result.events.append(events.traffic_event(sorted({c for c, _ in grown})))
        seen = {
            (item.service_id, item.sync.instance.id): (
                item.sync.instance.started_at,
                item.acked_through,
                item.telemetry_through,
            )
            for item in accepted
        }
        cache = {**read, **rows}
        # At once, or when the caller's transaction commits.
        transaction.on_commit(lambda: self._committed(circuits, cache, seen), robust=True)
        if publish:
            events.publish(*result.events)
        return result

    def _pipelines(self, items: list[Item]) -> bool:
        """Whether the write of ``items`` may go as a pipeline: PostgreSQL, no caller's
        transaction, and every breaker the syncs name known to this process (a
        registration locks the service's row through Django's transaction)."""
        if not _postgresql() or connection.in_atomic_block or not connection.get_autocommit():
            return False
        for item in items:
            circuits = self.circuits.get(item.service_id)
            if circuits is None or not _named(item.sync) <= circuits.keys():
                return False
        return True

    # 1. circuits

    def _circuits(self, items: list[Item]) -> dict[int, dict[str, int]]:
        """Circuit ids by service and name, registering the new ones; refuses the syncs
        that name circuits beyond the service's limit or transitions of unknown breakers."""
        known: dict[int, dict[str, int]] = {}
        missing: dict[int, set[str]] = {}
        for item in items:
            cached = self.circuits.get(item.service_id, {})
            if item.service_id not in known:
                known[item.service_id] = dict(cached)
            unknown = _named(item.sync) - cached.keys()
            if unknown:
                missing.setdefault(item.service_id, set()).update(unknown)
        if not missing:
            return known
        for service_id in sorted(missing):
            known[service_id] = dict(
                Circuit.objects.filter(service_id=service_id).values_list("name", "pk")
            )
        for item in items:
            ids = known[item.service_id]
            reported = {b.name for b in item.sync.breakers}
            strays = {
                f"transitions[{index}].breaker": t.breaker
                for index, t in enumerate(item.sync.transitions)
                if t.breaker not in ids and t.breaker not in reported
            }
            strays.update(
                (f"telemetry[{index}].breakers[{position}].name", g.name)
                for index, r in enumerate(item.sync.telemetry)
                for position, g in enumerate(r.breakers)
                if g.name not in ids and g.name not in reported
            )
            if strays:
                item.error = SyncError(
                    400,
                    {
                        path: f"unknown breaker {name!r}: report it in breakers first"
                        for path, name in list(strays.items())[:50]
                    },
                )
        for service_id in sorted(missing):
            found = known[service_id]
            if missing[service_id] - found.keys():
                self._register(
                    service_id,
                    [i for i in items if i.service_id == service_id and i.error is None],
                    found,
                )
        return known

    def _register(self, service_id: int, items: list[Item], known: dict[str, int]) -> None:
        """New circuits of one service, each with the reporting agent's config as
        version 1. Serialised per service by its row's lock (any process), so the
        limit holds exactly."""
        Service.objects.select_for_update().filter(pk=service_id).values_list("pk").get()
        known.clear()
        known.update(Circuit.objects.filter(service_id=service_id).values_list("name", "pk"))
        limit = settings.SWITCHYARD_MAX_CIRCUITS_PER_SERVICE
        new: dict[str, tuple[Breaker, str]] = {}
        for item in items:
            wanted = [
                (index, b)
                for index, b in enumerate(item.sync.breakers)
                if b.name not in known and b.name not in new
            ]
            room = max(0, limit - len(known) - len(new))
            if len(wanted) > room:
                item.error = SyncError(
                    400,
                    {
                        f"breakers[{index}].name": (
                            f"the service has {len(known) + len(new)} circuits and at most "
                            f"{limit} are allowed (SWITCHYARD_MAX_CIRCUITS_PER_SERVICE): "
                            f"{b.name!r} is not registered"
                        )
                        for index, b in wanted[room:][:50]
                    },
                )
                continue
            for _, b in wanted:
                new[b.name] = (b, item.sync.instance.id)
        if not new:
            return
        created = Circuit.objects.bulk_create(
            [Circuit(service_id=service_id, name=name) for name in sorted(new)]
        )
        versions = ConfigVersion.objects.bulk_create(
            [
                ConfigVersion(
                    circuit=circuit,
                    version=1,
                    config=CircuitBreakerConfig.from_dict(
                        config_of(new[circuit.name][0]) or {}
                    ).to_dict(),
                    source=ConfigSource.AGENT,
                    reason=f"registered by instance {new[circuit.name][1]}",
                )
                for circuit in created
            ]
        )
        for circuit, version in zip(created, versions, strict=True):
            circuit.current_config = version
            known[circuit.name] = circuit.pk
        Circuit.objects.bulk_update(created, ["current_config"])

    # 2. instances

    def _instances(
        self, items: list[Item]
    ) -> tuple[
        dict[tuple[int, str], tuple[int, int, int, int]], list[tuple[Item, Report]], set[int]
    ]:
        """(service id, instance id) -> (pk, generation, acked_through,
        telemetry_through), after the upsert of every reporting process; the telemetry
        reports stored for the first time; the pks of the instances it inserted
        (PostgreSQL: they have no snapshot to read). Several syncs of one process in one
        write merge: the latest values, the highest id, the dropped counts added up."""
        merged: dict[tuple[int, str], list[Any]] = {}
        telemetry = any(item.sync.telemetry for item in items)
        marks = self._watermarks(items) if telemetry else {}
        reports: list[tuple[Item, Report]] = []
        for item in items:
            info = item.sync.instance
            key = (item.service_id, info.id)
            acked = max((t.id for t in item.sync.transitions), default=0)
            dropped = item.sync.dropped_transitions
            row = merged.get(key)
            if row is None:
                merged[key] = [
                    item.service_id,
                    info.id,
                    info.hostname or "",
                    info.pid,
                    info.library_version or "",
                    info.started_at,
                    0,
                    0,
                    acked,
                    dropped,
                    item.sync.dropped_reports,
                    item.received,
                    item.received,
                ]
            else:
                if info.started_at is not None and info.started_at != row[5]:
                    # Two starts of one process in one write: the later one is refused
                    # (a retryable 503) and its agent sends it again.
                    item.error = unavailable(
                        "another start of this process is being stored; send it again"
                    )
                    continue
                row[2:5] = [info.hostname or "", info.pid, info.library_version or ""]
                row[8] = max(row[8], acked)
                row[9] = min(MAX_COUNTER, row[9] + dropped)
                row[10] = min(MAX_COUNTER, row[10] + item.sync.dropped_reports)
                row[12] = max(row[12], item.received)
            if telemetry:
                mark = marks.setdefault(key, Watermark())
                reports.extend((item, r) for r in item.sync.telemetry if mark.take(r.seq))
        for key, row in merged.items():
            mark = marks.get(key) or Watermark()
            row.extend((mark.through, _signed(mark.seen)))
        tail = _INSTANCE_TELEMETRY_TAIL if telemetry else _INSTANCE_PLAIN_TAIL
        rows = [tuple(merged[key]) for key in sorted(merged)]  # one lock order everywhere
        stored = _upsert(_table(Instance), _INSTANCE_COLUMNS, tail, rows)()
        found = {(sid, iid): (pk, gen, acked, tel) for pk, sid, iid, gen, acked, tel, _ in stored}
        created = {row[0] for row in stored if row[6]}
        return found, [(item, r) for item, r in reports if item.error is None], created

    def _watermarks(self, items: list[Item]) -> dict[tuple[int, str], Watermark]:
        """The telemetry watermark of each process ``items`` name, read under its row's
        lock (held to the end of the write) so that concurrent writes of one process
        wait for each other; a process not stored yet, or started anew by one of
        ``items``, starts from nothing."""
        keys = sorted({(item.service_id, item.sync.instance.id) for item in items})
        if _postgresql():
            with _binding_cursor() as cursor:
                cursor.execute(_WATERMARKS, [[k[0] for k in keys], [k[1] for k in keys]])
                found = cursor.fetchall()
        else:
            found = []
            for service_id in sorted({k[0] for k in keys}):
                found.extend(
                    Instance.objects.filter(
                        service_id=service_id,
                        instance_id__in=[k[1] for k in keys if k[0] == service_id],
                    ).values_list(
                        "service_id",
                        "instance_id",
                        "started_at",
                        "telemetry_through",
                        "telemetry_seen",
                    )
                )
        started = {
            (item.service_id, item.sync.instance.id): item.sync.instance.started_at
            for item in items
        }
        marks: dict[tuple[int, str], Watermark] = {}
        for service_id, instance_id, started_at, through, seen in found:
            key = (service_id, instance_id)
            new = started.get(key)
            if new is not None and started_at is not None and new != started_at:
                continue  # a new start: its seqs start over
            marks[key] = Watermark(through, seen & _UNSIGNED)
        return marks

    # 5. traffic

    def _traffic(
        self, reports: list[tuple[Item, Report]], circuits: Mapping[int, Mapping[str, int]]
    ) -> list[tuple[int, datetime]]:
        """Add the new reports to the traffic rows of their circuits and buckets; the
        (circuit id, bucket) of each row added to."""
        if not reports:
            return []
        traffic: Traffic = {}
        for item, report in reports:
            add_up(traffic, report, circuits[item.service_id])
        rows = list(reports_rows(traffic))
        _upsert(_table(Traffic10s), _TRAFFIC_COLUMNS, _TRAFFIC_TAIL, rows)
        return [(row[0], row[1]) for row in rows]

    def _shadows(
        self,
        reports: list[tuple[Item, Report]],
        circuits: Mapping[int, Mapping[str, int]],
        instances: Mapping[tuple[int, str], tuple[int, int, int, int]],
    ) -> None:
        """Add what the new reports' shadow candidates would have done to their
        evaluations' buckets and transitions (docs/traffic.md, "Shadow evaluation").
        An entry of an evaluation that is not one of its circuit's (ended and deleted,
        or another circuit's) is left out."""
        entries = [
            (item, report, growth)
            for item, report in reports
            for growth in report.breakers
            if growth.shadow is not None
        ]
        if not entries:
            return
        ids = {growth.shadow.evaluation for _, _, growth in entries if growth.shadow}
        owner = dict(ShadowEvaluation.objects.filter(pk__in=ids).values_list("pk", "circuit_id"))
        buckets: dict[tuple[int, datetime], list[int]] = {}
        moves: list[tuple[Any, ...]] = []
        for item, report, growth in entries:
            shadow = growth.shadow
            assert shadow is not None
            if owner.get(shadow.evaluation) != circuits[item.service_id][growth.name]:
                continue
            key = (shadow.evaluation, datetime.fromtimestamp(report.bucket, tz=UTC))
            sums = buckets.setdefault(key, [0] * len(_SHADOW_COUNTERS))
            for i, name in enumerate(_SHADOW_COUNTERS):
                sums[i] += getattr(shadow, name)
            instance_pk = instances[(item.service_id, item.sync.instance.id)][0]
            moves.extend(
                (shadow.evaluation, instance_pk, t.from_state, t.to_state, t.at, t.reason)
                for t in shadow.transitions
            )
        rows = [(*key, *sums) for key, sums in sorted(buckets.items())]
        _upsert(_table(ShadowBucket), _SHADOW_BUCKET_COLUMNS, _SHADOW_BUCKET_TAIL, rows)
        _upsert(_table(ShadowTransition), _SHADOW_TRANSITION_COLUMNS, "", moves)

    def _rollouts(self, items: list[Item], circuits: Mapping[int, Mapping[str, int]]) -> Pending:
        """(rollout pk, circuit id, from version, to version) of each active rollout of a
        circuit the telemetry of ``items`` names, when asked for. Sent first: in a
        pipeline it comes back with the first statement whose answer the write waits
        for, costing no round trip of its own."""
        ids = sorted(
            {
                circuits[item.service_id][growth.name]
                for item in items
                for report in item.sync.telemetry
                for growth in report.breakers
            }
        )
        if not ids:
            return Pending()
        if not _postgresql():
            return Pending(
                rows=list(
                    Rollout.objects.filter(state=RolloutState.ACTIVE, circuit_id__in=ids)
                    .order_by("pk")
                    .values_list("pk", "circuit_id", "from_version__version", "to_version__version")
                )
            )
        return _sent(_ACTIVE_ROLLOUTS, [str(RolloutState.ACTIVE), ids], returning=True)

    def _rollout_traffic(
        self,
        reports: list[tuple[Item, Report]],
        circuits: Mapping[int, Mapping[str, int]],
        instances: Mapping[tuple[int, str], tuple[int, int, int, int]],
        rollouts: list[tuple[Any, ...]],
    ) -> int:
        """Add the new reports of circuits with an active rollout (``rollouts``:
        :meth:`_rollouts`) to the rollout's group of the version their instance runs (its
        report in the same sync, else the last row stored); the rows added to."""
        active = {
            circuit_id: (pk, {to: RolloutGroup.CANARY, old: RolloutGroup.BASELINE})
            for pk, circuit_id, old, to in rollouts
        }
        if not active:
            return 0
        groups: dict[tuple[int, str, datetime], list[Any]] = {}
        for item, report in reports:
            ids = circuits[item.service_id]
            running = {b.name: b.config_version for b in item.sync.breakers}
            found = instances.get((item.service_id, item.sync.instance.id))
            bucket = datetime.fromtimestamp(report.bucket, tz=UTC)
            for growth in report.breakers:
                circuit_id = ids[growth.name]
                if circuit_id not in active:
                    continue
                version = running.get(growth.name)
                if version is None and found is not None:
                    row = self.rows.get((found[0], circuit_id))
                    version = row.config_version if row is not None else None
                rollout_id, by_version = active[circuit_id]
                group = by_version.get(version) if version is not None else None
                if group is None:
                    continue  # neither version (yet): counted in neither group
                sums = groups.setdefault((rollout_id, group, bucket), [0, 0, 0, 0, {}])
                sums[0] += growth.calls
                sums[1] += growth.failures
                sums[2] += growth.slow_calls
                sums[3] += growth.rejected
                for index, count in growth.latency:
                    if count:
                        sums[4][str(index)] = sums[4].get(str(index), 0) + count
        rows = [(*key, *sums[:5]) for key, sums in sorted(groups.items())]
        _upsert(_table(RolloutTraffic), _ROLLOUT_TRAFFIC_COLUMNS, _ROLLOUT_TRAFFIC_TAIL, rows)
        return len(rows)

    # 3. transitions

    def _transitions(
        self,
        items: list[Item],
        circuits: Mapping[int, Mapping[str, int]],
        instances: Mapping[tuple[int, str], tuple[int, int, int, int]],
        now: datetime,
    ) -> Pending:
        """Insert the transitions of ``items`` (a replayed one is skipped); the
        (instance pk, id) of each one stored for the first time, when asked for."""
        rows: list[tuple[Any, ...]] = []
        for item in items:
            if item.error is not None or not item.sync.transitions:
                continue
            pk, generation = instances[(item.service_id, item.sync.instance.id)][:2]
            ids = circuits[item.service_id]
            rows.extend(
                (
                    pk,
                    ids[t.breaker],
                    generation,
                    t.id,
                    t.from_state,
                    t.to_state,
                    t.at,
                    t.reason,
                    t.failure_rate,
                    t.calls,
                    t.failures,
                    t.config_version,
                    now,
                )
                for t in item.sync.transitions
            )
        rows.sort(key=lambda r: (r[0], r[2], r[3]))
        return _upsert(_table(Transition), _TRANSITION_COLUMNS, _TRANSITION_TAIL, rows)

    # 4. snapshots

    def _snapshots(
        self,
        items: list[Item],
        circuits: Mapping[int, Mapping[str, int]],
        instances: Mapping[tuple[int, str], tuple[int, int, int, int]],
        now: datetime,
        created: set[int],
    ) -> tuple[dict[Key, Row], list[Change], dict[Key, Row], Pending]:
        """Write the rows due; returns them, the state changes, the rows read from the
        database as bases (both go to the cache: a process that reads an instance's rows
        once does not read them again on its next sync), and the keys of the rows the
        upsert wrote (one that a later sync of the agent's had written is kept): the
        rest of the rows and changes do not count."""
        latest: dict[Key, tuple[Item, Breaker, int]] = {}
        named: set[Key] = set()  # snapshots a transition of their sync names
        for item in items:
            if item.error is not None:
                continue
            pk, generation = instances[(item.service_id, item.sync.instance.id)][:2]
            ids = circuits[item.service_id]
            named.update((pk, ids[t.breaker]) for t in item.sync.transitions)
            for b in item.sync.breakers:
                key = (pk, ids[b.name])
                old = latest.get(key)
                if old is None or _later(item, old[0]):
                    latest[key] = (item, b, generation)
        rows_cached = self.rows
        bases = self._bases(latest, created)
        read = {key: row for key, row in bases.items() if key not in rows_cached}
        counter_seconds = float(settings.SWITCHYARD_SYNC_COUNTER_SECONDS)
        rows: list[tuple[Any, ...]] = []
        written: dict[Key, Row] = {}
        changed: list[Change] = []
        for key, (item, b, generation) in latest.items():
            clock = item.sync.clock
            base = bases.get(key)
            if (
                base is not None
                and base.generation == generation
                and base.state == b.state
                and base.config_version == b.config_version
                and key not in named
            ):
                # Counters alone may have moved: written once their cadence is due, or
                # once more at zero growth after they stop.
                if (
                    clock is not None
                    and base.clock is not None
                    and 0.0 <= clock - base.clock < counter_seconds
                ):
                    continue
                counters = b.counters()
                if counters == base.counters and not base.growing:
                    continue
            else:
                counters = b.counters()
            if (
                base is not None
                and base.generation == generation
                and min(map(operator.sub, counters, base.counters)) >= 0
                and (clock is None or base.clock is None or clock >= base.clock)
            ):
                deltas = [counters[i] - base.counters[i] for i in _DELTAS]
                seconds = (
                    clock - base.clock if clock is not None and base.clock is not None else None
                )
                if seconds is not None and seconds <= 0:
                    seconds = None
            else:
                # First sight, or a new process: the counters grew from zero since it
                # started, which its clock counts from.
                deltas = [counters[i] for i in _DELTAS]
                seconds = clock if clock else None
            rows.append(
                (
                    *key,
                    b.state,
                    b.config_version,
                    *counters,
                    generation,
                    clock,
                    *deltas,
                    seconds,
                    b.failure_rate,
                    b.state_since,
                    b.retry_after,
                    now,
                )
            )
            written[key] = Row(generation, clock, counters, b.state, b.config_version, any(deltas))
            previous = base.state if base is not None else None
            if base is None or base.state != b.state or base.config_version != b.config_version:
                changed.append((item, b, key, previous))
        rows.sort(key=_KEY)  # one lock order for every process
        stored = _upsert(_table(Snapshot), _SNAPSHOT_COLUMNS, _SNAPSHOT_TAIL, rows)
        return written, changed, read, stored

    def _bases(self, latest: Mapping[Key, Any], created: set[int]) -> dict[Key, Row]:
        """The previous row of each snapshot: from the cache, else from the database (all
        rows of an instance at once, each of them returned); none for an instance this
        write inserted (``created``)."""
        rows = self.rows
        bases = {key: rows[key] for key in latest if key in rows}
        unread = {key[0] for key in latest if key not in bases} - created
        if unread:
            for values in Snapshot.objects.filter(instance_id__in=unread).values_list(
                "instance_id",
                "circuit_id",
                "generation",
                "clock",
                *COUNTERS,
                "state",
                "config_version",
                "calls_delta",
                "failures_delta",
                "slow_calls_delta",
                "rejected_delta",
            ):
                key = (values[0], values[1])
                if key not in bases:
                    bases[key] = Row(
                        values[2],
                        values[3],
                        tuple(values[4:10]),
                        values[10],
                        values[11],
                        any(values[12:16]),
                    )
        return bases

    def _committed(
        self,
        circuits: dict[int, dict[str, int]],
        rows: dict[Key, Row],
        instances: dict[tuple[int, str], tuple[datetime | None, int, int]],
    ) -> None:
        with self._lock:
            if len(self.instances) + len(instances) > INSTANCES_MAX:
                self.instances.clear()
            self.instances.update(instances)
            if len(self.circuits) + len(circuits) > CIRCUITS_MAX:
                self.circuits.clear()
            self.circuits.update(circuits)
            if len(self.rows) + len(rows) > ROWS_MAX:
                self.rows.clear()
            self.rows.update(rows)


def _named(sync: Sync) -> set[str]:
    """The breakers a sync names: reported, in a transition, in a telemetry report."""
    names = {b.name for b in sync.breakers}
    names.update(t.breaker for t in sync.transitions)
    names.update(g.name for r in sync.telemetry for g in r.breakers)
    return names


def _later(a: Item, b: Item) -> bool:
    """Whether sync ``a`` was taken after ``b`` (the agent's clock, else arrival)."""
    if a.sync.clock is not None and b.sync.clock is not None:
        return a.sync.clock >= b.sync.clock
    return a.received >= b.received


def _events(
    items: Iterable[Item],
    circuits: Mapping[int, Mapping[str, int]],
    instances: Mapping[tuple[int, str], tuple[int, int, int, int]],
    new: set[tuple[int, int]],
    changed: list[Change],
) -> list[events.FleetEvent]:
    """One "fleet.transitions" event per service, one "fleet.snapshots" per instance."""
    transitions: dict[tuple[int, str], list[events.TransitionItem]] = {}
    for item in items:
        if item.error is not None:
            continue
        pk = instances[(item.service_id, item.sync.instance.id)][0]
        ids = circuits[item.service_id]
        for t in item.sync.transitions:
            if (pk, t.id) in new:
                new.discard((pk, t.id))  # once, even if sent twice in one write
                transitions.setdefault((item.service_id, item.service), []).append(
                    events.transition_item(
                        circuit_id=ids[t.breaker],
                        circuit=t.breaker,
                        instance=item.sync.instance.id,
                        from_state=t.from_state,
                        to_state=t.to_state,
                        at=format_timestamp(t.at),
                        reason=t.reason,
                    )
                )
    batch: list[events.FleetEvent] = [
        events.transitions_event(service_id=sid, service=name, transitions=found)
        for (sid, name), found in transitions.items()
    ]
    snapshots: dict[tuple[int, str, str], list[events.SnapshotItem]] = {}
    for item, b, (_, circuit_id), previous in changed:
        snapshots.setdefault((item.service_id, item.service, item.sync.instance.id), []).append(
            {
                "circuit_id": circuit_id,
                "circuit": b.name,
                "state": b.state,
                "previous_state": previous,
                "config_version": b.config_version,
            }
        )
    batch.extend(
        events.snapshots_event(service_id=sid, service=name, instance=inst, snapshots=found)
        for (sid, name, inst), found in snapshots.items()
    )
    return batch


# -- group commit ----------------------------------------------------------------------------


class GroupCommit:
    """Queues syncs from the event loops of this process; one thread writes them as soon
    as the previous write committed. A sync that waits for its write is written at once
    when idle; under load the next batch is what arrived meanwhile. A sync answered
    before its write (:meth:`Store.settled`) goes with the next write of one that waits,
    or on its own once the oldest of them has been queued ``SETTLED_DELAY`` seconds or
    ``MAX_SYNCS_PER_WRITE`` of them are: a sync that waits never queues behind a write of
    syncs already answered when nothing else was due."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiting: list[Item] = []
        self._settled: list[Item] = []
        self._settled_since = 0.0  # monotonic moment the oldest settled sync was queued
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self.writes = 0  # transactions that stored something (tests, benchmarks)

    async def accept(self, item: Item) -> None:
        """Return once ``item`` may be answered: at once if the store says it is
        settled (it is written within ``SETTLED_DELAY``), else once it is stored (or
        refused: its ``error`` says why)."""
        if not self.store.settled(item):
            await self.submit(item)
            return
        self._enqueue(item)

    async def submit(self, item: Item) -> None:
        """Return once ``item`` is stored (or refused: its ``error`` says why)."""
        loop = asyncio.get_running_loop()
        item.loop, item.done = loop, loop.create_future()
        self._enqueue(item)
        await asyncio.shield(item.done)

    def _enqueue(self, item: Item) -> None:
        with self._lock:
            if item.done is not None:
                self._waiting.append(item)
            else:
                if not self._settled:
                    self._settled_since = time.monotonic()
                self._settled.append(item)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="switchyard-sync-store", daemon=True
                )
                self._thread.start()
            self._ready.notify()

    def _take(self) -> tuple[list[Item], float | None]:
        """The next batch (called with the lock held), else how long to wait for one
        (None: until a sync is queued)."""
        settled = self._settled
        if self._waiting:
            items = self._waiting[:MAX_SYNCS_PER_WRITE]
            del self._waiting[:MAX_SYNCS_PER_WRITE]
        elif not settled:
            return [], None
        else:
            items = []
            wait = self._settled_since + SETTLED_DELAY - time.monotonic()
            if wait > 0 and len(settled) < MAX_SYNCS_PER_WRITE:
                return [], wait
        room = MAX_SYNCS_PER_WRITE - len(items)
        if room > 0 and settled:
            items.extend(settled[:room])
            del settled[:room]
            self._settled_since = time.monotonic()
        return items, None

    def _run(self) -> None:
        # The event loop's thread holds the GIL while it serves requests; the default
        # 5 ms switch interval would make this thread wait that long after each of its
        # round trips to the database. A short interval hands it over promptly.
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        while True:
            with self._lock:
                items, wait = self._take()
                while not items:
                    self._ready.wait(wait)
                    items, wait = self._take()
            self.write(items)

    def write(self, items: list[Item]) -> None:
        """Write ``items`` (retrying a deadlock) and wake their syncs, whatever happens."""
        written: list[events.FleetEvent] = []
        try:
            reconnected = False
            for attempt in range(WRITE_ATTEMPTS):
                try:
                    written = self.store.write(items, publish=False).events
                    self.writes += 1
                    break
                except DatabaseError as exc:
                    if attempt + 1 == WRITE_ATTEMPTS:
                        raise
                    if database_unavailable(exc) and not reconnected:
                        # The connection this thread held may have died with the
                        # network or the server since the last write: once, a live one.
                        reconnected = True
                        _usable_connection()
                    elif not _is_deadlock(exc):
                        raise
                    for item in items:
                        item.error = None
        except Exception as exc:
            logger.warning("sync store: write of %d syncs failed: %r", len(items), exc)
            self.store.forget()
            with contextlib.suppress(Exception):
                connection.close()
            refusal = unavailable("could not store the sync; send it again")
            for item in items:
                item.error = refusal
        finally:
            for item in items:
                if item.done is not None and item.loop is not None:
                    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                        item.loop.call_soon_threadsafe(_settle, item.done)
        # The syncs are answered first; the dashboards and watchers hear of it next.
        if written:
            events.deliver(*written)


def _usable_connection() -> None:
    """Take a connection that answers: after a failure, the pool's idle connections may
    be ones the database (or the network) dropped meanwhile; each is tried once and
    discarded, so the first write after an outage does not fail on a dead one. A
    database that is still away fails the connect itself, within the pool's timeout."""
    for _ in range(CONNECTION_PROBES):
        connection.close()
        connection.ensure_connection()
        if connection.is_usable():
            return


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _is_deadlock(exc: BaseException) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) in {"40P01", "40001"}


_store = Store()
_group: GroupCommit | None = None
_group_lock = threading.Lock()


def get_store() -> Store:
    """This process's store."""
    return _store


def get_group_commit() -> GroupCommit:
    """This process's group commit (its thread starts with the first sync)."""
    global _group
    with _group_lock:
        if _group is None:
            _group = GroupCommit(_store)
        return _group
