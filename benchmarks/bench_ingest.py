"""Agent intake at fleet scale: the real ASGI server over HTTP, and a plain psycopg peer.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python benchmarks/bench_ingest.py --instances 2000 --breakers 20 \\
        --workers 2 --mode both --concurrency 32 --interval 5 --duration 20

What it does, all on this machine:

1. Creates a scratch database on the DATABASE_URL server, migrates it, creates one
   service and its agent token.
2. Starts uvicorn (``--workers`` processes, DEBUG=0, the Redis change feed) serving
   ``controlplane.asgi`` from ``--server-root`` (default: this checkout; point it at an
   export of another commit to measure that code in the same run).
3. Registration phase: every simulated instance sends its first sync (all breakers, each
   with the config object the real agent sends); the phase ends once every instance row
   and its snapshots are in the database (a registration is answered before its write).
4. Steady phase, the payload mix of a fleet: counters grow on every sync; 70% of syncs
   carry no transition, 25% one, 5% five (each flips the breaker's reported state);
   each carries one telemetry report (docs/traffic.md) with every breaker's growth and
   eight latency buckets (``--no-telemetry``: none).
   ``saturation``: ``--concurrency`` keep-alive connections send back to back.
   ``offered``: every instance syncs every ``--interval`` seconds on its own kept-alive
   connection (kept from round to round, as an agent keeps it between syncs), at a
   fixed phase; latency counts from the scheduled moment (no coordinated omission).
5. The reference, in the same run: plain psycopg, one transaction per sync, writing the
   same rows (instance lock, snapshot upsert, transition insert, traffic upsert,
   instance update) from ``--concurrency`` connections.

Prints syncs/s, p50/p95/p99 latency, errors (non-200 answers, or an ``acked_through``
below the transitions sent), and CPU per sync: the server's processes and the
PostgreSQL backends of the scratch database, from /proc (utime + stime). For the
reference, "server" is this process (it parses and writes). The ratio is the server's
saturation rate over the reference's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYNC_PATH = "/api/v1/agent/sync"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STATES = ("closed", "open")
TIMEOUT = 10.0  # seconds, the agent's default request timeout


# -- scratch database --------------------------------------------------------------------


def scratch_database(server_url: str) -> tuple[str, str]:
    """Create a scratch database on the server; returns (its URL, its name)."""
    parts = urlsplit(server_url)
    name = f"switchyard_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), name


def drop_database(server_url: str, name: str) -> None:
    admin_url = urlunsplit(urlsplit(server_url)._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare(database_url: str, server_root: Path) -> tuple[int, str, str]:
    """Migrate and create the service and its token; returns (service id, name, token)."""
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "1"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=server_root, env=env, check=True
    )
    script = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
        "'controlplane.settings'); django.setup()\n"
        "from controlplane.circuits.models import Service\n"
        "from controlplane.circuits.auth import create_agent_token\n"
        "s = Service.objects.create(name='bench')\n"
        "print(s.pk, create_agent_token(s)[1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=server_root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[-2]), "bench", out[-1]


# -- CPU from /proc ----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


class CpuMeter:
    """CPU seconds of a set of processes between start() and stop()."""

    def __init__(self, pids: Any) -> None:
        self._pids = pids  # a callable returning the pids to count now
        self._start: dict[int, float] = {}

    def start(self) -> None:
        self._start = {pid: cpu_seconds(pid) for pid in self._pids()}

    def stop(self) -> float:
        pids = set(self._pids()) | set(self._start)
        return sum(max(0.0, cpu_seconds(p) - self._start.get(p, 0.0)) for p in pids)


def backend_pids(admin_url: str, database: str) -> list[int]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        ).fetchall()
    return [int(r[0]) for r in rows]


# -- the simulated fleet -----------------------------------------------------------------


def default_config() -> dict[str, Any]:
    from breakers.config import CircuitBreakerConfig

    return CircuitBreakerConfig().to_dict()


@dataclass
class SimInstance:
    """One simulated agent process."""

    index: int
    breakers: int
    config: dict[str, Any]
    started_at: str = "2026-11-28T04:00:00.000000Z"
    # The agent's monotonic clock: seconds since its library started (an hour ago).
    origin: float = field(default_factory=lambda: time.monotonic() - 3600.0)
    states: list[str] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    next_tid: int = 1
    syncs: int = 0
    # Telemetry reports (docs/traffic.md): one per steady sync, as an agent whose last
    # report was acknowledged sends.
    telemetry: bool = True
    report_seq: int = 0

    def __post_init__(self) -> None:
        self.states = ["closed"] * self.breakers
        self.calls = [0] * self.breakers

    @property
    def instance_id(self) -> str:
        return f"inst-{self.index:05d}"

    def body(self, rng: random.Random, *, steady: bool) -> tuple[bytes, int]:
        """The next sync body, and the highest transition id it carries (0 if none)."""
        transitions: list[dict[str, Any]] = []
        if steady:
            roll = rng.random()
            count = 0 if roll < 0.70 else 1 if roll < 0.95 else 5
            for _ in range(count):
                b = rng.randrange(self.breakers)
                old = self.states[b]
                new = STATES[1 - STATES.index(old)]
                self.states[b] = new
                transitions.append(
                    {
                        "id": self.next_tid,
                        "breaker": f"dep_{b}",
                        "from": old,
                        "to": new,
                        "at": "2026-11-28T04:10:00.000000Z",
                        "reason": "failure_rate" if new == "open" else "probes_succeeded",
                        "failure_rate": 0.6,
                        "calls": 20,
                        "failures": 12,
                        "config_version": 1,
                    }
                )
                self.next_tid += 1
            grown = [rng.randrange(1, 50) for _ in range(self.breakers)]
            for b in range(self.breakers):
                self.calls[b] += grown[b]
        self.syncs += 1
        reports: list[dict[str, Any]] = []
        if steady and self.telemetry:
            self.report_seq += 1
            reports.append(
                {
                    "seq": self.report_seq,
                    "bucket": int(time.time()) // 10 * 10,
                    "breakers": [
                        {
                            "name": f"dep_{b}",
                            "calls": grown[b],
                            "successes": grown[b] - grown[b] // 10,
                            "failures": grown[b] // 10,
                            # Latencies around 5-50 ms: eight buckets of the library's.
                            "latency": [
                                [60 + k, grown[b] // 8 + (k < grown[b] % 8)] for k in range(8)
                            ],
                        }
                        for b in range(self.breakers)
                    ],
                }
            )
        body = {
            "protocol": 1,
            "service": "bench",
            "clock": time.monotonic() - self.origin,
            "instance": {
                "id": self.instance_id,
                "hostname": f"host-{self.index % 100}",
                "pid": 1000 + self.index,
                "started_at": self.started_at,
                "library_version": "0.1.0",
            },
            "breakers": [
                {
                    "name": f"dep_{b}",
                    "state": self.states[b],
                    "config_version": 1,
                    "config": self.config,
                    "calls": self.calls[b],
                    "successes": self.calls[b] - self.calls[b] // 10,
                    "failures": self.calls[b] // 10,
                    "slow_calls": 0,
                    "rejected": 0,
                    "failure_rate": 0.1,
                    "trip_count": self.next_tid // 2,
                    "state_since": "2026-11-28T04:00:00.000000Z",
                    "retry_after": None,
                }
                for b in range(self.breakers)
            ],
            "transitions": transitions,
            "dropped_transitions": 0,
        }
        if reports:
            body["telemetry"] = reports
        return orjson.dumps(body), (transitions[-1]["id"] if transitions else 0)


# -- HTTP client (keep-alive, HTTP/1.1, minimal) -----------------------------------------


class Connection:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (
            f"POST {SYNC_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """As the real agent: a kept-alive connection the server closed meanwhile is
        replaced and the request sent once more."""
        reused = self.writer is not None
        try:
            return await self._post(body)
        except (OSError, asyncio.IncompleteReadError):
            self.close()
            if not reused:
                raise
        return await self._post(body)

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None and self.writer is not None
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 "):
            self.close()
            raise ConnectionError(f"not an HTTP answer: {head[:40]!r}")
        status = int(head[9:12])
        length = 0
        close = False
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
            elif line.lower() == b"connection: close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:  # a refusal: the server reads no more on this connection
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def record(self, latency: float, status: int, data: bytes, sent_max: int) -> None:
        self.latencies.append(latency)
        if status != 200:
            self.errors += 1
            self.first_error = self.first_error or f"{status} {data[:200]!r}"
        elif sent_max and orjson.loads(data).get("acked_through", 0) < sent_max:
            self.errors += 1
            self.first_error = self.first_error or f"acked_through below {sent_max}"


async def sync_once(
    conn: Connection,
    inst: SimInstance,
    rng: random.Random,
    tally: Tally,
    *,
    steady: bool,
    t0: float,
) -> None:
    body, sent_max = inst.body(rng, steady=steady)
    try:
        status, data = await asyncio.wait_for(conn.post(body), TIMEOUT)
    except TimeoutError:
        conn.close()
        status, data = 598, f"no answer in {TIMEOUT:g} s (the agent's timeout)".encode()
    except (OSError, asyncio.IncompleteReadError) as exc:
        conn.close()
        status, data = 599, str(exc).encode()
    tally.record(time.perf_counter() - t0, status, data, sent_max)


async def register(port: int, token: str, fleet: list[SimInstance], concurrency: int) -> Tally:
    tally, todo, rng = Tally(), deque(fleet), random.Random(1)

    async def worker() -> None:
        conn = Connection(port, token)
        while todo:
            inst = todo.popleft()
            await sync_once(conn, inst, rng, tally, steady=False, t0=time.perf_counter())
        conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


async def durable(database_url: str, service_id: int, instances: int, snapshots: int) -> None:
    """Until the database holds ``instances`` instances of the service and ``snapshots``
    snapshots of them: a registration counts once it is stored, not once answered."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            row = await (
                await conn.execute(
                    "SELECT count(DISTINCT i.id), count(s.id) FROM circuits_instance i "
                    "LEFT JOIN circuits_snapshot s ON s.instance_id = i.id "
                    "WHERE i.service_id = %s",
                    [service_id],
                )
            ).fetchone()
            if row is not None and row[0] >= instances and row[1] >= snapshots:
                return
            await asyncio.sleep(0.005)
    raise RuntimeError("the registrations were not all stored within 120 s")


