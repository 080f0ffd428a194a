"""The history tables' upkeep (circuits.history_maintenance): transitions and audit
events in monthly partitions made ahead, rows that landed in the default partition moved
into their month, months wholly past retention dropped and the drop recorded in the audit
trail; the audit trail append-only."""

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from controlplane.circuits import maintenance
from controlplane.circuits.choices import AuditAction
from controlplane.circuits.models import AuditEvent, Circuit, Instance, Service, Transition
from controlplane.circuits.tasks import history_maintenance_task
from controlplane.core import partitions
from controlplane.core.audit import record_audit

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def circuit(db: None) -> Circuit:
    return Circuit.objects.create(service=Service.objects.create(name="checkout"), name="db")


@pytest.fixture
def instance(circuit: Circuit) -> Instance:
    return Instance.objects.create(
        service=circuit.service, instance_id="web-1", first_seen=NOW, last_seen=NOW
    )


def transition(instance: Instance, circuit: Circuit, seq: int, at: datetime) -> Transition:
    return Transition.objects.create(
        instance=instance,
        circuit=circuit,
        seq=seq,
        from_state="closed",
        to_state="open",
        at=at,
        reason="failure_rate",
        received_at=at,
    )


def months(table: str) -> list[str]:
    return [p.name for p in partitions.list(table)]


def holder(table: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def test_months_are_made_ahead_of_today(db: None, time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)
    done = maintenance.history_maintenance()
    assert done is not None
    for table in ("circuits_transition", "circuits_auditevent"):
        made = months(table)
        # The month before, this month and SWITCHYARD_HISTORY_AHEAD_DAYS (62) ahead.
        for month in ("202702", "202703", "202704", "202705"):
            assert f"{table}_p{month}" in made
        assert f"{table}_p202706" not in made
    assert done.cutoffs["circuits_auditevent"] is None  # kept for ever by default
    assert done.cutoffs["circuits_transition"] == NOW - timedelta(days=400)
    again = maintenance.history_maintenance()
    assert again is not None and again.counts()["partitions_created"] == 0
    time_machine.move_to(NOW + timedelta(days=30), tick=False)
    later = maintenance.history_maintenance()
    assert later is not None
    assert later.created["circuits_transition"] == ["circuits_transition_p202706"]


def test_a_row_in_the_default_partition_moves_into_its_new_month(
    instance: Instance, circuit: Circuit, time_machine: Any
) -> None:
    far = datetime(2027, 8, 15, tzinfo=UTC)
    early = transition(instance, circuit, 1, far)
    event = record_audit(actor=None, action=AuditAction.CONFIG_CREATE, target=circuit, now=far)
    assert holder("circuits_transition", early.pk) == "circuits_transition_default"
    assert holder("circuits_auditevent", event.pk) == "circuits_auditevent_default"
    time_machine.move_to(datetime(2027, 7, 1, tzinfo=UTC), tick=False)
    maintenance.history_maintenance()
    assert holder("circuits_transition", early.pk) == "circuits_transition_p202708"
    assert holder("circuits_auditevent", event.pk) == "circuits_auditevent_p202708"
    assert Transition.objects.get(pk=early.pk).at == far


def test_transitions_past_retention_go_a_month_at_a_time_and_the_audit_trail_says_so(
    instance: Instance, circuit: Circuit, time_machine: Any
) -> None:
    cutoff = NOW - timedelta(days=400)  # 2026-02-03 12:00
    partitions.ensure("circuits_transition", datetime(2026, 1, 1, tzinfo=UTC), NOW, "month")
    in_default = transition(instance, circuit, 1, datetime(2025, 11, 20, tzinfo=UTC))
    in_january = transition(instance, circuit, 2, datetime(2026, 1, 15, tzinfo=UTC))
    # Older than the cutoff, but its month ends after it: kept ("at least" 400 days).
    in_february = transition(instance, circuit, 3, datetime(2026, 2, 2, tzinfo=UTC))
    recent = transition(instance, circuit, 4, NOW - timedelta(days=1))
    old_audit = record_audit(
        actor=None, action=AuditAction.CONFIG_CREATE, target=circuit, now=in_january.at
    )
    assert holder("circuits_transition", in_default.pk) == "circuits_transition_default"

    time_machine.move_to(NOW, tick=False)
    done = maintenance.history_maintenance()

    assert done is not None
    assert done.dropped["circuits_transition"] == ["circuits_transition_p202601"]
    assert done.deleted["circuits_transition"] == 1
    assert set(Transition.objects.values_list("pk", flat=True)) == {in_february.pk, recent.pk}
    # The audit trail is kept for ever by default, and records the retention.
    assert AuditEvent.objects.filter(pk=old_audit.pk).exists()
    (record,) = AuditEvent.objects.filter(action=AuditAction.HISTORY_RETENTION)
    assert (record.actor_id, record.actor_name) == (None, "system")
    assert (record.target_type, record.target_id) == ("table", "circuits_transition")
    assert record.target_repr == f"transitions before {cutoff:%Y-%m-%d %H:%M}Z"
    assert record.reason == "SWITCHYARD_TRANSITION_RETENTION_DAYS=400"
    assert record.after == {
        "cutoff": cutoff.isoformat(),
        "partitions_dropped": ["circuits_transition_p202601"],
        "rows_deleted": 1,
    }
    assert record.at == NOW
    # Nothing more to remove: no second record.
    maintenance.history_maintenance()
    assert AuditEvent.objects.filter(action=AuditAction.HISTORY_RETENTION).count() == 1


def test_audit_events_go_only_when_their_retention_is_set(
    circuit: Circuit, time_machine: Any, settings: Any
) -> None:
    settings.SWITCHYARD_AUDIT_RETENTION_DAYS = 365
    partitions.ensure("circuits_auditevent", datetime(2025, 12, 1, tzinfo=UTC), NOW, "month")
    old = [
        record_audit(actor=None, action=AuditAction.CONFIG_CREATE, target=circuit, now=at)
        for at in (datetime(2025, 6, 1, tzinfo=UTC), datetime(2026, 1, 31, tzinfo=UTC))
    ]
    kept = record_audit(
        actor=None, action=AuditAction.CONFIG_CREATE, target=circuit, now=NOW - timedelta(days=2)
    )
    time_machine.move_to(NOW, tick=False)
    done = maintenance.history_maintenance()
    assert done is not None
    # The cutoff is 2026-03-10 12:00: February ends before it, March after.
    assert done.dropped["circuits_auditevent"] == [
        "circuits_auditevent_p202512",
        "circuits_auditevent_p202601",
        "circuits_auditevent_p202602",
    ]
    assert done.deleted["circuits_auditevent"] == 1  # the June row, in the default partition
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in old]).exists()
    records = AuditEvent.objects.filter(action=AuditAction.HISTORY_RETENTION)
    assert {r.target_id for r in records} == {"circuits_auditevent"}
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == {
        kept.pk,
        *(r.pk for r in records),
    }


