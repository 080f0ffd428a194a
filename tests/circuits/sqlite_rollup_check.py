"""The traffic roll-ups and retention on the embedded SQLite database (``make run``'s):
run as a script in its own process (the suite's database is PostgreSQL), it prints what
it rolled up as JSON.

    python -m tests.circuits.sqlite_rollup_check /tmp/some/db.sqlite3
"""

import json
import os
import sys
from datetime import UTC, datetime, timedelta


def main(path: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
    os.environ["DEBUG"] = "1"
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django
    from django.conf import settings

    django.setup()
    settings.DATABASES["default"]["NAME"] = path
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import time_machine
    from django.db import connection

    from controlplane.circuits.maintenance import traffic_maintenance
    from controlplane.circuits.models import Circuit, Service, Traffic1h, Traffic1m, Traffic10s

    t0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    circuit = Circuit.objects.create(service=Service.objects.create(name="embedded"), name="db")

    def report(bucket: datetime, calls: int, latency: dict[str, int]) -> None:
        # The sync's upsert of one report, in SQLite's words.
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO circuits_traffic10s (circuit_id, bucket, calls, successes,"
                " failures, slow_calls, rejected, fallbacks, latency)"
                " VALUES (%s, %s, %s, 0, 0, 0, 0, 0, %s)"
                " ON CONFLICT (circuit_id, bucket) DO UPDATE SET"
                " calls = calls + excluded.calls,"
                " latency = switchyard_latency_add(latency, excluded.latency)",
                [
                    circuit.pk,
                    connection.ops.adapt_datetimefield_value(bucket),
                    calls,
                    json.dumps(latency),
                ],
            )

    # Past the 10-second retention: deleted by the first run.
    Traffic10s.objects.create(circuit=circuit, bucket=t0 - timedelta(days=30), calls=1)
    report(t0, 10, {"1": 10})
    with time_machine.travel(t0 + timedelta(minutes=1, seconds=30), tick=False):
        first = traffic_maintenance()
    # Late reports of 10:00:20 from two instances, counted by the next run.
    report(t0 + timedelta(seconds=20), 1, {"1": 1})
    report(t0 + timedelta(seconds=20), 2, {"2": 2})
    with time_machine.travel(t0 + timedelta(minutes=10), tick=False):
        traffic_maintenance()
    with time_machine.travel(t0 + timedelta(hours=1, minutes=1), tick=False):
        traffic_maintenance()
        again = traffic_maintenance()
    assert first is not None and again is not None

    def listed(model: type[Traffic1m] | type[Traffic1h]) -> list[object]:
        return [
            [row.bucket.isoformat(), row.calls, row.latency]
            for row in model.objects.order_by("bucket")
        ]

    print(
        json.dumps(
            {
                "minutes": listed(Traffic1m),
                "hours": listed(Traffic1h),
                "again": sum(r.rows for r in again.rolled),
                "deleted": first.deleted["circuits_traffic10s"],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
