"""Drills (controlplane/circuits/drills.py, docs/drills.md): who may start one, its
bounds and errors naming the field, the instances it reaches, its end (early, at its
bound, by a sync that sees it due) audited with the team, and its outcome against the
traffic and transitions the agents reported."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.circuits.desired import build_desired_state
from controlplane.circuits.drills import (
    complete_due_drills,
    live_instance_ids,
    run_drills,
    share_count,
    start_drill,
)
from controlplane.circuits.models import AuditEvent, Circuit, Drill, Instance, Snapshot
from controlplane.circuits.operations import force_circuit, release_circuit
from tests.circuits.teams import Side, _user

pytestmark = pytest.mark.django_db

# A bucket boundary (10 s) for the outcome's arithmetic: 2026-12-05T10:00:00Z.
T0 = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture
def sync(post_sync: Any, sync_body: Any) -> Any:
    """sync(instance, **body): one sync of instance ``instance`` reporting breaker "db"."""
    seqs: dict[str, int] = {}

    def send(instance: str, *, traffic: dict[datetime, dict[str, int]] | None = None, **kw: Any):
        reports = []
        for bucket, counts in (traffic or {}).items():
            seqs[instance] = seqs.get(instance, 0) + 1
            reports.append(
                {
                    "seq": seqs[instance],
                    "bucket": int(bucket.timestamp()),
                    "breakers": [{"name": "db", **counts}],
                }
            )
        body = sync_body(
            breakers=[{"name": "db", "state": kw.pop("state", "closed")}],
            instance={"id": instance},
            telemetry=reports,
            dropped_reports=0,
            **kw,
        )
        answer = post_sync(body)
        assert answer.status_code == 200, answer.content
        return answer.json()

    return send


@pytest.fixture
def fleet(sync: Any) -> Circuit:
    """Circuit "db" on four live instances (web-1..4) and one gone quiet (old-1)."""
    with time_machine.travel(timezone.now() - timedelta(hours=1)):
        sync("old-1")
    for i in range(1, 5):
        sync(f"web-{i}")
    return Circuit.objects.get(name="db")


def _post(client: APIClient, circuit: Circuit, body: dict[str, Any]) -> Any:
    return client.post(f"/api/v1/circuits/{circuit.pk}/drills/", body, format="json")


def _drill_of(answer: dict[str, Any]) -> Any:
    return answer["breakers"]["db"]["drill"]


def test_a_share_draws_live_instances_only_and_reaches_the_desired_state(
    fleet: Circuit, operator_api: APIClient, sync: Any
) -> None:
    assert live_instance_ids(fleet) == ["web-1", "web-2", "web-3", "web-4"]
    response = _post(operator_api, fleet, {"share": 50, "duration": 30, "reason": "game day"})
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["state"] == "running" and data["live_instances"] == 4 and data["share"] == 50
    chosen = data["instances"]
    assert len(chosen) == 2 and set(chosen) <= {"web-1", "web-2", "web-3", "web-4"}
    # Every agent of the service gets the drill and its bound in its next sync answer.
    drill = _drill_of(sync("web-1"))
    assert drill["instances"] == chosen and drill["state"] == "forced_open"
    until = datetime.fromisoformat(drill["until"])
    assert until == datetime.fromisoformat(data["ends_at"])
    assert until - datetime.fromisoformat(data["started_at"]) == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("live", "share", "drilled"), [(1, 1, 1), (4, 1, 1), (4, 50, 2), (4, 74, 2), (4, 100, 4)]
)
def test_a_share_is_rounded_down_to_at_least_one(live: int, share: int, drilled: int) -> None:
    assert share_count(live, share) == drilled


def test_named_instances_are_drilled_exactly(fleet: Circuit, operator: User) -> None:
    drill = start_drill(fleet, reason="r", duration=5, instances=["web-3", "web-1"], user=operator)
    assert drill.instances == ["web-1", "web-3"] and drill.share is None
    assert build_desired_state(fleet.service_id)["breakers"]["db"]["drill"]["instances"] == [
        "web-1",
        "web-3",
    ]


@override_settings(SWITCHYARD_DRILL_MAX_SECONDS=60)
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"share": 50, "duration": 61, "reason": "r"}, "duration"),
        ({"share": 50, "duration": 0.5, "reason": "r"}, "duration"),
        ({"share": 50, "reason": "r"}, "duration"),
        ({"share": 0, "duration": 5, "reason": "r"}, "share"),
        ({"share": 101, "duration": 5, "reason": "r"}, "share"),
        ({"share": 50.5, "duration": 5, "reason": "r"}, "share"),
        ({"duration": 5, "reason": "r"}, "share"),
        ({"share": 50, "instances": ["web-1"], "duration": 5, "reason": "r"}, "share"),
        ({"instances": ["web-1", "old-1"], "duration": 5, "reason": "r"}, "instances[1]"),
        ({"instances": ["web-1", "web-1"], "duration": 5, "reason": "r"}, "instances"),
        ({"instances": [], "duration": 5, "reason": "r"}, "instances"),
        ({"share": 50, "duration": 5, "reason": "  "}, "reason"),
        ({"share": 50, "duration": 5}, "reason"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    fleet: Circuit, operator_api: APIClient, body: dict[str, Any], field: str
) -> None:
    response = _post(operator_api, fleet, body)
    assert response.status_code == 400, response.json()
    assert response.json()["field"] == field, response.json()
    assert not Drill.objects.exists()


def test_a_circuit_without_live_instances_cannot_be_drilled_by_share(
    fleet: Circuit, operator_api: APIClient
) -> None:
    Instance.objects.update(last_seen=timezone.now() - timedelta(hours=1))
    response = _post(operator_api, fleet, {"share": 100, "duration": 5, "reason": "r"})
    assert response.status_code == 400 and response.json()["field"] == "share"


def test_one_drill_at_a_time_and_none_under_an_override(
    fleet: Circuit, operator_api: APIClient, operator: User
) -> None:
    body = {"share": 25, "duration": 30, "reason": "r"}
    first = _post(operator_api, fleet, body)
    assert first.status_code == 201
    second = _post(operator_api, fleet, body)
    assert second.status_code == 409 and second.json()["drill"] == first.json()["id"]
    end = operator_api.post(f"/api/v1/circuits/{fleet.pk}/drills/{first.json()['id']}/end/")
    assert end.status_code == 200 and end.json()["end_reason"] == "stopped"
    again = operator_api.post(f"/api/v1/circuits/{fleet.pk}/drills/{first.json()['id']}/end/")
    assert again.status_code == 409
    force_circuit(fleet, "forced_closed", reason="keep serving", user=operator)
    refused = _post(operator_api, fleet, body)
    assert refused.status_code == 409 and "override" in refused.json()["detail"]
    release_circuit(fleet, user=operator)
    assert _post(operator_api, fleet, body).status_code == 201


def test_viewers_cannot_start_or_end_a_drill_but_read_them(
    fleet: Circuit, viewer_api: APIClient, operator: User, api_client_for: Any
) -> None:
    refused = _post(viewer_api, fleet, {"share": 50, "duration": 5, "reason": "r"})
    assert refused.status_code == 403
    drill = start_drill(fleet, reason="r", duration=30, share=50, user=operator)
    end = viewer_api.post(f"/api/v1/circuits/{fleet.pk}/drills/{drill.pk}/end/")
    assert end.status_code == 403
    listed = viewer_api.get(f"/api/v1/circuits/{fleet.pk}/drills/")
    assert listed.status_code == 200 and [d["id"] for d in listed.json()["results"]] == [drill.pk]
    detail = viewer_api.get(f"/api/v1/circuits/{fleet.pk}/drills/{drill.pk}/")
    assert detail.status_code == 200 and detail.json()["state"] == "running"
    # An operator's read-only token cannot either.
    from controlplane.circuits.auth import create_api_token

    read_only = APIClient()
    read_only.credentials(
        HTTP_AUTHORIZATION=f"Bearer {create_api_token(operator, scope='read')[1]}"
    )
    assert _post(read_only, fleet, {"share": 50, "duration": 5, "reason": "r"}).status_code == 403
    assert Drill.objects.count() == 1
    assert APIClient().get(f"/api/v1/circuits/{fleet.pk}/drills/").status_code == 401


ROLES = ["global_viewer", "global_operator", "global_admin", "team_viewer", "team_operator"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("side", ["A", "B"])
def test_team_roles_start_drills_on_their_teams_circuits_only(
    world: dict[str, Side], admin: User, role: str, side: str
) -> None:
    target = world[side]
    release_circuit(target.circuit, user=admin)
    Snapshot.objects.create(
        instance=target.instance, circuit=target.circuit, state="closed", updated_at=timezone.now()
    )
    client = APIClient()
    client.force_authenticate(_user(role, world))
    response = _post(client, target.circuit, {"share": 100, "duration": 5, "reason": "r"})
    # Without the permission anywhere: 403; with it in another team only: not visible.
    if role.endswith("viewer"):
        want = 403
    elif role.startswith("team") and side == "B":
        want = 404
    else:
        want = 201
    assert response.status_code == want, response.json()
    if want == 201:
        event = AuditEvent.objects.get(action="drill.start")
        assert event.team == target.team.name and event.actor_name == role


def test_ending_early_and_completing_are_audited_with_the_team_and_reach_agents(
    fleet: Circuit, operator_api: APIClient, operator: User, sync: Any
) -> None:
    from controlplane.circuits.models import Team

    team = Team.objects.create(name="payments", slug="payments")
    fleet.service.team = team
    fleet.service.save()
    started = _post(operator_api, fleet, {"share": 50, "duration": 30, "reason": "game day"})
    drill_id = started.json()["id"]
    version = fleet.service.__class__.objects.get(pk=fleet.service_id).desired_version
    ended = operator_api.post(
        f"/api/v1/circuits/{fleet.pk}/drills/{drill_id}/end/", {"reason": "seen enough"}
    )
    assert ended.status_code == 200 and ended.json()["state"] == "ended"
    assert ended.json()["ended_by"] == operator.username
    assert _drill_of(sync("web-2")) is None
    assert fleet.service.__class__.objects.get(pk=fleet.service_id).desired_version == version + 1
    start_event, end_event = AuditEvent.objects.filter(action__startswith="drill.").order_by("at")
    assert (start_event.action, start_event.actor_name, start_event.team) == (
        "drill.start",
        operator.username,
        "payments",
    )
    assert (end_event.action, end_event.reason, end_event.team) == (
        "drill.end",
        "seen enough",
        "payments",
    )
    assert end_event.after["end_reason"] == "stopped"

    # Run to its end: ended by the system at its bound exactly, once.
    drill = start_drill(fleet, reason="again", duration=10, share=25, user=operator)
    assert complete_due_drills(now=drill.ends_at - timedelta(microseconds=1)) == 0
    assert complete_due_drills(now=drill.ends_at + timedelta(seconds=3)) == 1
    assert complete_due_drills(now=drill.ends_at + timedelta(seconds=4)) == 0
    drill.refresh_from_db()
    assert drill.ended_at == drill.ends_at and drill.end_reason == "completed"
    assert drill.ended_by is None and drill.outcome is not None
    event = AuditEvent.objects.get(action="drill.complete")
    assert (event.actor_name, event.team) == ("system", "payments")


def test_a_sync_after_the_end_ends_the_drill(fleet: Circuit, operator: User, sync: Any) -> None:
    drill = start_drill(fleet, reason="r", duration=2, share=100, user=operator)
    assert _drill_of(sync("web-1"))["instances"] == ["web-1", "web-2", "web-3", "web-4"]
    with time_machine.travel(drill.ends_at + timedelta(seconds=1)):
        assert _drill_of(sync("web-1")) is None
    drill.refresh_from_db()
    assert drill.ended_at == drill.ends_at and drill.end_reason == "completed"


def test_the_outcome_is_the_traffic_and_transitions_reported(
    sync: Any, operator: User, operator_api: APIClient
) -> None:
    traveller = time_machine.travel(T0 - timedelta(seconds=5), tick=False)
    clock = traveller.start()
    try:
        for name in ("web-1", "web-2", "web-3"):
            sync(name)
        circuit = Circuit.objects.get(name="db")
        clock.move_to(T0 + timedelta(seconds=3))
        drill = start_drill(
            circuit,
            reason="r",
            duration=25,
            instances=["web-1", "web-2"],
            user=operator,
            rng=random.Random(1),
        )
        # [10:00:00, 10:00:30) holds the drill; [09:59:30, 10:00:00) is the span before.
        b = {k: T0 + timedelta(seconds=k) for k in (-40, -30, -10, 0, 20, 30)}
        clock.move_to(T0 + timedelta(seconds=35))
        sync(
            "web-1",
            traffic={
                b[-40]: {"calls": 100, "failures": 100},  # outside both spans
                b[-30]: {"calls": 40, "successes": 38, "failures": 2},
                b[0]: {"calls": 30, "successes": 27, "failures": 3,
                       "rejected": 20, "fallbacks": 20},
                b[30]: {"calls": 1000},  # after the drill
            },
            transitions=[
                {"id": 1, "breaker": "db", "from": "closed", "to": "forced_open",
                 "at": iso(T0 + timedelta(seconds=3.2)), "reason": "forced_open"},
                {"id": 2, "breaker": "db", "from": "forced_open", "to": "closed",
                 "at": iso(T0 + timedelta(seconds=28.1)), "reason": "released"},
            ],
        )  # fmt: skip
        sync(
            "web-2",
            traffic={
                b[-10]: {"calls": 10, "successes": 10},
                b[20]: {"calls": 5, "successes": 5, "rejected": 7, "fallbacks": 6},
            },
        )
        # The first sync past its end ended it, before web-2's reports came in.
        drill.refresh_from_db()
        assert drill.ended_at == drill.ends_at and drill.end_reason == "completed"
        assert drill.outcome["during"]["calls"] == 30
        # Reports of the last bucket may still come for two poll intervals after it.
        assert run_drills(now=T0 + timedelta(seconds=35)) == {"completed": 0, "settled": 1}
        drill.refresh_from_db()
        assert drill.outcome_final is False and drill.outcome["during"]["calls"] == 35
        assert run_drills(now=T0 + timedelta(seconds=30 + 10)) == {"completed": 0, "settled": 1}
        drill.refresh_from_db()
        assert drill.outcome_final is True
        assert run_drills(now=T0 + timedelta(seconds=60)) == {"completed": 0, "settled": 0}
        detail = operator_api.get(f"/api/v1/circuits/{circuit.pk}/drills/{drill.pk}/").json()
    finally:
        traveller.stop()
    outcome = detail["outcome"]
    assert outcome["window"] == {
        "from": "2026-12-05T10:00:00.000000Z",
        "to": "2026-12-05T10:00:30.000000Z",
    }
    assert outcome["during"] == {
        "calls": 35, "successes": 32, "failures": 3, "rejected": 27, "fallbacks": 26,
        "error_rate": pytest.approx(100 * 3 / 35),
        "rejected_rate": pytest.approx(100 * 27 / 62),
        "fallback_rate": pytest.approx(100 * 26 / 62),
    }  # fmt: skip
    assert outcome["before"] == {
        "calls": 50, "successes": 48, "failures": 2, "rejected": 0, "fallbacks": 0,
        "error_rate": pytest.approx(4.0), "rejected_rate": 0.0, "fallback_rate": 0.0,
    }  # fmt: skip
    assert outcome["instances"] == [
        {
            "instance": "web-1",
            "forced_at": "2026-12-05T10:00:03.200000Z",
            "released_at": "2026-12-05T10:00:28.100000Z",
        },
        {"instance": "web-2", "forced_at": None, "released_at": None},
    ]


def test_beat_ends_drills_every_few_seconds() -> None:
    from django.conf import settings

    from controlplane.celery import app
    from controlplane.circuits.tasks import drills_task

    entry = settings.CELERY_BEAT_SCHEDULE["circuits-drills"]
    assert entry["task"] == drills_task.name == "circuits.drills"
    assert entry["options"]["expires"] < entry["schedule"] <= settings.SWITCHYARD_POLL_INTERVAL
    assert "circuits.drills" in app.tasks