async def saturate(
    port: int, token: str, fleet: list[SimInstance], concurrency: int, duration: float
) -> tuple[Tally, float]:
    tally, todo, rng = Tally(), deque(fleet), random.Random(2)
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        conn = Connection(port, token)
        while time.perf_counter() < stop_at:
            inst = todo.popleft()  # one sync per instance in flight, round robin
            await sync_once(conn, inst, rng, tally, steady=True, t0=time.perf_counter())
            todo.append(inst)
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally, time.perf_counter() - started


async def offered(
    conns: dict[int, Connection], fleet: list[SimInstance], interval: float, duration: float
) -> tuple[Tally, float]:
    """Every instance syncs every ``interval`` seconds on its own kept-alive connection
    (``conns``, by instance index: kept from one round to the next, as an agent keeps
    its connection between syncs)."""
    tally = Tally()
    start = time.perf_counter() + 0.5
    stop_at = start + duration

    async def agent(inst: SimInstance) -> None:
        rng = random.Random(inst.index)
        conn = conns[inst.index]
        due = start + interval * inst.index / len(fleet)
        while due < stop_at:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await sync_once(conn, inst, rng, tally, steady=True, t0=due)
            due += interval

    await asyncio.gather(*(agent(inst) for inst in fleet))
    return tally, duration


