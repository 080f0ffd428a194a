"""The series API at fleet scale: 10,000 circuits and 7 days of traffic in the tables.

Run: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/bench_series.py [--circuits 10000] [--minute-circuits 1000]
        [--raw-circuits 200] [--runs 20]

What it does, all on this machine:

1. Creates a scratch database on the DATABASE_URL server, migrates it, and creates the
   traffic tables' daily (monthly for hours) partitions with `manage.py
   traffic_maintenance`.
2. Loads, with set-based INSERT ... SELECT generate_series (every row with its six
   counters and a latency histogram of 8 buckets):
   * hourly rows for every circuit over the 7 days (``--circuits`` x 168);
   * minute rows over the 7 days for ``--minute-circuits`` of them (x 10,080);
   * 10-second rows over the last 24 hours for ``--raw-circuits`` of them (x 8,640);
   and sets the roll-ups' watermarks as a running maintenance task would leave them.
3. Answers, in this process through Django's test client as a signed-in viewer
   (view, serializer and SQL; no network), ``--runs`` times each: one circuit's 7 days
   (all six metrics, the default step), 24 hours and 1 hour, and a service of 100
   circuits over 24 hours. Prints the median and p95 per query, the rows in each table,
   and the step each answer used.

Goal (docs/traffic.md): the 7-day series of one circuit in under 100 ms (median).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Eight latency buckets around 5-50 ms (the library's indexes 60-67), as JSON.
LATENCY = (
    "jsonb_build_object('60', 3 + g %% 5, '61', 9, '62', 20 + g %% 7, '63', 31, "
    "'64', 25, '65', 12, '66', 4 + g %% 3, '67', 1)"
)

ROWS = """
INSERT INTO {table} (circuit_id, bucket, calls, successes, failures, slow_calls, rejected,
    fallbacks, latency)
SELECT c.id, b, 100 + g %% 50, 95 + g %% 50, 5, 1, g %% 3, g %% 3, {latency}
FROM (SELECT id FROM circuits_circuit ORDER BY id LIMIT %(circuits)s) AS c,
     generate_series(%(start)s::timestamptz, %(end)s::timestamptz - %(step)s::interval,
                     %(step)s::interval) AS b,
     LATERAL (SELECT (extract(epoch FROM b)::bigint / 10 + c.id) AS g) AS r
"""


def scratch(server_url: str) -> tuple[str, str]:
    parts = urlsplit(server_url)
    name = f"switchyard_series_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), name


def drop(server_url: str, name: str) -> None:
    admin = urlunsplit(urlsplit(server_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def kept(server_url: str, name: str) -> bool:
    admin = urlunsplit(urlsplit(server_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return found is not None


def load(database_url: str, args: argparse.Namespace, now: datetime) -> dict[str, int]:
    hour = now.replace(minute=0, second=0, microsecond=0)
    minute = now.replace(second=0, microsecond=0)
    week = hour - timedelta(days=7)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO circuits_service (name, description, created_at, desired_version) "
            "SELECT 'svc-' || n, '', now(), 0 FROM generate_series(1, %s) AS n",
            [max(1, args.circuits // 100)],
        )
        conn.execute(
            "INSERT INTO circuits_circuit (service_id, name, created_at) "
            "SELECT s.id, 'dep-' || n, now() FROM circuits_service AS s, "
            "generate_series(1, 100) AS n ORDER BY s.id, n LIMIT %s",
            [args.circuits],
        )
        plan = (
            ("circuits_traffic1h", args.circuits, week, hour, "1 hour"),
            ("circuits_traffic1m", args.minute_circuits, week, minute, "1 minute"),
            ("circuits_traffic10s", args.raw_circuits, now - timedelta(days=1), now, "10 seconds"),
        )
        counts = {}
        for table, circuits, start, end, step in plan:
            started = time.perf_counter()
            if step == "10 seconds":
                end = end.replace(second=end.second // 10 * 10, microsecond=0)
                start = end - timedelta(days=1)
            conn.execute(
                ROWS.format(table=table, latency=LATENCY),
                {"circuits": circuits, "start": start, "end": end, "step": step},
            )
            conn.execute(f"ANALYZE {table}")
            counts[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            print(f"  loaded {counts[table]:>11,} rows into {table} in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
        # As a maintenance task running every minute leaves them.
        conn.execute(
            "INSERT INTO circuits_trafficrollup (resolution, through) VALUES ('1m', %s), "
            "('1h', %s) ON CONFLICT (resolution) DO UPDATE SET through = EXCLUDED.through",
            [minute - timedelta(minutes=1), hour],
        )
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--circuits", type=int, default=10_000)
    parser.add_argument("--minute-circuits", type=int, default=1_000)
    parser.add_argument("--raw-circuits", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--keep",
        metavar="NAME",
        help="keep the loaded database as NAME (and reuse it if it exists)",
    )
    args = parser.parse_args()
    for name in ("circuits", "minute_circuits", "raw_circuits", "runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    server_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if args.keep and kept(server_url, args.keep):
        print(f"# reusing the loaded database {args.keep}", flush=True)
        measure(urlunsplit(urlsplit(server_url)._replace(path=f"/{args.keep}")), args)
        return
    database_url, name = scratch(server_url)
    try:
        env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "1"}
        for command in (["migrate", "-v", "0"], ["traffic_maintenance"]):
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
        now = datetime.now(tz=UTC)
        print(f"# {args.circuits:,} circuits; loading 7 days of traffic", flush=True)
        load(database_url, args, now)
        if args.keep:
            with psycopg.connect(
                urlunsplit(urlsplit(server_url)._replace(path="/postgres")), autocommit=True
            ) as conn:
                conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{args.keep}"')
            name = args.keep
            database_url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        measure(database_url, args)
    finally:
        if not args.keep:
            drop(server_url, name)


def measure(database_url: str, args: argparse.Namespace) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from controlplane.circuits.models import Circuit, Service

    user, created = User.objects.get_or_create(username="bench-viewer")
    if created:
        user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)
    circuit = Circuit.objects.order_by("pk").first()
    service = Service.objects.order_by("pk").first()
    assert circuit is not None and service is not None
    metrics = "metric=calls&metric=failure_rate&metric=p50&metric=p90&metric=p99&metric=rejected"
    now = datetime.now(tz=UTC).replace(microsecond=0)

    def since(delta: timedelta) -> str:
        return (now - delta).isoformat().replace("+00:00", "Z")

    one = f"/api/v1/circuits/{circuit.pk}/series/?{metrics}"
    many = f"/api/v1/services/{service.pk}/series/?{metrics}"
    queries = (
        ("circuit, 7 days", f"{one}&from={since(timedelta(days=7))}"),
        ("circuit, 24 hours", f"{one}&from={since(timedelta(days=1))}"),
        ("circuit, 1 hour", one),
        ("service of 100 circuits, 24 hours", f"{many}&from={since(timedelta(days=1))}"),
    )
    for label, path in queries:
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content[:300]
        data = response.json()
        filled = sum(v is not None for v in data["series"]["calls"])
        times.sort()
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
        print(
            f"{label:<36} median {statistics.median(times) * 1000:7.1f} ms  "
            f"p95 {p95 * 1000:7.1f} ms  step {data['step']:>5} s  "
            f"{filled}/{len(data['times'])} points",
            flush=True,
        )


if __name__ == "__main__":
    main()
