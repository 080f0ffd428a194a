"""Alert evaluation benchmark: one evaluation cycle over 1k, 10k and 100k circuits.

Creates a scratch database, seeds a realistic fleet with set-based SQL (100 circuits
per service, 3 instances per service reporting every circuit, five weeks of transition
history: two trip/probe/close episodes per circuit in the last day and one a day at the
circuit's time of day before that, 2% of circuits open now and flapping, 1% half-open,
3% with a high failure rate, bursts of trips on 0.2%, a few silent instances; one
circuit in ten registered 3 days ago), one global rule of every kind with a webhook
channel, then times
``evaluate()``: the first cycle (which opens the alerts) and the median of steady
cycles after it. Prints a table and the time per 1k circuits (linear growth keeps
it flat).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/bench_alerts.py --sizes 1000,10000,100000

DATABASE_URL names the server; the benchmark creates and drops its own database there.
"""

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = [
    "INSERT INTO circuits_service (id, name, description, desired_version, created_at) "
    "SELECT s, 'svc_' || s, '', 0, %(now)s FROM generate_series(1, %(services)s) s",
    # Registered 36 days ago (the trip_rise rule reads the same hour of 4 past weeks),
    # one in ten 3 days ago (judged on its trailing day).
    "INSERT INTO circuits_circuit (id, service_id, name, created_at) "
    "SELECT i, (i - 1) / 100 + 1, 'dep_' || i, "
    "  %(now)s - CASE WHEN i %% 10 = 7 THEN interval '3 days' ELSE interval '36 days' END "
    "FROM generate_series(1, %(n)s) i",
    # Three instances per service; one in 50 went silent two minutes ago.
    "INSERT INTO circuits_instance (id, service_id, instance_id, hostname, library_version, "
    "generation, restarts, acked_through, dropped_transitions, telemetry_through, "
    "telemetry_seen, dropped_reports, first_seen, last_seen) "
    "SELECT j, (j - 1) / 3 + 1, 'inst-' || j, 'host', '0.1.0', 0, 0, 0, 0, 0, 0, 0, %(day_ago)s, "
    "CASE WHEN j %% 50 = 0 THEN %(now)s - interval '120 seconds' ELSE %(now)s END "
    "FROM generate_series(1, %(services)s * 3) j",
    # Every instance reports every circuit of its service.
    "INSERT INTO circuits_snapshot (instance_id, circuit_id, state, config_version, calls, "
    "successes, failures, slow_calls, rejected, trip_count, calls_delta, failures_delta, "
    "slow_calls_delta, rejected_delta, failure_rate, generation, state_since, updated_at) "
    "SELECT ((c - 1) / 100) * 3 + k, c, "
    "  CASE WHEN c %% 100 < 2 THEN 'open' WHEN c %% 100 = 2 THEN 'half_open' ELSE 'closed' END, "
    "  1, 1000, 900, 100, 0, 0, 2, 50, 5, 0, 0, "
    "  CASE WHEN c %% 100 BETWEEN 10 AND 12 THEN 0.8 ELSE (c %% 40) / 100.0 END, 0, "
    "  %(now)s - interval '30 seconds', "
    "  CASE WHEN (((c - 1) / 100) * 3 + k) %% 50 = 0 THEN %(now)s - interval '120 seconds' "
    "       ELSE %(now)s END "
    "FROM generate_series(1, %(n)s) c CROSS JOIN generate_series(1, 3) k",
    # A day of history on the first instance: two trip -> probe -> close episodes.
    "INSERT INTO circuits_transition (instance_id, circuit_id, generation, seq, from_state, "
    "to_state, at, reason, received_at) "
    "SELECT ((c - 1) / 100) * 3 + 1, c, 0, c * 100 + m * 3 + step, "
    "  (ARRAY['closed', 'open', 'half_open'])[step + 1], "
    "  (ARRAY['open', 'half_open', 'closed'])[step + 1], "
    "  at, 'failure_rate', at "
    "FROM generate_series(1, %(n)s) c CROSS JOIN generate_series(0, 1) m "
    "CROSS JOIN generate_series(0, 2) step "
    "CROSS JOIN LATERAL (SELECT %(now)s - (m * 10 + 2) * interval '1 hour' "
    "  - (c %% 600) * interval '1 minute' + step * interval '30 seconds' AS at) t",
    # The weeks before: one trip -> probe -> close episode a day at the circuit's own time
    # of day, from the day it was registered to two days ago.
    "INSERT INTO circuits_transition (instance_id, circuit_id, generation, seq, from_state, "
    "to_state, at, reason, received_at) "
    "SELECT ((c - 1) / 100) * 3 + 1, c, 0, 100000000 + (c * 40 + d) * 3 + step, "
    "  (ARRAY['closed', 'open', 'half_open'])[step + 1], "
    "  (ARRAY['open', 'half_open', 'closed'])[step + 1], "
    "  at, 'failure_rate', at "
    "FROM generate_series(1, %(n)s) c "
    "CROSS JOIN generate_series(2, 35) d CROSS JOIN generate_series(0, 2) step "
    "CROSS JOIN LATERAL (SELECT %(now)s - d * interval '1 day' "
    "  - (c %% 1440) * interval '1 minute' + step * interval '30 seconds' AS at) t "
    "WHERE c %% 10 <> 7 OR d < 3",
    # Circuits open now: tripped 3-15 minutes ago and flapping since (open/half-open).
    "INSERT INTO circuits_transition (instance_id, circuit_id, generation, seq, from_state, "
    "to_state, at, reason, received_at) "
    "SELECT ((c - 1) / 100) * 3 + 1, c, 0, c * 100 + 10 + f, "
    "  CASE WHEN f %% 2 = 0 THEN 'closed' ELSE 'half_open' END, 'open', "
    "  %(now)s - (180 + (c %% 720)) * interval '1 second' + f * interval '40 seconds', "
    "  'failure_rate', %(now)s "
    "FROM generate_series(1, %(n)s) c CROSS JOIN generate_series(0, 2) f WHERE c %% 100 < 3",
    # Bursts: four trips in the last four minutes on one circuit in 500.
    "INSERT INTO circuits_transition (instance_id, circuit_id, generation, seq, from_state, "
    "to_state, at, reason, received_at) "
    "SELECT ((c - 1) / 100) * 3 + 2, c, 0, c * 100 + 20 + b, 'closed', 'open', "
    "  %(now)s - (240 - b * 60) * interval '1 second', 'failure_rate', %(now)s "
    "FROM generate_series(1, %(n)s) c CROSS JOIN generate_series(0, 3) b WHERE c %% 500 = 0",
    "ANALYZE",
]