# -- the plain psycopg reference ---------------------------------------------------------

_REF_SNAPSHOTS = """
INSERT INTO circuits_snapshot (instance_id, circuit_id, state, config_version, calls,
    successes, failures, slow_calls, rejected, trip_count, generation, clock, calls_delta,
    failures_delta, slow_calls_delta, rejected_delta, delta_seconds, failure_rate,
    state_since, retry_after, updated_at)
SELECT %s, c, s, v, ca, su, fa, 0, 0, tc, 0, %s, 0, 0, 0, 0, NULL, fr, ss, NULL, now()
FROM unnest(%s::bigint[], %s::text[], %s::int[], %s::bigint[], %s::bigint[], %s::bigint[],
            %s::bigint[], %s::float8[], %s::timestamptz[]) AS t(c, s, v, ca, su, fa, tc, fr, ss)
ON CONFLICT (instance_id, circuit_id) DO UPDATE SET state = EXCLUDED.state,
    config_version = EXCLUDED.config_version, calls = EXCLUDED.calls,
    successes = EXCLUDED.successes, failures = EXCLUDED.failures,
    trip_count = EXCLUDED.trip_count, clock = EXCLUDED.clock,
    failure_rate = EXCLUDED.failure_rate, state_since = EXCLUDED.state_since,
    updated_at = EXCLUDED.updated_at
"""

