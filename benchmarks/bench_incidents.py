"""The incident view at scale: 5,000 transitions in a 1-hour window among 10 million.

Run: .venv/bin/python benchmarks/bench_incidents.py [--total 10000000] [--window 5000]
         [--services 50] [--circuits 40] [--renders 20]

What it does, all on this machine:

1. Prepares a database (BENCH_DATABASE_URL, default .../switchyard_bench_incidents,
   dropped and migrated) and seeds ``--services`` x ``--circuits`` circuits, four
   instances per service, and ``--total`` transitions written set-based by PostgreSQL
   (``INSERT ... SELECT generate_series``): ``--window`` of them in the hour before the
   seed's start, the rest spread over the 60 days before that hour. Then 20 forces
   and releases (audit rows) and 10 alerts in the hour, and ``ANALYZE``.
2. Renders ``GET /incidents/?from=<hour start>&to=<hour end>`` (that hour, fixed, so
   the rows in it stay ``--window``) in process through Django's test client as a
   logged-in viewer, ``--renders`` times after one warm-up: median and p95 of the
   server time, the SQL queries of one render, the page weight, and the PostgreSQL
   execution time of the timeline's transitions query (EXPLAIN ANALYZE, median of 5)
   with its plan's top node.
3. Creates the index the view's window query wants, ``(at, id)`` on
   circuits_transition (in this benchmark's database only), analyzes, and measures
   step 2 again.

The goal: under 300 ms server-side.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_dashboard import percentile, prepare_database  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/switchyard_bench_incidents"
PASSWORD = "bench-pw-123!"
GOAL_MS = 300
INSTANCES_PER_SERVICE = 4
BACKGROUND_DAYS = 60
CHUNK = 500_000
INDEX_SQL = "CREATE INDEX transition_at_id_idx ON circuits_transition (at, id)"


def setup_django(db_url: str) -> None:
    os.environ.update(
        DATABASE_URL=db_url,
        DEBUG="0",
        SECRET_KEY="bench-incidents-not-secret",
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        LOG_LEVEL="WARNING",
        # Seeding millions of rows and building an index take longer than a request may.
        DATABASE_STATEMENT_TIMEOUT_MS="0",
    )
    os.environ.pop("REDIS_URL", None)  # in process: no channel layer needed
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(n_services: int, n_circuits: int, total: int, window: int, end: datetime) -> None:
    """The fleet with bulk_create, the transitions set-based (ids are consecutive in a
    fresh database, so a row's circuit and instance are arithmetic on its number)."""
    from django.db import connection

    from controlplane.alerts.models import Alert, AlertRule
    from controlplane.circuits.models import Circuit, Instance, Service
    from controlplane.circuits.operations import force_circuit, release_circuit

    services = Service.objects.bulk_create(Service(name=f"svc-{s:03d}") for s in range(n_services))
    instances = Instance.objects.bulk_create(
        Instance(service=svc, instance_id=f"web-{i}", first_seen=end, last_seen=end)
        for svc in services
        for i in range(INSTANCES_PER_SERVICE)
    )
    circuits = Circuit.objects.bulk_create(
        Circuit(service=svc, name=f"upstream-{c:03d}")
        for svc in services
        for c in range(n_circuits)
    )
    c0, i0 = circuits[0].pk, instances[0].pk
    assert [c.pk for c in circuits] == list(range(c0, c0 + len(circuits)))
    assert [i.pk for i in instances] == list(range(i0, i0 + len(instances)))
    n = len(circuits)
    start = end - timedelta(hours=1)
    # Row g: circuit g mod n; an instance of that circuit's service; states in a cycle.
    # Rows 1..window fall in the hour, evenly; the others in the 60 days before it.
    insert = f"""
        INSERT INTO circuits_transition (instance_id, circuit_id, generation, seq,
            from_state, to_state, at, reason, failure_rate, calls, failures,
            config_version, received_at)
        SELECT {i0} + ((g %% {n}) / {n_circuits}) * {INSTANCES_PER_SERVICE}
                   + (g / {n}) %% {INSTANCES_PER_SERVICE},
               {c0} + g %% {n}, 0, g,
               (ARRAY['closed','open','half_open'])[g %% 3 + 1],
               (ARRAY['open','half_open','closed'])[g %% 3 + 1],
               CASE WHEN g <= %(window)s
                    THEN %(start)s + (g - 0.5) * (interval '1 hour' / %(window)s)
                    ELSE %(start)s - (g - %(window)s) * (interval '{BACKGROUND_DAYS} days'
                         / greatest(%(total)s - %(window)s, 1))
               END,
               'failure_rate', 0.5, 20, 10, 1, %(end)s
        FROM generate_series(%(lo)s, %(hi)s) AS g
    """
    with connection.cursor() as cursor:
        for lo in range(1, total + 1, CHUNK):
            hi = min(lo + CHUNK - 1, total)
            started = time.perf_counter()
            cursor.execute(
                insert,
                {"window": window, "start": start, "end": end, "total": total, "lo": lo, "hi": hi},
            )
            print(f"  transitions {hi:,} of {total:,} ({time.perf_counter() - started:.1f} s)")
    operator = make_user("bench-otto", "operator")
    for k in range(10):
        circuit = circuits[k * 7 % n]
        at = start + timedelta(minutes=5 * k + 1)
        force_circuit(circuit, "forced_open", reason="bench outage", user=operator, now=at)
        release_circuit(circuit, user=operator, reason="recovered", now=at + timedelta(minutes=2))
    rule = AlertRule.objects.create(name="bench open too long", kind="open_too_long")
    Alert.objects.bulk_create(
        Alert(
            rule=rule,
            circuit=circuits[k * 11 % n],
            status="resolved",
            started_at=start + timedelta(minutes=5 * k),
            fired_at=start + timedelta(minutes=5 * k + 1),
            resolved_at=start + timedelta(minutes=5 * k + 3),
            created_at=start + timedelta(minutes=5 * k),
        )
        for k in range(10)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def make_user(name: str, group: str) -> Any:
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(name, password=PASSWORD)
    user.groups.add(Group.objects.get(name=group))
    return user


def timeline_query_ms(captured: list[dict[str, Any]], repeats: int = 5) -> tuple[float, str]:
    """The median execution time (EXPLAIN ANALYZE) of the render's timeline query (the
    transitions in the window, oldest first) and its plan's top node."""
    from django.db import connection

    (sql,) = [
        q["sql"]
        for q in captured
        if 'FROM "circuits_transition"' in q["sql"] and "ORDER BY 1 ASC" in q["sql"]
    ]
    times = []
    with connection.cursor() as cursor:
        for _ in range(repeats):
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
            result = cursor.fetchone()[0][0]
            times.append(float(result["Execution Time"]))
    plan = result["Plan"]
    while plan.get("Plans") and plan["Node Type"] in ("Limit", "Sort", "Gather Merge", "Gather"):
        plan = plan["Plans"][0]
    node = plan["Node Type"] + (f" using {plan['Index Name']}" if "Index Name" in plan else "")
    return statistics.median(times), node


def bench(user: Any, path: str, renders: int, window: int, label: str) -> bool:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(user)
    first = client.get(path)  # warm (plans, templates, permissions)
    assert first.status_code == 200, first.content[:500]
    body = first.content
    assert body.count(b'data-kind="transition"') == 200, "a page of the table is 200 rows"
    times = []
    for _ in range(renders):
        started = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        data = client.get(path + "&format=json").json()
    drawn = len(data["timeline"]["transitions"])
    assert drawn == window, (drawn, window)
    median, p95 = statistics.median(times) * 1000, percentile(times, 0.95) * 1000
    scan, node = timeline_query_ms(queries.captured_queries)
    print(f"{label}:")
    print(
        f"  page render median {median:.0f} ms, p95 {p95:.0f} ms over {renders} renders;"
        f" {len(queries.captured_queries)} SQL queries; {drawn:,} transitions drawn"
    )
    print(
        f"  page weight {len(body) / 1024:.0f} KiB ({len(gzip.compress(body)) / 1024:.0f} KiB"
        f" gzip); timeline query in PostgreSQL {scan:.1f} ms ({node})"
    )
    met = median < GOAL_MS
    print(f"  goal: under {GOAL_MS} ms; {'met' if met else 'MISSED'} (median)")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total", type=int, default=10_000_000)
    parser.add_argument("--window", type=int, default=5_000, help="transitions in the hour")
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--circuits", type=int, default=40, help="per service")
    parser.add_argument("--renders", type=int, default=20)
    args = parser.parse_args()
    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    prepare_database(db_url)
    setup_django(db_url)
    end = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    seed(args.services, args.circuits, args.total, args.window, end)
    print(
        f"seeded {args.total:,} transitions ({args.window:,} in the hour) of"
        f" {args.services * args.circuits:,} circuits in {time.perf_counter() - started:.0f} s"
    )
    viewer = make_user("bench-vera", "viewer")
    window = {"from": (end - timedelta(hours=1)).isoformat(), "to": end.isoformat()}
    path = f"/incidents/?{urlencode(window)}"
    met_before = bench(viewer, path, args.renders, args.window, "with the existing indexes")
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(INDEX_SQL)
        cursor.execute("ANALYZE circuits_transition")
    print(f"{INDEX_SQL} ({time.perf_counter() - started:.0f} s)")
    met_after = bench(viewer, path, args.renders, args.window, "with the index on (at, id)")
    return 0 if met_after or met_before else 1


if __name__ == "__main__":
    sys.exit(main())
