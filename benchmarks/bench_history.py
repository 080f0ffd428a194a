"""History at a year's scale: 10 million transitions across 100,000 circuits.

Run: .venv/bin/python benchmarks/bench_history.py [--transitions 10000000]
         [--services 1000] [--circuits 100] [--renders 15] [--interval month]

What it does, all on this machine:

1. Prepares a database (BENCH_DATABASE_URL, default .../switchyard_bench_history,
   dropped and migrated) and makes the monthly partitions of the year (``--interval
   day`` makes daily ones instead, to compare). Seeds ``--services`` x ``--circuits``
   circuits and three instances per service with set-based SQL, then loads the
   transitions with COPY (into an unlogged staging table of numbers, moved into
   ``circuits_transition`` in time order by one INSERT ... SELECT):
   - spread at random over the 365 days before now, over every circuit;
   - one "hot" circuit with 12,000 of them (its 100th page of 50 is real);
   - one incident hour two days ago that holds exactly 5,000 (across 500 circuits of
     50 services), with forces and config changes in the audit trail beside them.
2. Times, in process through Django's test client as a logged-in viewer (median and
   p95 over ``--renders`` after one warm-up): the circuit page (the history's first
   page) and its 100th page; the API's first and 100th page of the circuit's
   transitions; the incident view of the 1-hour window; the fleet-wide filter by state
   over 24 h (API and incident view).
3. The alert evaluation cycle over the 100,000 circuits and this history (one rule of
   each kind), median of 3 steady cycles.
4. Drops the oldest month (detach and drop, as retention does) while a thread inserts
   transitions into the current month the way the sync's store does (one
   ``INSERT ... ON CONFLICT DO NOTHING`` per transaction): the drop's time, and the
   inserts' p50/p99 before and during it.

Export speed has its own benchmark (benchmarks/bench_export.py).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_alerts import make_rules  # noqa: E402
from benchmarks.bench_dashboard import percentile, prepare_database  # noqa: E402

DB_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchyard_bench_history"
)
PASSWORD = "bench-history-pass"
HOT = 12_000  # transitions of the hot circuit
INCIDENT = 5_000  # transitions in the incident hour
STATES = (("closed", "open"), ("open", "half_open"), ("half_open", "closed"))


def setup_django(db_url: str) -> None:
    os.environ.update(
        DATABASE_URL=db_url,
        DEBUG="0",
        SECRET_KEY="bench-history-not-secret",
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)  # events go to the in-process layer
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    """The fleet, the partitions and the history; what the measurements need."""
    from django.db import connection

    from controlplane.core import partitions

    start = now - timedelta(days=365)
    with connection.cursor() as cursor:
        for name in partitions.list("circuits_transition"):
            cursor.execute(f'DROP TABLE "{name.name}"')
    partitions.ensure("circuits_transition", start, now + timedelta(days=31), args.interval)
    n_circuits = args.services * args.circuits
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO circuits_service (id, name, description, desired_version, created_at)"
            " SELECT s, 'svc-' || lpad(s::text, 4, '0'), '', 0, %s"
            " FROM generate_series(1, %s) s",
            [start, args.services],
        )
        cursor.execute(
            "INSERT INTO circuits_circuit (id, service_id, name, created_at)"
            " SELECT c, (c - 1) / %s + 1, 'dep-' || lpad(((c - 1) %% %s)::text, 3, '0'), %s"
            " FROM generate_series(1, %s) c",
            [args.circuits, args.circuits, start, n_circuits],
        )
        cursor.execute(
            "INSERT INTO circuits_instance (id, service_id, instance_id, hostname,"
            " library_version, generation, restarts, acked_through, dropped_transitions,"
            " telemetry_through, telemetry_seen, dropped_reports, first_seen, last_seen)"
            " SELECT i, (i - 1) / 3 + 1, 'web-' || i, 'host', '0.1.0', 0, 0, 0, 0, 0, 0, 0,"
            " %s, %s FROM generate_series(1, %s) i",
            [start, now, args.services * 3],
        )
        for table in ("service", "circuit", "instance"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('circuits_{table}', 'id'),"
                f" (SELECT max(id) FROM circuits_{table}))"
            )
    incident = (now - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    started = time.perf_counter()
    copied = copy_transitions(args, now, start, incident)
    load_s = time.perf_counter() - started
    seed_audit(incident, args)
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("VACUUM ANALYZE circuits_transition")
        cursor.execute("VACUUM ANALYZE circuits_auditevent")
        cursor.execute("RESET statement_timeout")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_facts (now timestamptz, incident timestamptz)")
        cursor.execute("INSERT INTO bench_facts VALUES (%s, %s)", [now, incident])
    return {"incident": incident, "copied": copied, "load_s": load_s, "hot": 1}


def reloaded() -> tuple[dict[str, Any], datetime]:
    """The facts an earlier run's seed recorded, for ``--reuse``."""
    from django.contrib.auth.models import User
    from django.db import connection

    from controlplane.alerts.models import AlertRule, Channel

    User.objects.filter(username="bench-vera").delete()
    AlertRule.objects.all().delete()
    Channel.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT now, incident FROM bench_facts")
        now, incident = cursor.fetchone()
    return {"incident": incident, "hot": 1}, now