def test_the_audit_trail_cannot_be_changed_or_deleted(circuit: Circuit) -> None:
    user = User.objects.create_user("ops")
    event = record_audit(actor=user, action=AuditAction.OVERRIDE_FORCE, target=circuit)
    table = holder("circuits_auditevent", event.pk)
    attempts = [
        lambda: AuditEvent.objects.filter(pk=event.pk).update(reason="nothing happened"),
        lambda: AuditEvent.objects.filter(pk=event.pk).update(at=event.at - timedelta(days=1)),
        lambda: AuditEvent.objects.filter(pk=event.pk).update(actor=None, reason="x"),
        lambda: AuditEvent.objects.filter(pk=event.pk).delete(),
        lambda: connection.cursor().execute(f"DELETE FROM {table} WHERE id = %s", [event.pk]),
        lambda: connection.cursor().execute(
            "UPDATE circuits_auditevent SET actor_name = 'someone else' WHERE id = %s", [event.pk]
        ),
    ]
    for attempt in attempts:
        with (
            pytest.raises(DatabaseError, match="the audit trail is append-only"),
            transaction.atomic(),
        ):
            attempt()
    event.reason = "edited"
    with pytest.raises(TypeError, match="append-only"):
        event.save()
    with pytest.raises(TypeError, match="append-only"):
        event.delete()
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.reason, stored.actor_name, stored.at) == ("", "ops", event.at)


def test_deleting_the_user_or_the_service_keeps_the_event(circuit: Circuit) -> None:
    user = User.objects.create_user("ops")
    event = record_audit(
        actor=user,
        action=AuditAction.OVERRIDE_FORCE,
        target=circuit,
        service_id=circuit.service_id,
        reason="drill",
    )
    user.delete()
    circuit.service.delete()
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.actor_id, stored.service_id) == (None, None)
    assert (stored.actor_name, stored.reason, stored.target_repr) == ("ops", "drill", "checkout/db")


def test_a_replayed_transition_is_stored_once(instance: Instance, circuit: Circuit) -> None:
    at = datetime(2026, 12, 5, 10, tzinfo=UTC)
    transition(instance, circuit, 7, at)
    with pytest.raises(DatabaseError), transaction.atomic():
        transition(instance, circuit, 7, at)
    assert Transition.objects.filter(instance=instance, seq=7).count() == 1


def test_command_and_task(db: None, time_machine: Any) -> None:
    time_machine.move_to(NOW, tick=False)
    out = io.StringIO()
    call_command("history_maintenance", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("circuits_transition: kept from 2026-02-03 12:00Z;")
    assert "circuits_transition_p202705" in lines[0]
    assert lines[1].startswith("circuits_auditevent: kept for ever;")
    assert history_maintenance_task() == {
        "partitions_created": 0,
        "partitions_dropped": 0,
        "rows_deleted": 0,
    }
