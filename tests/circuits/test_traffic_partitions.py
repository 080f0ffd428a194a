"""The traffic tables' upkeep (circuits.traffic_maintenance): partitions made ahead,
rows that landed in a default partition moved into theirs, each resolution dropped past
its retention with its rows, never before it is rolled up; one run at a time."""

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from controlplane.circuits import maintenance
from controlplane.circuits.models import (
    Circuit,
    Service,
    Traffic1h,
    Traffic1m,
    Traffic10s,
    TrafficRollup,
)
from controlplane.circuits.tasks import traffic_maintenance_task
from controlplane.core import partitions

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


@pytest.fixture
def circuit(db: None) -> Circuit:
    return Circuit.objects.create(service=Service.objects.create(name="checkout"), name="db")


def names(table: str) -> list[str]:
    return [p.name for p in partitions.list(table)]


def holder(table: str, circuit: Circuit, bucket: datetime) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text FROM {table} WHERE circuit_id = %s AND bucket = %s",
            [circuit.pk, bucket],
        )
        return str(cursor.fetchone()[0])


def running_since(now: datetime) -> None:
    """The roll-ups as if the task had run every minute until ``now``."""
    TrafficRollup.objects.filter(resolution="1m").update(through=now - timedelta(minutes=1))
    TrafficRollup.objects.filter(resolution="1h").update(through=now - timedelta(hours=1))