# A report's traffic added to its circuits' rows (the same statement as the server's).
_REF_TRAFFIC = """
INSERT INTO circuits_traffic10s AS x (circuit_id, bucket, calls, successes, failures,
    slow_calls, rejected, fallbacks, latency)
SELECT c, to_timestamp(%s), ca, su, fa, 0, 0, 0, l
FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::jsonb[])
    AS t(c, ca, su, fa, l)
ORDER BY c
ON CONFLICT (circuit_id, bucket) DO UPDATE SET calls = x.calls + EXCLUDED.calls,
    successes = x.successes + EXCLUDED.successes, failures = x.failures + EXCLUDED.failures,
    latency = switchyard_latency_add(x.latency, EXCLUDED.latency)
"""

_REF_TRANSITIONS = """
INSERT INTO circuits_transition (instance_id, circuit_id, generation, seq, from_state,
    to_state, at, reason, failure_rate, calls, failures, config_version, received_at)
SELECT %s, c, %s, q, f, t, a, r, fr, ca, fa, v, now()
FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::timestamptz[], %s::text[],
            %s::float8[], %s::int[], %s::int[], %s::int[]) AS x(c, q, f, t, a, r, fr, ca, fa, v)
ON CONFLICT DO NOTHING
"""


async def circuit_ids(database_url: str, service_id: int) -> dict[str, int]:
    """The service's circuits by name, as a peer would have them cached."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT name, id FROM circuits_circuit WHERE service_id = %s", [service_id]
            )
        ).fetchall()
    return {name: cid for name, cid in rows}


async def reference_registration(
    database_url: str,
    service_id: int,
    fleet: list[SimInstance],
    concurrency: int,
    meters: list[CpuMeter],
) -> tuple[Tally, float, list[float]]:
    """The first sync of each instance of ``fleet`` (its circuits already known), one
    transaction each from ``concurrency`` connections: the instance row inserted, its
    snapshots inserted."""
    circuits = await circuit_ids(database_url, service_id)
    tally, todo, rng = Tally(), deque(fleet), random.Random(4)
    connections = [await psycopg.AsyncConnection.connect(database_url) for _ in range(concurrency)]

    async def worker(conn: psycopg.AsyncConnection[Any]) -> None:
        while todo:
            inst = todo.popleft()
            t0 = time.perf_counter()
            data = orjson.loads(inst.body(rng, steady=False)[0])
            info = data["instance"]
            async with conn.transaction():
                row = await (
                    await conn.execute(
                        "INSERT INTO circuits_instance (service_id, instance_id, hostname, pid, "
                        "library_version, started_at, generation, restarts, acked_through, "
                        "dropped_transitions, dropped_reports, telemetry_through, "
                        "telemetry_seen, first_seen, last_seen) "
                        "VALUES (%s, %s, %s, %s, %s, %s, 0, 0, 0, 0, 0, 0, 0, now(), now()) "
                        "RETURNING id",
                        [
                            service_id,
                            info["id"],
                            info["hostname"],
                            info["pid"],
                            info["library_version"],
                            info["started_at"],
                        ],
                    )
                ).fetchone()
                assert row is not None
                b = data["breakers"]
                await conn.execute(
                    _REF_SNAPSHOTS,
                    [
                        row[0],
                        data["clock"],
                        [circuits[x["name"]] for x in b],
                        [x["state"] for x in b],
                        [x["config_version"] for x in b],
                        [x["calls"] for x in b],
                        [x["successes"] for x in b],
                        [x["failures"] for x in b],
                        [x["trip_count"] for x in b],
                        [x["failure_rate"] for x in b],
                        [x["state_since"] for x in b],
                    ],
                )
            tally.record(time.perf_counter() - t0, 200, b"{}", 0)

    for meter in meters:
        meter.start()
    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(conn) for conn in connections))
        elapsed = time.perf_counter() - started
        return tally, elapsed, [meter.stop() for meter in meters]
    finally:
        for conn in connections:
            await conn.close()


async def reference(
    database_url: str,
    service_id: int,
    fleet: list[SimInstance],
    concurrency: int,
    duration: float,
    meters: list[CpuMeter],
) -> tuple[Tally, float, list[float]]:
    """One transaction per sync from ``concurrency`` psycopg connections; ``meters``
    run while the connections are open (their backends are what is measured)."""
    circuits = await circuit_ids(database_url, service_id)
    tally, todo, rng = Tally(), deque(fleet), random.Random(3)

    connections = [await psycopg.AsyncConnection.connect(database_url) for _ in range(concurrency)]

    async def worker(conn: psycopg.AsyncConnection[Any]) -> None:
        while time.perf_counter() < stop_at:
            inst = todo.popleft()
            t0 = time.perf_counter()
            body, sent_max = inst.body(rng, steady=True)
            data = orjson.loads(body)
            async with conn.transaction():
                row = await (
                    await conn.execute(
                        "SELECT id, generation FROM circuits_instance "
                        "WHERE service_id = %s AND instance_id = %s FOR UPDATE",
                        [service_id, data["instance"]["id"]],
                    )
                ).fetchone()
                assert row is not None
                pk, generation = row
                b = data["breakers"]
                await conn.execute(
                    _REF_SNAPSHOTS,
                    [
                        pk,
                        data["clock"],
                        [circuits[x["name"]] for x in b],
                        [x["state"] for x in b],
                        [x["config_version"] for x in b],
                        [x["calls"] for x in b],
                        [x["successes"] for x in b],
                        [x["failures"] for x in b],
                        [x["trip_count"] for x in b],
                        [x["failure_rate"] for x in b],
                        [x["state_since"] for x in b],
                    ],
                )
                t = data["transitions"]
                if t:
                    await conn.execute(
                        _REF_TRANSITIONS,
                        [
                            pk,
                            generation,
                            [circuits[x["breaker"]] for x in t],
                            [x["id"] for x in t],
                            [x["from"] for x in t],
                            [x["to"] for x in t],
                            [x["at"] for x in t],
                            [x["reason"] for x in t],
                            [x["failure_rate"] for x in t],
                            [x["calls"] for x in t],
                            [x["failures"] for x in t],
                            [x["config_version"] for x in t],
                        ],
                    )
                through = 0
                for report in data.get("telemetry", ()):
                    g = report["breakers"]
                    await conn.execute(
                        _REF_TRAFFIC,
                        [
                            report["bucket"],
                            [circuits[x["name"]] for x in g],
                            [x["calls"] for x in g],
                            [x["successes"] for x in g],
                            [x["failures"] for x in g],
                            [Jsonb({str(i): n for i, n in x["latency"]}) for x in g],
                        ],
                    )
                    through = max(through, report["seq"])
                await conn.execute(
                    "UPDATE circuits_instance SET last_seen = now(), "
                    "acked_through = GREATEST(acked_through, %s), "
                    "telemetry_through = GREATEST(telemetry_through, %s) WHERE id = %s",
                    [sent_max, through, pk],
                )
            tally.record(time.perf_counter() - t0, 200, b"{}", 0)
            todo.append(inst)

    for meter in meters:
        meter.start()
    started = time.perf_counter()
    stop_at = started + duration
    try:
        await asyncio.gather(*(worker(conn) for conn in connections))
        elapsed = time.perf_counter() - started
        return tally, elapsed, [meter.stop() for meter in meters]
    finally:
        for conn in connections:
            await conn.close()


# -- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    server_root: Path, database_url: str, redis_url: str, workers: int, port: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SWITCHYARD_REDIS_PREFIX": f"bench-ingest-{uuid.uuid4().hex[:8]}",
        # One agent token for the whole simulated fleet, driven past what one token may
        # send by default (SWITCHYARD_AGENT_RATE_PER_SECOND per process): the bench
        # measures the intake's capacity, so the per-token limit is off.
        "SWITCHYARD_AGENT_RATE_PER_SECOND": "0",
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(server_root),
    }
    if (server_root / "controlplane" / "serve.py").exists():
        # The service's own launcher: one SO_REUSEPORT socket per worker.
        command = [sys.executable, "-m", "controlplane.serve", "--workers", str(workers)]
    else:  # an older checkout (--server-root)
        command = [sys.executable, "-m", "uvicorn", "controlplane.asgi:application"]
        command += ["--workers", str(workers)] if workers > 1 else []
    command += ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"]
    # Keep-alive longer than the agents' interval, as docs/operations.md advises.
    command += ["--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "30"]
    proc = subprocess.Popen(command, cwd=server_root, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            time.sleep(1.0)  # let every worker come up
            return proc
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("the server did not come up in 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# -- reporting ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, tally: Tally, elapsed: float, server_cpu: float, pg_cpu: float) -> float:
    n = len(tally.latencies)
    rate = (n - tally.errors) / elapsed if elapsed else 0.0  # answered and stored
    ms = [x * 1000 for x in tally.latencies]
    print(
        f"{label:<34} {rate:8.0f} syncs/s  p50 {percentile(ms, 0.5):7.1f}  "
        f"p95 {percentile(ms, 0.95):7.1f}  p99 {percentile(ms, 0.99):7.1f} ms  "
        f"errors {tally.errors:<4d} CPU/sync server {server_cpu * 1000 / max(n, 1):5.2f} ms"
        f"  pg {pg_cpu * 1000 / max(n, 1):5.2f} ms",
        flush=True,
    )
    if tally.first_error:
        print(f"    first error: {tally.first_error}")
    return rate


async def main_async(args: argparse.Namespace) -> None:
    server_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    admin_url = urlunsplit(urlsplit(server_url)._replace(path="/postgres"))
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14")
    server_root = Path(args.server_root).resolve()
    database_url, database = scratch_database(server_url)
    proc = None
    conns: dict[int, Connection] = {}
    try:
        service_id, _, token = prepare(database_url, server_root)
        config = default_config()
        fleet = [
            SimInstance(i, args.breakers, config, telemetry=args.telemetry)
            for i in range(args.instances)
        ]
        port = free_port()
        proc = start_server(server_root, database_url, redis_url, args.workers, port)
        server = CpuMeter(lambda: process_tree(proc.pid))
        pg = CpuMeter(lambda: backend_pids(admin_url, database))
        print(
            f"# {args.instances} instances x {args.breakers} breakers, {args.workers} worker(s), "
            f"server code {server_root}",
            flush=True,
        )

        ref_concurrency = args.reference_concurrency or args.concurrency
        started = time.perf_counter()
        server.start()
        pg.start()
        tally = await register(port, token, fleet, args.concurrency)
        # Answered is not enough: the phase ends once every instance and its snapshots
        # are in the database.
        await durable(database_url, service_id, len(fleet), len(fleet) * args.breakers)
        registered = report(
            "registration", tally, time.perf_counter() - started, server.stop(), pg.stop()
        )
        if args.reference:
            # New instances of the same service (its circuits known), as plain psycopg
            # would insert them.
            newcomers = [
                SimInstance(args.instances + i, args.breakers, config)
                for i in range(args.instances)
            ]
            me = CpuMeter(lambda: [os.getpid()])
            tally, elapsed, (me_cpu, pg_cpu) = await reference_registration(
                database_url, service_id, newcomers, ref_concurrency, [me, pg]
            )
            ref_registered = report("psycopg registration", tally, elapsed, me_cpu, pg_cpu)
            if ref_registered:
                print(f"    ratio registration / reference: {registered / ref_registered:.2f}")

        rates: dict[str, float] = {}
        conns.update((inst.index, Connection(port, token)) for inst in fleet)
        for round_no in range(args.rounds):
            if args.mode in ("saturation", "both"):
                # Warm up: every instance syncs a few times, through every worker.
                await saturate(port, token, fleet, args.concurrency, args.warmup)
                client = CpuMeter(lambda: [os.getpid()])
                client.start()
                server.start()
                pg.start()
                tally, elapsed = await saturate(port, token, fleet, args.concurrency, args.duration)
                rates.setdefault("saturation", 0.0)
                rates["saturation"] = report(
                    f"saturation c={args.concurrency} (round {round_no + 1})",
                    tally,
                    elapsed,
                    server.stop(),
                    pg.stop(),
                )
                per_sync = client.stop() * 1000 / max(len(tally.latencies), 1)
                print(f"    load generator CPU/sync {per_sync:.2f} ms")
            if args.mode in ("offered", "both"):
                offered_rate = args.instances / args.interval
                client = CpuMeter(lambda: [os.getpid()])
                client.start()
                server.start()
                pg.start()
                tally, elapsed = await offered(conns, fleet, args.interval, args.duration)
                report(
                    f"offered {offered_rate:.0f}/s (round {round_no + 1})",
                    tally,
                    elapsed,
                    server.stop(),
                    pg.stop(),
                )
                per_sync = client.stop() * 1000 / max(len(tally.latencies), 1)
                print(f"    load generator CPU/sync {per_sync:.2f} ms")
            if args.reference:
                me = CpuMeter(lambda: [os.getpid()])
                tally, elapsed, (me_cpu, pg_cpu) = await reference(
                    database_url, service_id, fleet, ref_concurrency, args.duration, [me, pg]
                )
                ref_rate = report(
                    f"psycopg reference c={ref_concurrency} (round {round_no + 1})",
                    tally,
                    elapsed,
                    me_cpu,
                    pg_cpu,
                )
                if "saturation" in rates and ref_rate:
                    print(f"    ratio saturation / reference: {rates['saturation'] / ref_rate:.2f}")
    finally:
        for conn in conns.values():
            conn.close()
        if proc is not None:
            stop_server(proc)
        drop_database(server_url, database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--breakers", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=("saturation", "offered", "both"), default="both")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--interval", type=float, default=5.0, help="offered mode: seconds")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before saturation")
    parser.add_argument("--no-reference", dest="reference", action="store_false")
    parser.add_argument(
        "--no-telemetry",
        dest="telemetry",
        action="store_false",
        help="steady syncs without telemetry reports (both sides)",
    )
    parser.add_argument(
        "--reference-concurrency",
        type=int,
        default=0,
        help="connections of the reference (default: --concurrency)",
    )
    parser.add_argument("--server-root", default=str(ROOT), help="checkout to serve")
    args = parser.parse_args()
    if args.reference_concurrency < 0:
        parser.error("--reference-concurrency must not be negative")
    for name in ("instances", "breakers", "workers", "concurrency", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.interval <= 0 or args.duration <= 0:
        parser.error("--interval and --duration must be positive")
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