def copy_transitions(
    args: argparse.Namespace, now: datetime, start: datetime, incident: datetime
) -> int:
    """COPY (circuit, seconds after start, kind) rows, then one INSERT ... SELECT."""
    from django.db import connection

    rng = random.Random(7)
    span = int((now - start).total_seconds())
    n_circuits = args.services * args.circuits
    hole = int((incident - start).total_seconds())
    background = args.transitions - HOT - INCIDENT
    chunk = 200_000
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")  # millions of rows in one statement
        cursor.execute(
            "CREATE UNLOGGED TABLE bench_stage (c integer, s integer, k smallint, n bigint)"
        )
        raw = cursor.connection  # psycopg connection
        with raw.cursor() as pg, pg.copy("COPY bench_stage (c, s, k, n) FROM STDIN") as copy:
            n = 0

            def rows(count: int, pick: Any, when: Any) -> None:
                nonlocal n
                for offset in range(0, count, chunk):
                    lines = []
                    for _ in range(min(chunk, count - offset)):
                        n += 1
                        lines.append(f"{pick()}\t{when()}\t{n % 3}\t{n}\n")
                    copy.write("".join(lines))

            def background_time() -> int:
                s = rng.randrange(span - 3600)
                return s + 3600 if s >= hole else s  # the incident hour holds only its own

            rows(background, lambda: rng.randrange(2, n_circuits + 1), background_time)
            rows(HOT, lambda: 1, background_time)
            # The incident: 500 circuits of 50 services (10 each).
            burst = [s * args.circuits + c + 1 for s in range(0, 50) for c in range(10)]
            rows(INCIDENT, lambda: rng.choice(burst), lambda: hole + rng.randrange(3600))
        cursor.execute(
            "INSERT INTO circuits_transition (instance_id, circuit_id, generation, seq,"
            " from_state, to_state, at, reason, failure_rate, calls, failures,"
            " config_version, received_at)"
            " SELECT (c.service_id - 1) * 3 + 1 + b.n %% 3, b.c, 0, b.n,"
            " (ARRAY['closed', 'open', 'half_open'])[b.k + 1],"
            " (ARRAY['open', 'half_open', 'closed'])[b.k + 1],"
            " %s + b.s * interval '1 second', CASE b.k WHEN 0 THEN 'failure_rate'"
            " WHEN 1 THEN 'timeout_elapsed' ELSE 'probe_success' END,"
            " CASE b.k WHEN 0 THEN 0.6 END, 100, 60, 1, %s + b.s * interval '1 second'"
            " FROM bench_stage b JOIN circuits_circuit c ON c.id = b.c ORDER BY b.s",
            [start, start],
        )
        copied = cursor.rowcount
        cursor.execute("DROP TABLE bench_stage")
        cursor.execute("RESET statement_timeout")
    return copied