def test_partitions_cover_the_retention_and_the_days_ahead(
    circuit: Circuit, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    done = maintenance.traffic_maintenance()
    assert done is not None
    raw = names("circuits_traffic10s")
    assert (raw[0], raw[-1]) == ("circuits_traffic10s_p20261128", "circuits_traffic10s_p20261212")
    days = settings.SWITCHYARD_TRAFFIC_RAW_DAYS + settings.SWITCHYARD_TRAFFIC_AHEAD_DAYS
    assert len(raw) == days + 1
    minutes = names("circuits_traffic1m")
    assert minutes[0] == "circuits_traffic1m_p20261105"
    assert minutes[-1] == "circuits_traffic1m_p20261212"
    hours = names("circuits_traffic1h")
    assert (hours[0], hours[-1]) == ("circuits_traffic1h_p202510", "circuits_traffic1h_p202612")
    assert done.counts()["partitions_created"] == len(raw) + len(minutes) + len(hours)
    # A second run has nothing to create; a day later, one more day ahead.
    again = maintenance.traffic_maintenance()
    assert again is not None and again.counts()["partitions_created"] == 0
    time_machine.move_to(T0 + timedelta(days=1), tick=False)
    later = maintenance.traffic_maintenance()
    assert later is not None
    assert later.created["circuits_traffic10s"] == ["circuits_traffic10s_p20261213"]
    assert later.created["circuits_traffic1h"] == []


def test_rows_in_the_default_partition_move_into_their_new_partition(
    circuit: Circuit, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    maintenance.traffic_maintenance()
    # An agent whose clock runs 10 days ahead: no partition yet, the default takes it.
    ahead = T0 + timedelta(days=10)
    Traffic10s.objects.create(circuit=circuit, bucket=ahead, calls=5, latency={"4": 5})
    assert holder("circuits_traffic10s", circuit, ahead) == "circuits_traffic10s_default"
    time_machine.move_to(T0 + timedelta(days=4), tick=False)
    done = maintenance.traffic_maintenance()
    assert done is not None
    assert "circuits_traffic10s_p20261215" in done.created["circuits_traffic10s"]
    assert holder("circuits_traffic10s", circuit, ahead) == "circuits_traffic10s_p20261215"
    row = Traffic10s.objects.get(circuit=circuit, bucket=ahead)
    assert (row.calls, row.latency) == (5, {"4": 5})


def test_each_resolution_goes_after_its_retention_with_its_rows(
    circuit: Circuit, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    for model in (Traffic10s, Traffic1m, Traffic1h):
        model.objects.create(circuit=circuit, bucket=T0 - timedelta(hours=1), calls=1)
    maintenance.traffic_maintenance()
    # 8 days on: the raw day of T0 - 1 h (December 5th) has ended more than 7 days ago.
    time_machine.move_to(T0 + timedelta(days=8), tick=False)
    running_since(T0 + timedelta(days=8))
    done = maintenance.traffic_maintenance()
    assert done is not None
    assert "circuits_traffic10s_p20261205" in done.dropped["circuits_traffic10s"]
    assert names("circuits_traffic10s")[0] == "circuits_traffic10s_p20261206"
    assert not Traffic10s.objects.exists()
    assert Traffic1m.objects.filter(bucket=T0 - timedelta(hours=1)).exists()
    # 31 days on, the minutes of that day go; the hour stays.
    time_machine.move_to(T0 + timedelta(days=31), tick=False)
    running_since(T0 + timedelta(days=31))
    maintenance.traffic_maintenance()
    assert not Traffic1m.objects.filter(bucket=T0 - timedelta(hours=1)).exists()
    assert Traffic1h.objects.filter(bucket=T0 - timedelta(hours=1)).exists()
    # The hours are kept by month: December 2026 goes once it is wholly 400 days old.
    time_machine.move_to(datetime(2028, 2, 3, tzinfo=UTC), tick=False)
    running_since(datetime(2028, 2, 3, tzinfo=UTC))
    maintenance.traffic_maintenance()
    assert Traffic1h.objects.filter(bucket=T0 - timedelta(hours=1)).exists()
    time_machine.move_to(datetime(2028, 2, 5, tzinfo=UTC), tick=False)
    running_since(datetime(2028, 2, 5, tzinfo=UTC))
    done = maintenance.traffic_maintenance()
    assert done is not None and "circuits_traffic1h_p202612" in done.dropped["circuits_traffic1h"]
    assert not Traffic1h.objects.exists()


def test_rows_past_retention_in_the_default_partition_are_deleted(
    circuit: Circuit, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    maintenance.traffic_maintenance()
    old = T0 - timedelta(days=20)  # no partition covers it: the default holds it
    Traffic10s.objects.create(circuit=circuit, bucket=old, calls=1)
    done = maintenance.traffic_maintenance()
    assert done is not None and done.deleted["circuits_traffic10s"] == 1
    assert not Traffic10s.objects.exists()


def test_rows_not_yet_rolled_up_are_kept_past_retention(
    circuit: Circuit, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    maintenance.traffic_maintenance()
    Traffic10s.objects.create(circuit=circuit, bucket=T0, calls=3)
    # The roll-up is held back (it was down): the raw day is not dropped under it.
    TrafficRollup.objects.filter(resolution="1m").update(through=T0)
    time_machine.move_to(T0 + timedelta(days=9), tick=False)
    original = maintenance.rollup.__globals__["MAX_SECONDS"]
    maintenance.rollup.__globals__["MAX_SECONDS"] = 0.0  # one window per run
    try:
        done = maintenance.traffic_maintenance()
    finally:
        maintenance.rollup.__globals__["MAX_SECONDS"] = original
    assert (
        done is not None
        and "circuits_traffic10s_p20261205" not in done.dropped["circuits_traffic10s"]
    )
    assert Traffic1m.objects.get(bucket=T0).calls == 3
    assert Traffic10s.objects.filter(bucket=T0).exists()
    # Caught up, the next run drops it.
    done = maintenance.traffic_maintenance()
    assert done is not None
    assert "circuits_traffic10s_p20261205" in done.dropped["circuits_traffic10s"]


def test_the_task_and_the_command(circuit: Circuit, time_machine: Any, capsys: Any) -> None:
    time_machine.move_to(T0 + timedelta(seconds=45), tick=False)
    Traffic10s.objects.create(circuit=circuit, bucket=T0 - timedelta(minutes=1), calls=2)
    counts = traffic_maintenance_task()
    assert counts is not None
    # Its minute, and the hour 09:00 that ends with it.
    assert counts["partitions_created"] > 0 and counts["rows_rolled_up"] == 2
    call_command("traffic_maintenance")
    out = capsys.readouterr().out
    assert "roll-up 1m: through 2026-12-05 10:00Z, 0 rows written" in out
    entry = settings.CELERY_BEAT_SCHEDULE["circuits-traffic-maintenance"]
    assert entry["task"] == traffic_maintenance_task.name == "circuits.traffic_maintenance"
    assert entry["schedule"] == 60.0


def test_one_run_at_a_time(circuit: Circuit, time_machine: Any) -> None:
    time_machine.move_to(T0, tick=False)
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [maintenance.LOCK_KEY])
        assert maintenance.traffic_maintenance() is None
        assert traffic_maintenance_task() is None
        with pytest.raises(Exception, match="under way"):
            call_command("traffic_maintenance")
        assert names("circuits_traffic10s") == []
        # Released here, not by closing the connection: the server ends the other
        # session (and frees its locks) after the client has gone, not before.
        other.execute("SELECT pg_advisory_unlock(%s)", [maintenance.LOCK_KEY])
    assert maintenance.traffic_maintenance() is not None
