"""Roll-ups 10 s -> 1 min -> 1 h: counters summed and histograms added exactly, only
settled buckets, the same rows when run again, late reports counted on the next run."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from controlplane.circuits import rollup
from controlplane.circuits.models import (
    Circuit,
    Service,
    Traffic,
    Traffic1h,
    Traffic1m,
    Traffic10s,
    TrafficRollup,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
COUNTERS = ("calls", "successes", "failures", "slow_calls", "rejected", "fallbacks")


@pytest.fixture
def circuits(db: None) -> tuple[Circuit, Circuit]:
    service = Service.objects.create(name="checkout")
    return (
        Circuit.objects.create(service=service, name="db"),
        Circuit.objects.create(service=service, name="search"),
    )


def report(circuit: Circuit, bucket: datetime, calls: int, latency: dict[str, int]) -> None:
    """What the sync does with one report: add it to the circuit's 10-second row."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO circuits_traffic10s AS x
                (circuit_id, bucket, calls, successes, failures, slow_calls, rejected,
                 fallbacks, latency)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (circuit_id, bucket) DO UPDATE SET
                calls = x.calls + EXCLUDED.calls, successes = x.successes + EXCLUDED.successes,
                failures = x.failures + EXCLUDED.failures,
                slow_calls = x.slow_calls + EXCLUDED.slow_calls,
                rejected = x.rejected + EXCLUDED.rejected,
                fallbacks = x.fallbacks + EXCLUDED.fallbacks,
                latency = switchyard_latency_add(x.latency, EXCLUDED.latency)
            """,
            [circuit.pk, bucket, calls, calls - 1, 1, 2, 3, 4, json.dumps(latency)],
        )


def rows(model: type[Traffic]) -> dict[tuple[int, datetime], dict[str, Any]]:
    return {
        (row["circuit_id"], row["bucket"]): row
        for row in model.objects.values("circuit_id", "bucket", *COUNTERS, "latency")
    }


def test_minutes_sum_the_counters_and_add_the_histograms(
    circuits: tuple[Circuit, Circuit], time_machine: Any
) -> None:
    db, search = circuits
    for i in range(12):  # two whole minutes of db, 10:00:00 .. 10:01:50
        report(db, T0 + timedelta(seconds=10 * i), 10 + i, {"3": 1, str(i): 2})
    report(search, T0 + timedelta(seconds=50), 7, {"40": 7})
    report(search, T0 + timedelta(seconds=50), 5, {"40": 1, "41": 4})  # a 2nd instance
    report(db, T0 + timedelta(minutes=2), 99, {"1": 1})  # the minute still running

    time_machine.move_to(T0 + timedelta(minutes=2, seconds=29), tick=False)
    rollup.rollup()  # 10:01 ended 29 s ago: not settled yet
    assert set(rows(Traffic1m)) == {(db.pk, T0), (search.pk, T0)}

    time_machine.move_to(T0 + timedelta(minutes=2, seconds=30), tick=False)
    rollup.rollup()
    minutes = rows(Traffic1m)
    assert set(minutes) == {(db.pk, T0), (db.pk, T0 + timedelta(minutes=1)), (search.pk, T0)}
    first = minutes[(db.pk, T0)]
    assert first["calls"] == sum(range(10, 16))
    assert first["successes"] == sum(range(9, 15))
    assert (first["failures"], first["slow_calls"], first["rejected"], first["fallbacks"]) == (
        6,
        12,
        18,
        24,
    )
    assert first["latency"] == {"0": 2, "1": 2, "2": 2, "3": 7, "4": 2, "5": 2}
    second = minutes[(db.pk, T0 + timedelta(minutes=1))]
    assert second["calls"] == sum(range(16, 22))
    assert second["latency"] == {"3": 6, **{str(i): 2 for i in range(6, 12)}}
    assert minutes[(search.pk, T0)]["calls"] == 12
    assert minutes[(search.pk, T0)]["latency"] == {"40": 8, "41": 4}
    assert TrafficRollup.objects.get(resolution="1m").through == T0 + timedelta(minutes=2)


def test_running_again_writes_the_same_rows(
    circuits: tuple[Circuit, Circuit], time_machine: Any
) -> None:
    db, _ = circuits
    for i in range(6):
        report(db, T0 + timedelta(seconds=10 * i), 5, {"7": 5})
    time_machine.move_to(T0 + timedelta(minutes=1, seconds=30), tick=False)
    first = rollup.rollup()
    assert first[0].rows == 1
    before = rows(Traffic1m)
    again = rollup.rollup()
    assert again[0].rows == 0  # recomputed, nothing changed, nothing written
    assert (
        rows(Traffic1m)
        == before
        == {
            (db.pk, T0): {
                "circuit_id": db.pk,
                "bucket": T0,
                "calls": 30,
                "successes": 24,
                "failures": 6,
                "slow_calls": 12,
                "rejected": 18,
                "fallbacks": 24,
                "latency": {"7": 30},
            }
        }
    )
    # The window recomputed by hand, from scratch: the same totals.
    TrafficRollup.objects.all().delete()
    rollup.rollup()
    assert rows(Traffic1m) == before


def test_a_late_report_is_counted_on_the_next_run(
    circuits: tuple[Circuit, Circuit], time_machine: Any
) -> None:
    db, _ = circuits
    report(db, T0, 10, {"1": 10})
    time_machine.move_to(T0 + timedelta(minutes=1, seconds=30), tick=False)
    rollup.rollup()
    assert rows(Traffic1m)[(db.pk, T0)]["calls"] == 10
    # Another instance's report of 10:00:20 arrives ten minutes late.
    time_machine.move_to(T0 + timedelta(minutes=10), tick=False)
    report(db, T0 + timedelta(seconds=20), 3, {"1": 1, "2": 2})
    rollup.rollup()
    minute = rows(Traffic1m)[(db.pk, T0)]
    assert (minute["calls"], minute["latency"]) == (13, {"1": 11, "2": 2})
    # And it reaches the hour, rolled up once the hour has settled.
    time_machine.move_to(T0 + timedelta(hours=1, seconds=29), tick=False)
    rollup.rollup()
    assert not Traffic1h.objects.exists()
    time_machine.move_to(T0 + timedelta(hours=1, seconds=30), tick=False)
    rollup.rollup()
    hour = rows(Traffic1h)[(db.pk, T0)]
    assert (hour["calls"], hour["failures"], hour["latency"]) == (13, 2, {"1": 11, "2": 2})
    # A report later than rollup.LATE no longer changes its minute.
    time_machine.move_to(T0 + timedelta(hours=1, minutes=20), tick=False)
    report(db, T0 + timedelta(minutes=40), 1, {"1": 1})
    rollup.rollup()
    assert (db.pk, T0 + timedelta(minutes=40)) not in rows(Traffic1m)


def test_hours_add_the_minutes_of_every_circuit(
    circuits: tuple[Circuit, Circuit], time_machine: Any
) -> None:
    db, search = circuits
    for minute in range(0, 120, 7):  # two hours, a report every 7 minutes
        report(db, T0 + timedelta(minutes=minute), minute, {str(minute % 3): 1})
        report(search, T0 + timedelta(minutes=minute, seconds=10), 1, {"9": 2})
    time_machine.move_to(T0 + timedelta(hours=2, minutes=1), tick=False)
    done = rollup.rollup()
    assert [r.resolution for r in done] == ["1m", "1h"]
    hours = rows(Traffic1h)
    in_first = [m for m in range(0, 120, 7) if m < 60]
    in_second = [m for m in range(0, 120, 7) if m >= 60]
    assert hours[(db.pk, T0)]["calls"] == sum(in_first)
    assert hours[(db.pk, T0 + timedelta(hours=1))]["calls"] == sum(in_second)
    assert hours[(search.pk, T0)]["latency"] == {"9": 2 * len(in_first)}
    assert sum(h["calls"] for h in hours.values()) == sum(m.calls for m in Traffic10s.objects.all())
    assert TrafficRollup.objects.get(resolution="1h").through == T0 + timedelta(hours=2)


def test_the_roll_ups_on_sqlite(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.circuits.sqlite_rollup_check", str(tmp_path / "db.sqlite3")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["minutes"] == [["2026-12-05T10:00:00+00:00", 13, {"1": 11, "2": 2}]]
    assert result["hours"] == [["2026-12-05T10:00:00+00:00", 13, {"1": 11, "2": 2}]]
    assert result["again"] == 0
    assert result["deleted"] == 1