def seed_audit(incident: datetime, args: argparse.Namespace) -> None:
    """Forces, releases and config changes: 40 in the incident hour, 2,000 over the year."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO circuits_auditevent (actor_name, action, service_id, target_type,"
            " target_id, target_repr, reason, at)"
            " SELECT 'otto', (ARRAY['override.force', 'override.release', 'config.create'])"
            "[1 + g %% 3], (g %% 50) + 1, 'circuit', ((g %% 50) * %s + 1)::text,"
            " 'svc/dep', 'incident', %s + g * interval '90 seconds'"
            " FROM generate_series(0, 39) g",
            [args.circuits, incident],
        )
        cursor.execute(
            "INSERT INTO circuits_auditevent (actor_name, action, service_id, target_type,"
            " target_id, target_repr, reason, at)"
            " SELECT 'otto', 'config.create', (g %% %s) + 1, 'circuit', g::text, 'svc/dep', '',"
            " %s - g * interval '4 hours' FROM generate_series(1, 2000) g",
            [args.services, incident],
        )


def timed(client: Any, url: str, renders: int, expect: int = 200) -> dict[str, float]:
    times = []
    for k in range(renders + 1):
        started = time.perf_counter()
        response = client.get(url)
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        elapsed = time.perf_counter() - started
        if response.status_code != expect:
            raise SystemExit(f"{url}: {response.status_code} {response.content[:300]!r}")
        if k:
            times.append(elapsed * 1000)
    return {"median": statistics.median(times), "p95": percentile(times, 0.95)}


def viewer_client() -> Any:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user = User.objects.create_user("bench-vera", password=PASSWORD)
    user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)
    return client


def api_pages(client: Any, url: str, pages: int) -> tuple[str, str]:
    """The first page's URL and the ``pages``-th one's, reached by following ``next``."""
    first = url
    for _ in range(pages - 1):
        body = client.get(url).json()
        url = body["next"]
        if url is None:
            raise SystemExit(f"{first}: fewer than {pages} pages")
    return first, url


def page_links(client: Any, url: str, pages: int) -> str:
    """The circuit page's ``pages``-th history page, by following its "older" link."""
    import re
    from urllib.parse import urldefrag, urljoin

    for _ in range(pages - 1):
        html = client.get(url).content.decode()
        found = re.search(r'<a href="([^"]*)" rel="next" data-page="older">', html)
        if found is None:
            raise SystemExit(f"{url}: no older page link")
        url = urldefrag(urljoin(url, found.group(1).replace("&amp;", "&"))).url
    return url


def measure_pages(client: Any, facts: dict[str, Any], renders: int, now: datetime) -> list:
    from django.urls import reverse

    hot = facts["hot"]
    incident = facts["incident"]
    rows = []
    circuit_url = reverse("dashboard:circuit", args=[hot])
    rows.append(("circuit page, history page 1", timed(client, circuit_url, renders)))
    rows.append(
        (
            "circuit page, history page 100",
            timed(client, page_links(client, circuit_url, 100), renders),
        )
    )
    api = reverse("circuit-detail", args=[hot]) + "transitions/?page_size=50"
    first, hundredth = api_pages(client, api, 100)
    rows.append(("API circuit transitions, page 1", timed(client, first, renders)))
    rows.append(("API circuit transitions, page 100", timed(client, hundredth, renders)))
    window = f"from={incident.isoformat()}&to={(incident + timedelta(hours=1)).isoformat()}"
    window = window.replace("+", "%2B")
    rows.append(
        ("incident view, 1 h, 5,000 transitions", timed(client, f"/incidents/?{window}", renders))
    )
    since = (now - timedelta(hours=24)).isoformat().replace("+", "%2B")
    rows.append(
        (
            "API fleet transitions, state=open, 24 h",
            timed(client, f"/api/v1/transitions/?state=open&since={since}", renders),
        )
    )
    rows.append(
        (
            "incident view, state=open, 24 h",
            timed(client, "/incidents/?range=24h&state=open", renders),
        )
    )
    return rows


