"""The search at fleet scale: 10,000 circuits across 100 services.

Run: .venv/bin/python benchmarks/bench_search.py [--services 100] [--circuits 100]
         [--runs 50]

What it does, all on this machine:

1. Prepares a database (BENCH_DATABASE_URL, default .../switchyard_bench_search, dropped
   and migrated) and seeds ``--services`` x ``--circuits`` circuits with bulk_create:
   services named ``<word>-<nn>`` (ten words, so a prefix such as "pay" matches ten
   services and their circuits), circuits ``<upstream>-<nn>``, two live instances per
   service and a snapshot per instance x circuit (so the fleet state of the results is
   read from real rows).
2. Asks ``GET /search/?q=...&format=json`` (the header box's request, limit 10) in
   process through Django's test client as a logged-in viewer, ``--runs`` times per
   query after one warm-up, for a 1-character query, a 3-character prefix, a contains,
   a miss and a full "service/name". Prints median and p95 per query, the results
   returned, the SQL queries of one request (session and permissions included) and the
   PostgreSQL execution time of its circuit query (EXPLAIN ANALYZE, median of 9),
   against the goal (under 100 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_dashboard import percentile, prepare_database  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/switchyard_bench_search"
PASSWORD = "bench-pw-123!"
GOAL_MS = 100
SERVICE_WORDS = [
    "payments",
    "checkout",
    "billing",
    "inventory",
    "search",
    "shipping",
    "ledger",
    "profile",
    "catalog",
    "notify",
]
UPSTREAMS = ["db", "cache", "http-api", "grpc-user", "queue", "s3", "smtp", "auth", "geo", "fx"]
QUERIES = [
    ("1 character", "d"),
    ("3-character prefix", "pay"),
    ("contains", "user-0"),
    ("miss", "zzzz"),
    ("full service/name", "payments-07/grpc-user-043"),
]


def setup_django(db_url: str) -> None:
    os.environ.update(
        DATABASE_URL=db_url,
        DEBUG="0",
        SECRET_KEY="bench-search-not-secret",
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)  # in process: no channel layer needed
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def service_name(s: int) -> str:
    return f"{SERVICE_WORDS[s % len(SERVICE_WORDS)]}-{s // len(SERVICE_WORDS):02d}"


def circuit_name(c: int) -> str:
    return f"{UPSTREAMS[c % len(UPSTREAMS)]}-{c:03d}"


def seed(n_services: int, n_circuits: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from controlplane.circuits.models import Circuit, Instance, Service, Snapshot

    now = timezone.now()
    services = Service.objects.bulk_create(Service(name=service_name(s)) for s in range(n_services))
    instances = Instance.objects.bulk_create(
        Instance(service=svc, instance_id=f"{svc.name}-{i}", first_seen=now, last_seen=now)
        for svc in services
        for i in range(2)
    )
    circuits = Circuit.objects.bulk_create(
        Circuit(service=svc, name=circuit_name(c)) for svc in services for c in range(n_circuits)
    )
    by_service: dict[int, list[Any]] = {}
    for inst in instances:
        by_service.setdefault(inst.service_id, []).append(inst)
    states = ["closed"] * 17 + ["open", "half_open", "forced_closed"]
    Snapshot.objects.bulk_create(
        (
            Snapshot(
                instance=inst,
                circuit=circuit,
                state=states[(n + k) % len(states)] if k == 0 else "closed",
                calls=1000 + n,
                state_since=now - timedelta(minutes=n % 60),
                updated_at=now + timedelta(hours=1),
            )
            for n, circuit in enumerate(circuits)
            for k, inst in enumerate(by_service[circuit.service_id])
        ),
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def make_viewer() -> Any:
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("bench-vera", password=PASSWORD)
    user.groups.add(Group.objects.get(name="viewer"))
    return user


def circuit_scan_ms(captured: list[dict[str, Any]], repeats: int = 9) -> float:
    """The median execution time, by EXPLAIN ANALYZE, of the request's circuit query (the
    one that reads every circuit: the rest are by key or read 100 services)."""
    from django.db import connection

    (sql,) = [q["sql"] for q in captured if "circuits_circuit" in q["sql"] and "LIKE" in q["sql"]]
    times = []
    with connection.cursor() as cursor:
        for _ in range(repeats):
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            times.append(float(cursor.fetchone()[0][0]["Execution Time"]))
    return statistics.median(times)


def bench(user: Any, runs: int) -> bool:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(user)
    met = True
    print(f"GET /search/?q=...&format=json (limit 10), in process, {runs} runs per query")
    print(
        f"  {'query':<20} {'q':<27} {'median':>8} {'p95':>8}  results  SQL"
        "  circuit scan in PostgreSQL"
    )
    for label, q in QUERIES:
        params = {"q": q, "format": "json"}
        client.get("/search/", params)  # warm (plans, templates, permissions)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get("/search/", params)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.content
        with CaptureQueriesContext(connection) as queries:
            body = client.get("/search/", params).json()
        median, p95 = statistics.median(times) * 1000, percentile(times, 0.95) * 1000
        met = met and p95 < GOAL_MS
        more = "+" if body["more"] else " "
        scan = circuit_scan_ms(queries.captured_queries)
        print(
            f"  {label:<20} {q!r:<27} {median:6.1f} ms {p95:6.1f} ms  {body['count']:>3}{more}"
            f"     {len(queries.captured_queries)}    {scan:5.1f} ms"
        )
    print(f"  goal: under {GOAL_MS} ms; {'met' if met else 'MISSED'} at p95 for every query")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--circuits", type=int, default=100, help="per service")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    prepare_database(db_url)
    setup_django(db_url)
    started = time.perf_counter()
    seed(args.services, args.circuits)
    print(
        f"seeded {args.services * args.circuits} circuits across {args.services} services"
        f" in {time.perf_counter() - started:.1f} s"
    )
    return 0 if bench(make_viewer(), args.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