TRANSITION_INDEXES = """
SELECT ic.relname, pg_get_indexdef(x.indexrelid)
FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid
WHERE x.indrelid = 'circuits_transition'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
ORDER BY ic.relname
"""

TABLES = (
    "alerts_notificationattempt, alerts_notification, alerts_alert, alerts_silence, "
    "alerts_alertrule_channels, alerts_alertrule, alerts_channel, circuits_transition, "
    "circuits_snapshot, circuits_instance, circuits_circuit, circuits_service"
)


def scratch_database(server_url: str) -> tuple[str, str]:
    parts = urlsplit(server_url)
    name = f"switchyard_bench_alerts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), name


def drop_database(server_url: str, name: str) -> None:
    admin = urlunsplit(urlsplit(server_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(n: int, now: datetime) -> float:
    from django.db import connection, transaction

    from controlplane.core import partitions

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    # The months the history covers, as the maintenance task keeps them (rows of a month
    # without its partition would all land in the DEFAULT partition).
    partitions.ensure("circuits_transition", now - timedelta(days=40), now, "month")
    params = {"n": n, "services": max(1, n // 100), "now": now, "day_ago": now - timedelta(1)}
    with transaction.atomic(), connection.cursor() as cursor:
        # A bulk load: the seed's rows reference rows it has just written, so their
        # foreign-key triggers are skipped, and the transitions' secondary indexes are
        # built once after the load rather than row by row (the same definitions, read
        # from the catalogue; constraint indexes stay).
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET LOCAL statement_timeout = 0")  # millions of rows at 100k
        cursor.execute(TRANSITION_INDEXES)
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        for sql in SEED[:-1]:
            cursor.execute(sql, params)
        for _, definition in indexes:
            # A partitioned table's index is defined "ON ONLY" the parent; built on
            # the parent, it is built on every partition.
            cursor.execute(definition.replace(" ON ONLY ", " ON ", 1))
    with connection.cursor() as cursor:
        cursor.execute(SEED[-1])
    make_rules()
    return time.perf_counter() - started


def make_rules() -> None:
    """One global rule of every kind, each with a webhook channel."""
    from controlplane.alerts.models import AlertRule, Channel

    channel = Channel.objects.create(
        name="hook", kind="webhook", config={"url": "http://127.0.0.1:9/", "secret": "x" * 16}
    )
    for kind, params in (
        ("open_too_long", {"duration": 300}),
        ("failure_rate", {"threshold": 0.5, "for": 0}),
        ("trip_rise", {}),
        ("agent_silent", {"after": 60}),
    ):
        rule = AlertRule.objects.create(name=kind, kind=kind, params=params)
        rule.channels.set([channel])


def measure(n: int, cycles: int) -> dict[str, float]:
    from controlplane.alerts.evaluate import evaluate
    from controlplane.alerts.models import Alert
    from controlplane.circuits.models import Transition

    now = datetime.now(UTC).replace(microsecond=0)
    seed_s = seed(n, now)
    started = time.perf_counter()
    first = evaluate(now=now + timedelta(seconds=1))
    first_s = time.perf_counter() - started
    steady = []
    for k in range(cycles):
        started = time.perf_counter()
        evaluate(now=now + timedelta(seconds=2 + k))
        steady.append(time.perf_counter() - started)
    return {
        "n": n,
        "transitions": Transition.objects.count(),
        "seed_s": seed_s,
        "first_s": first_s,
        "steady_s": statistics.median(steady),
        "alerts": Alert.objects.count(),
        "notifications": len(first.notifications),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="alert evaluation benchmark")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    url, name = scratch_database(server)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    os.environ.pop("REDIS_URL", None)  # events go to the in-process layer
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        rows = [measure(int(size), args.cycles) for size in args.sizes.split(",")]
        from django.db import connections

        connections.close_all()
    finally:
        drop_database(server, name)
    print(
        f"{'circuits':>9} {'transitions':>11} {'seed s':>7} {'first cycle s':>13} "
        f"{'steady cycle s':>14} {'steady ms/1k':>12} {'alerts':>7} {'notifs':>7}"
    )
    for r in rows:
        print(
            f"{r['n']:>9} {r['transitions']:>11} {r['seed_s']:>7.1f} {r['first_s']:>13.3f} "
            f"{r['steady_s']:>14.3f} {1000 * r['steady_s'] / (r['n'] / 1000):>12.2f} "
            f"{r['alerts']:>7} {r['notifications']:>7}"
        )
    big = rows[-1]
    verdict = "meets" if big["steady_s"] < 2.0 else "misses"
    print(f"goal: a cycle under 2 s at {big['n']} circuits -> {verdict} ({big['steady_s']:.3f} s)")


if __name__ == "__main__":
    main()