def measure_alerts(now: datetime, cycles: int = 3) -> dict[str, float]:
    from controlplane.alerts.evaluate import evaluate

    make_rules()
    started = time.perf_counter()
    evaluate(now=now)
    first = time.perf_counter() - started
    steady = []
    for k in range(cycles):
        started = time.perf_counter()
        evaluate(now=now + timedelta(seconds=1 + k))
        steady.append(time.perf_counter() - started)
    return {"first": first, "steady": statistics.median(steady)}


def measure_drop(db_url: str, now: datetime, interval: str) -> dict[str, float]:
    """Drop the oldest partition while another connection keeps inserting."""
    import psycopg

    from controlplane.core import partitions

    oldest = partitions.list("circuits_transition")[0]
    with psycopg.connect(db_url) as conn:
        (rows,) = conn.execute(f'SELECT count(*) FROM "{oldest.name}"').fetchone()
    latencies: list[tuple[float, float]] = []  # (start, seconds)
    stop = threading.Event()

    def insert() -> None:
        seq = 10**12
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not stop.is_set():
                seq += 1
                started = time.perf_counter()
                conn.execute(
                    "INSERT INTO circuits_transition (instance_id, circuit_id, generation, seq,"
                    " from_state, to_state, at, reason, received_at)"
                    " VALUES (4, 2, 0, %s, 'closed', 'open', now(), 'failure_rate', now())"
                    " ON CONFLICT (instance_id, generation, seq, at) DO NOTHING",
                    [seq],
                )
                latencies.append((started, time.perf_counter() - started))

    writer = threading.Thread(target=insert)
    writer.start()
    time.sleep(3)  # a baseline of inserts before the drop (a load, not a wait for an outcome)
    drop_start = time.perf_counter()
    gone = partitions.drop_before("circuits_transition", oldest.end, interval)  # type: ignore[arg-type]
    drop_end = time.perf_counter()
    time.sleep(1)
    stop.set()
    writer.join()
    assert gone.partitions == [oldest.name], gone
    before = [s * 1000 for t, s in latencies if t < drop_start]
    during = [s * 1000 for t, s in latencies if drop_start <= t <= drop_end] or [0.0]
    spanning = [s * 1000 for t, s in latencies if t < drop_end and t + s > drop_start]
    return {
        "rows": rows,
        "drop_s": drop_end - drop_start,
        "before_p50": statistics.median(before),
        "before_p99": percentile(before, 0.99),
        "during_max": max(spanning or during),
        "during_n": len(spanning),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transitions", type=int, default=10_000_000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--circuits", type=int, default=100, help="circuits per service")
    parser.add_argument("--renders", type=int, default=15)
    parser.add_argument("--interval", choices=("month", "day"), default="month")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure the database an earlier run loaded (its pages and the alert cycle)",
    )
    args = parser.parse_args()
    if args.reuse:
        setup_django(DB_URL)
        facts, now = reloaded()
    else:
        prepare_database(DB_URL)
        setup_django(DB_URL)
        now = datetime.now(UTC)
        facts = seed(args, now)
        print(
            f"{facts['copied']:,} transitions across {args.services * args.circuits:,} circuits"
            f" ({args.interval} partitions) loaded in {facts['load_s']:.0f} s"
        )
    client = viewer_client()
    rows = measure_pages(client, facts, args.renders, now)
    print(f"{'what':<44} {'median ms':>10} {'p95 ms':>8}")
    for name, t in rows:
        print(f"{name:<44} {t['median']:>10.1f} {t['p95']:>8.1f}")
    alerts = measure_alerts(now)
    print(
        f"alert evaluation at {args.services * args.circuits:,} circuits: first cycle"
        f" {alerts['first']:.3f} s, steady {alerts['steady']:.3f} s (median of 3)"
    )
    drop = measure_drop(DB_URL, now, args.interval)
    print(
        f"dropping the oldest partition ({drop['rows']:,} rows): {drop['drop_s'] * 1000:.0f} ms;"
        f" inserts before: p50 {drop['before_p50']:.2f} ms, p99 {drop['before_p99']:.2f} ms;"
        f" the {drop['during_n']} inserts overlapping the drop: slowest"
        f" {drop['during_max']:.1f} ms"
    )
    from django.db import connections

    connections.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
