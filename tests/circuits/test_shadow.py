"""Shadow evaluations on the server: the API (start, stop, permissions, audit, 400s), the
desired state's ``shadow`` entry, and the candidates' reports parsed and stored once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.circuits import shadow
from controlplane.circuits.desired import build_desired_state
from controlplane.circuits.models import (
    AuditEvent,
    Circuit,
    Service,
    ShadowBucket,
    ShadowEvaluation,
    ShadowTransition,
)
from controlplane.circuits.sync.parse import SyncError
from tests.circuits.sync_helpers import parse_sync, store_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def circuit(post_sync: Any, sync_body: Any) -> Circuit:
    body = sync_body(breakers=[{"name": "db", "state": "closed", "config": {"timeout": 20}}])
    assert post_sync(body).status_code == 200
    return Circuit.objects.get()


def _url(circuit: Circuit) -> str:
    return f"/api/v1/circuits/{circuit.pk}/shadow/"


def test_an_operator_starts_a_candidate_and_agents_receive_it(
    circuit: Circuit, operator_api: APIClient
) -> None:
    response = operator_api.post(
        _url(circuit),
        {"config": {"failure_threshold": 2}, "reason": "try a tighter threshold"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    evaluation = ShadowEvaluation.objects.get()
    assert body["evaluation"] == evaluation.pk and body["config_version"] == 0
    # The candidate is the current config with the change (timeout 20 kept).
    assert body["config"]["failure_threshold"] == 2 and body["config"]["timeout"] == 20
    service = Service.objects.get()
    assert service.desired_version == 1
    desired = build_desired_state(service.pk)
    assert desired["breakers"]["db"]["shadow"] == {
        "evaluation": evaluation.pk,
        "config_version": 0,
        "config": body["config"],
    }
    event = AuditEvent.objects.get(action="shadow.start")
    assert (event.actor_name, event.reason, event.target_id, event.service) == (
        "otto",
        "try a tighter threshold",
        str(circuit.pk),
        service,
    )
    assert event.after["evaluation"] == evaluation.pk and event.before is None


def test_stopping_ends_it_audited_and_leaves_the_desired_state(
    circuit: Circuit, operator_api: APIClient
) -> None:
    operator_api.post(_url(circuit), {"config": {"failure_threshold": 2}}, format="json")
    response = operator_api.delete(_url(circuit), {"reason": "seen enough"}, format="json")
    assert response.status_code == 204
    assert ShadowEvaluation.objects.get().ended_at is not None
    service = Service.objects.get()
    assert service.desired_version == 2
    assert "shadow" not in build_desired_state(service.pk)["breakers"]["db"]
    assert AuditEvent.objects.get(action="shadow.stop").reason == "seen enough"
    again = operator_api.delete(_url(circuit), format="json")
    assert again.status_code == 404
    assert operator_api.get(_url(circuit)).json() == {"shadow": None, "series": None}


def test_an_existing_version_can_be_the_candidate(
    circuit: Circuit, operator_api: APIClient
) -> None:
    operator_api.post(
        f"/api/v1/circuits/{circuit.pk}/config/",
        {"expected_version": 1, "config": {"failure_threshold": 9}},
        format="json",
    )
    response = operator_api.post(_url(circuit), {"config_version": 1}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["config_version"] == 1
    assert response.json()["config"]["timeout"] == 20
    # A second start replaces the first.
    operator_api.post(_url(circuit), {"config_version": 2}, format="json")
    running = ShadowEvaluation.objects.filter(ended_at__isnull=True)
    assert [e.config_version for e in running] == [2]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"config": {"failure_threshold": 0}}, "config.failure_threshold", "must be an integer"),
        ({"config": {"nope": 1}}, "config.nope", "is not a known field"),
        ({"config_version": 7}, "config_version", "no version 7 of this circuit"),
        ({}, "config", "give either config or config_version"),
        ({"config": {}, "config_version": 1}, "config", "give either"),
        ({"config_version": 0}, "config_version", "greater than or equal to 1"),
    ],
)
def test_a_bad_candidate_is_a_400_naming_the_field(
    circuit: Circuit, operator_api: APIClient, body: dict[str, Any], field: str, reason: str
) -> None:
    response = operator_api.post(_url(circuit), body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert reason in response.json()["reason"]
    assert not ShadowEvaluation.objects.exists()


def test_viewers_cannot_start_or_stop_a_shadow_evaluation(
    circuit: Circuit, viewer_api: APIClient, operator_api: APIClient, api_client_for: Any
) -> None:
    assert viewer_api.post(_url(circuit), {"config": {}}, format="json").status_code == 403
    assert not ShadowEvaluation.objects.exists()
    operator_api.post(_url(circuit), {"config": {"failure_threshold": 2}}, format="json")
    assert viewer_api.delete(_url(circuit), format="json").status_code == 403
    assert ShadowEvaluation.objects.get().ended_at is None
    assert viewer_api.get(_url(circuit)).status_code == 200  # reading is allowed
    assert api_client_for(None).post(_url(circuit), {}, format="json").status_code in (401, 403)


def test_team_roles_decide_who_may_start_one(
    circuit: Circuit, api_client_for: Any, django_user_model: Any
) -> None:
    from controlplane.circuits.models import Membership, Team

    team = Team.objects.create(name="payments")
    Service.objects.filter(pk=circuit.service_id).update(team=team)
    member = django_user_model.objects.create_user("mia")
    Membership.objects.create(team=team, user=member, role="viewer")
    client = api_client_for(member)
    assert client.post(_url(circuit), {"config": {}}, format="json").status_code == 403
    Membership.objects.filter(user=member).update(role="operator")
    assert client.post(_url(circuit), {"config": {}}, format="json").status_code == 201


# -- the candidates' reports -------------------------------------------------------------

BUCKET = 1_764_928_800


def _shadow_report(seq: int, evaluation: int, **counts: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "bucket": BUCKET,
        "breakers": [{"name": "db", "calls": 5, "shadow": {"evaluation": evaluation, **counts}}],
    }


def _started(circuit: Circuit) -> ShadowEvaluation:
    return shadow.start_shadow(circuit, config={"failure_threshold": 1}, user=None)


def test_reports_add_up_per_bucket_once_each(circuit: Circuit, sync_body: Any) -> None:
    evaluation = _started(circuit)
    service = Service.objects.get()
    move = {
        "from": "closed",
        "to": "open",
        "at": "2025-12-05T10:00:03Z",
        "reason": "failure_threshold",
    }
    first = _shadow_report(1, evaluation.pk, rejected=7, opened=1, transitions=[move])
    second = _shadow_report(2, evaluation.pk, rejected=3, unobserved=2)
    body = sync_body(breakers=[{"name": "db"}], telemetry=[first])
    store_sync(service, parse_sync(body))
    body = sync_body(breakers=[{"name": "db"}], telemetry=[first, second])  # 1 sent again
    store_sync(service, parse_sync(body))
    row = ShadowBucket.objects.get()
    assert (row.rejected, row.unobserved, row.opened, row.closed) == (10, 2, 1, 0)
    assert row.bucket == datetime.fromtimestamp(BUCKET, tz=UTC)
    stored = ShadowTransition.objects.get()
    assert (stored.from_state, stored.to_state, stored.reason) == (
        "closed",
        "open",
        "failure_threshold",
    )
    assert stored.instance.instance_id == "web-1"


def test_an_entry_of_another_circuits_evaluation_is_left_out(
    circuit: Circuit, sync_body: Any
) -> None:
    evaluation = _started(circuit)
    service = Service.objects.get()
    body = sync_body(
        breakers=[{"name": "db"}, {"name": "cache"}],
        telemetry=[
            {
                "seq": 1,
                "bucket": BUCKET,
                "breakers": [
                    {
                        "name": "cache",
                        "calls": 1,
                        "shadow": {"evaluation": evaluation.pk, "rejected": 5},
                    },
                    {"name": "db", "calls": 1, "shadow": {"evaluation": 10**9, "rejected": 5}},
                ],
            }
        ],
    )
    store_sync(service, parse_sync(body))
    assert not ShadowBucket.objects.exists()


def test_bad_shadow_entries_are_refused_naming_the_field(sync_body: Any) -> None:
    move = {"from": "closed", "to": "ajar", "at": "2025-12-05T10:00:03Z", "reason": "why"}
    body = sync_body(
        breakers=[{"name": "db"}],
        telemetry=[_shadow_report(1, 3, rejected=1, transitions=[move])],
    )
    with pytest.raises(SyncError) as caught:
        parse_sync(body)
    where = "telemetry[0].breakers[0].shadow.transitions[0]"
    assert set(caught.value.errors) == {f"{where}.to", f"{where}.reason"}
    with pytest.raises(SyncError) as caught:
        parse_sync(sync_body(telemetry=[_shadow_report(1, 3, rejected=-1)]))
    assert "telemetry[0].breakers[0].shadow.rejected" in caught.value.errors


def test_unknown_shadow_fields_of_a_newer_agent_are_dropped(sync_body: Any) -> None:
    sync = parse_sync(sync_body(telemetry=[_shadow_report(1, 3, rejected=1, someday="x")]))
    growth = sync.telemetry[0].breakers[0]
    assert growth.shadow is not None and growth.shadow.rejected == 1


def test_the_summary_adds_up_the_last_hour_of_the_evaluation(circuit: Circuit) -> None:
    now = timezone.now()
    evaluation = shadow.start_shadow(
        circuit, config={"failure_threshold": 1}, user=None, now=now - timedelta(hours=2)
    )
    for minutes, rejected in ((90, 100), (50, 7), (5, 30)):
        ShadowBucket.objects.create(
            evaluation=evaluation,
            bucket=shadow_bucket(now - timedelta(minutes=minutes)),
            rejected=rejected,
            opened=1,
        )
    figures = shadow.summary(evaluation, now=now)
    assert (figures["opened"], figures["rejected"]) == (2, 37)
    assert figures["since"] == now - shadow.SUMMARY_WINDOW


def shadow_bucket(moment: datetime) -> datetime:
    return datetime.fromtimestamp(int(moment.timestamp()) // 10 * 10, tz=UTC)


def test_retention_drops_what_the_10_second_traffic_no_longer_keeps(
    circuit: Circuit, settings: Any
) -> None:
    now = timezone.now()
    days = settings.SWITCHYARD_TRAFFIC_RAW_DAYS
    old = shadow.start_shadow(
        circuit, config={}, user=None, now=now - timedelta(days=days, hours=2)
    )
    ShadowBucket.objects.create(evaluation=old, bucket=shadow_bucket(old.created_at), rejected=1)
    shadow.stop_shadow(circuit, user=None, now=now - timedelta(days=days, hours=1))
    running = shadow.start_shadow(circuit, config={}, user=None, now=now - timedelta(days=days + 1))
    kept = ShadowBucket.objects.create(evaluation=running, bucket=shadow_bucket(now), rejected=2)
    ShadowBucket.objects.create(
        evaluation=running, bucket=shadow_bucket(now - timedelta(days=days, minutes=1)), rejected=3
    )
    deleted = shadow.retention(now)
    assert deleted == {
        "circuits_shadowbucket": 2,
        "circuits_shadowtransition": 0,
        "circuits_shadowevaluation": 1,
    }
    assert list(ShadowEvaluation.objects.all()) == [running]
    assert list(ShadowBucket.objects.all()) == [kept]


def test_the_series_puts_live_and_candidate_side_by_side(
    circuit: Circuit, operator_api: APIClient
) -> None:
    from controlplane.circuits.models import Traffic10s

    now = timezone.now()
    minute = int(now.timestamp()) // 60 * 60 - 300  # five minutes ago, on the minute
    at = datetime.fromtimestamp(minute, tz=UTC)
    evaluation = shadow.start_shadow(circuit, config={}, user=None, now=at + timedelta(seconds=5))
    for offset, rejected, opened in ((0, 30, 1), (20, 6, 0), (70, 12, 2)):
        ShadowBucket.objects.create(
            evaluation=evaluation,
            bucket=at + timedelta(seconds=offset),
            rejected=rejected,
            opened=opened,
        )
    Traffic10s.objects.create(circuit=circuit, bucket=at, calls=100, successes=100, rejected=60)
    Traffic10s.objects.create(circuit=circuit, bucket=at + timedelta(seconds=70), calls=5)

    def iso(t: datetime) -> str:
        return t.isoformat().replace("+00:00", "Z")

    query = f"?from={iso(at - timedelta(minutes=1))}&to={iso(at + timedelta(minutes=3))}&step=60"
    body = operator_api.get(_url(circuit) + query).json()
    series = body["series"]
    assert series["times"] == [minute - 60 + 60 * i for i in range(4)]
    assert series["live_rejected"] == [None, 1.0, 0.0, None]
    # Before the evaluation started: nothing; then per second over each minute.
    assert series["candidate_rejected"] == [None, 0.6, 0.2, None]
    assert series["candidate_opened"] == [None, 1, 2, 0]
    assert series["live_opened"] == [0, 0, 0, 0]
    assert body["shadow"]["rejected"] == 48 and body["shadow"]["opened"] == 3
