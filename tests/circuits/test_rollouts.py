"""Canary rollouts through the API: start, the desired state's canary key, promote,
roll back, the two groups' figures, automatic rollback, bad input and permissions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from breakers.canary import selected
from controlplane.circuits.models import (
    AuditEvent,
    Circuit,
    ConfigVersion,
    Rollout,
    Service,
    Transition,
)
from controlplane.circuits.operations import create_config_version
from controlplane.circuits.rollouts import evaluate_auto_rollbacks, start_rollout
from tests.circuits.teams import Side, _user

pytestmark = pytest.mark.django_db

IDS = [f"web-{n}" for n in range(10)]


@pytest.fixture
def report(post_sync: Any, sync_body: Any) -> Any:
    """report(instance, config_version, seq=0, calls=0, failures=0, latency=(), trans=())."""

    def send(
        instance: str,
        version: int = 0,
        *,
        seq: int = 0,
        calls: int = 0,
        failures: int = 0,
        latency: list[list[int]] | None = None,
        transitions: list[dict[str, Any]] | None = None,
    ) -> None:
        telemetry = []
        if seq:
            bucket = int(timezone.now().timestamp()) // 10 * 10
            growth = {
                "name": "db",
                "calls": calls,
                "successes": calls - failures,
                "failures": failures,
                "slow_calls": 0,
                "rejected": 0,
                "fallbacks": 0,
                "latency": latency or [],
            }
            telemetry = [{"seq": seq, "bucket": bucket, "breakers": [growth]}]
        body = sync_body(
            instance={"id": instance, "hostname": "web", "pid": 4242},
            breakers=[{"name": "db", "config_version": version, "config": {"timeout": 20}}],
            transitions=transitions or [],
            telemetry=telemetry,
            dropped_reports=0,
        )
        response = post_sync(body)
        assert response.status_code == 200, response.content

    return send


@pytest.fixture
def circuit(report: Any) -> Circuit:
    for instance in IDS:
        report(instance, 0)
    circuit = Circuit.objects.get()
    assert circuit.current_config.version == 1
    return circuit


def _url(circuit: Circuit, tail: str = "") -> str:
    return f"/api/v1/circuits/{circuit.pk}/rollouts/{tail}"


def desired(post_sync: Any, sync_body: Any) -> dict[str, Any]:
    body = sync_body(instance={"id": "web-0", "hostname": "web", "pid": 4242})
    answer: dict[str, Any] = post_sync(body).json()
    return answer


def test_an_operator_starts_a_canary_of_new_fields_on_a_percentage(
    circuit: Circuit, operator_api: APIClient, post_sync: Any, sync_body: Any
) -> None:
    before = Service.objects.get().desired_version
    response = operator_api.post(
        _url(circuit),
        {"config": {"failure_threshold": 3}, "percent": 30, "reason": "try 3"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["from_version"], body["to_version"], body["state"]) == (1, 2, "active")
    assert body["select"]["percent"] == 30 and len(body["select"]["salt"]) == 16
    circuit.refresh_from_db()
    assert circuit.current_config.version == 1  # the baseline is still current
    assert ConfigVersion.objects.get(circuit=circuit, version=2).config["failure_threshold"] == 3
    assert Service.objects.get().desired_version == before + 1
    entry = desired(post_sync, sync_body)["breakers"]["db"]
    assert entry["config_version"] == 1
    assert entry["canary"] == {
        "rollout": body["id"],
        "config_version": 2,
        "config": ConfigVersion.objects.get(circuit=circuit, version=2).config,
        "select": body["select"],
    }
    event = AuditEvent.objects.get(action="rollout.start")
    assert (event.actor_name, event.reason, event.target_id) == ("otto", "try 3", str(circuit.pk))
    assert event.after["to_version"] == 2 and event.before is None


def test_the_detail_names_the_group_of_every_live_instance(
    circuit: Circuit, operator_api: APIClient
) -> None:
    rollout_id = operator_api.post(
        _url(circuit), {"config": {"failure_threshold": 3}, "percent": 50}, format="json"
    ).json()["id"]
    rollout = Rollout.objects.get()
    detail = operator_api.get(_url(circuit, f"{rollout_id}/")).json()
    groups = {m["instance"]: m["group"] for m in detail["members"]}
    assert groups == {i: ("canary" if selected(rollout.select, i) else "baseline") for i in IDS}
    canary = sum(g == "canary" for g in groups.values())
    assert detail["groups"]["canary"]["instances_selected"] == canary
    assert detail["groups"]["baseline"]["instances_selected"] == len(IDS) - canary


def test_named_instances_must_be_known_identities(
    circuit: Circuit, operator_api: APIClient
) -> None:
    response = operator_api.post(
        _url(circuit), {"to_version": 1, "instances": ["web-1"]}, format="json"
    )
    assert response.status_code == 400
    assert "to_version" in response.json()["errors"]  # v1 is the current version
    create_config_version(circuit, {"timeout": 5}, expected_version=1, user=None)
    response = operator_api.post(
        _url(circuit), {"to_version": 1, "instances": ["web-1", "db-9"]}, format="json"
    )
    assert response.status_code == 400
    assert "db-9" in response.json()["errors"]["instances"]
    response = operator_api.post(
        _url(circuit), {"to_version": 1, "instances": ["web-1", "web-2"]}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["select"] == {"instances": ["web-1", "web-2"]}
    assert (response.json()["from_version"], response.json()["to_version"]) == (2, 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"config": {"failure_threshold": 3}, "percent": 0}, "percent"),
        ({"config": {"failure_threshold": 3}, "percent": 100}, "percent"),
        ({"config": {"failure_threshold": 3}}, "percent"),
        ({"config": {"failure_threshold": 3}, "percent": 5, "instances": ["web-1"]}, "percent"),
        ({"config": {"failure_threshold": 3}, "instances": []}, "instances"),
        ({"percent": 5}, "to_version"),
        ({"to_version": 9, "percent": 5}, "to_version"),
        ({"to_version": 1, "percent": 5}, "to_version"),
        ({"config": {"failure_threshold": 0}, "percent": 5}, "config.failure_threshold"),
        ({"config": {"timeout": 20}, "percent": 5}, "config"),
        (
            {"config": {"timeout": 9}, "percent": 5, "auto_rollback_margin": -1},
            "auto_rollback_margin",
        ),
        ({"config": {"timeout": 9}, "percent": 5, "reason": "x" * 1001}, "reason"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    circuit: Circuit, operator_api: APIClient, body: dict[str, Any], field: str
) -> None:
    response = operator_api.post(_url(circuit), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not Rollout.objects.exists()


def test_one_active_rollout_per_circuit_and_no_config_change_meanwhile(
    circuit: Circuit, operator_api: APIClient
) -> None:
    body = {"config": {"failure_threshold": 3}, "percent": 30}
    assert operator_api.post(_url(circuit), body, format="json").status_code == 201
    second = operator_api.post(_url(circuit), {**body, "percent": 40}, format="json")
    assert second.status_code == 409
    assert second.json()["field"] == "circuit"
    edit = operator_api.post(
        f"/api/v1/circuits/{circuit.pk}/config/",
        {"expected_version": 1, "config": {"timeout": 9}},
        format="json",
    )
    assert edit.status_code == 409
    assert edit.json()["field"] == "rollout"
    assert ConfigVersion.objects.filter(circuit=circuit).count() == 2


def test_promote_makes_the_canary_version_current_in_one_bump(
    circuit: Circuit, operator_api: APIClient, post_sync: Any, sync_body: Any
) -> None:
    rollout = operator_api.post(
        _url(circuit), {"config": {"failure_threshold": 3}, "percent": 30}, format="json"
    ).json()
    before = Service.objects.get().desired_version
    response = operator_api.post(_url(circuit, f"{rollout['id']}/promote/"), {"reason": "good"})
    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["ended_by"]) == ("promoted", "otto")
    assert Service.objects.get().desired_version == before + 1
    circuit.refresh_from_db()
    assert circuit.current_config.version == 2
    entry = desired(post_sync, sync_body)["breakers"]["db"]
    assert entry["config_version"] == 2 and "canary" not in entry
    event = AuditEvent.objects.get(action="rollout.promote")
    assert (event.actor_name, event.reason, event.after["state"]) == ("otto", "good", "promoted")
    again = operator_api.post(_url(circuit, f"{rollout['id']}/rollback/"))
    assert again.status_code == 409
    assert again.json()["field"] == "state"


def test_rollback_withdraws_the_canary_and_keeps_the_current_config(
    circuit: Circuit, operator_api: APIClient, post_sync: Any, sync_body: Any
) -> None:
    rollout = operator_api.post(
        _url(circuit), {"config": {"failure_threshold": 3}, "percent": 30}, format="json"
    ).json()
    response = operator_api.post(_url(circuit, f"{rollout['id']}/rollback/"), {"reason": "bad"})
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "rolled_back"
    circuit.refresh_from_db()
    assert circuit.current_config.version == 1
    entry = desired(post_sync, sync_body)["breakers"]["db"]
    assert entry["config_version"] == 1 and "canary" not in entry
    assert AuditEvent.objects.get(action="rollout.rollback").actor_name == "otto"
    # The rolled-back version keeps its number: the next edit is v3.
    edit = operator_api.post(
        f"/api/v1/circuits/{circuit.pk}/config/",
        {"expected_version": 1, "config": {"timeout": 9}},
        format="json",
    )
    assert edit.status_code == 201 and edit.json()["version"] == 3


def test_each_group_counts_the_traffic_and_trips_of_the_version_it_runs(
    circuit: Circuit, operator_api: APIClient, report: Any
) -> None:
    rollout = operator_api.post(
        _url(circuit), {"config": {"failure_threshold": 3}, "instances": ["web-1", "web-2"]},
        format="json",
    ).json()  # fmt: skip
    now = timezone.now()
    at = now.isoformat().replace("+00:00", "Z")
    trip = {"id": 1, "breaker": "db", "from": "closed", "to": "open", "at": at,
            "reason": "failure_rate", "failure_rate": 0.5, "calls": 10, "failures": 5}  # fmt: skip
    report("web-1", 2, seq=1, calls=100, failures=30, latency=[[60, 98], [90, 2]],
           transitions=[{**trip, "config_version": 2}])  # fmt: skip
    report("web-2", 2, seq=1, calls=50, failures=10, latency=[[60, 50]],
           transitions=[{**trip, "config_version": 2}])  # fmt: skip
    report("web-3", 1, seq=1, calls=200, failures=4, latency=[[50, 200]],
           transitions=[{**trip, "config_version": 1}])  # fmt: skip
    report("web-4", 1, seq=1, calls=200, failures=2, latency=[[50, 199], [95, 1]])
    # An instance still on another version (an old agent, say) counts in neither group.
    report("web-5", 0, seq=1, calls=999, failures=999)
    groups = operator_api.get(_url(circuit, f"{rollout['id']}/")).json()["groups"]
    canary, baseline = groups["canary"], groups["baseline"]
    assert (canary["calls"], canary["failures"], canary["trips"]) == (150, 40, 2)
    assert (baseline["calls"], baseline["failures"], baseline["trips"]) == (400, 6, 1)
    assert canary["failure_rate"] == pytest.approx(40 / 150)
    assert (canary["instances_selected"], canary["instances_running"]) == (2, 2)
    # web-0 and web-5 to web-9 still report v0 (not applied yet): selected, not running.
    assert (baseline["instances_selected"], baseline["instances_running"]) == (8, 2)
    from breakers.latency import bucket_value

    assert canary["p99"] == pytest.approx(bucket_value(90))  # 2 of 150 calls in bucket 90
    assert baseline["p99"] == pytest.approx(bucket_value(50))  # 1 of 400 above bucket 50
    assert canary["trips_per_instance"] == 1.0 and baseline["trips_per_instance"] == 0.5


def _trip(rollout: Rollout, instance: int, version: int, at: datetime) -> None:
    Transition.objects.create(
        instance_id=instance, circuit=rollout.circuit, seq=Transition.objects.count() + 1,
        from_state="closed", to_state="open", at=at, reason="failure_rate",
        config_version=version, received_at=at,
    )  # fmt: skip


def test_auto_rollback_fires_when_the_canary_trips_more_than_the_margin(
    circuit: Circuit, report: Any
) -> None:
    started = timezone.now()
    rollout = start_rollout(
        circuit, user=None, config={"failure_threshold": 3}, instances=["web-1"],
        auto_rollback_margin=1.0, now=started,
    )  # fmt: skip
    report("web-1", 2)
    web1 = circuit.snapshots.get(instance__instance_id="web-1").instance_id
    web3 = circuit.snapshots.get(instance__instance_id="web-3").instance_id
    _trip(rollout, web1, 2, started + timedelta(seconds=5))
    _trip(rollout, web1, 2, started + timedelta(seconds=6))
    _trip(rollout, web3, 1, started + timedelta(seconds=7))
    # canary 2 trips on 1 instance, baseline 1 on 9: 2 - 0.11 > 1 at +10 s, but at +5.5 s
    # the canary had tripped once: 1 - 0 is not above the margin.
    assert evaluate_auto_rollbacks(now=started + timedelta(seconds=5.5)) == []
    assert Rollout.objects.get().state == "active"
    assert evaluate_auto_rollbacks(now=started + timedelta(seconds=10)) == [rollout.pk]
    rollout.refresh_from_db()
    assert (rollout.state, rollout.ended_by) == ("rolled_back", None)
    event = AuditEvent.objects.get(action="rollout.rollback")
    assert event.actor_name == "system"
    assert "2.00 times per instance" in event.reason
    assert evaluate_auto_rollbacks(now=started + timedelta(seconds=20)) == []


def test_without_a_margin_or_a_canary_instance_nothing_rolls_back(
    circuit: Circuit, report: Any
) -> None:
    started = timezone.now()
    rollout = start_rollout(
        circuit, user=None, config={"failure_threshold": 3}, instances=["web-1"], now=started
    )
    web1 = circuit.snapshots.get(instance__instance_id="web-1").instance_id
    _trip(rollout, web1, 2, started + timedelta(seconds=1))
    assert evaluate_auto_rollbacks(now=started + timedelta(seconds=5)) == []  # no margin
    Rollout.objects.filter(pk=rollout.pk).update(auto_rollback_margin=0.0)
    # web-1 has not applied v2 yet: no instance runs the canary, nothing to compare.
    assert evaluate_auto_rollbacks(now=started + timedelta(seconds=5)) == []
    assert Rollout.objects.get().state == "active"


# ------------------------------------------------------------------ permissions


def test_a_viewer_reads_rollouts_but_cannot_start_promote_or_roll_back(
    circuit: Circuit, viewer_api: APIClient, operator: User
) -> None:
    rollout = start_rollout(circuit, user=operator, config={"timeout": 9}, percent=50)
    assert viewer_api.get(_url(circuit)).status_code == 200
    assert viewer_api.get(_url(circuit, f"{rollout.pk}/")).status_code == 200
    body = {"config": {"timeout": 8}, "percent": 10}
    assert viewer_api.post(_url(circuit), body, format="json").status_code == 403
    assert viewer_api.post(_url(circuit, f"{rollout.pk}/promote/")).status_code == 403
    assert viewer_api.post(_url(circuit, f"{rollout.pk}/rollback/")).status_code == 403
    assert Rollout.objects.get().state == "active"
    assert not AuditEvent.objects.filter(action__startswith="rollout.", actor_name="vera").exists()


@pytest.mark.parametrize(
    ("role", "side", "status"),
    [
        ("team_operator", "A", 201),
        ("team_admin", "A", 201),
        ("team_viewer", "A", 403),
        ("team_operator", "B", 404),
        ("global_viewer", "A", 403),
    ],
)
def test_team_roles_decide_who_starts_a_rollout(
    world: dict[str, Side], api_client_for: Any, role: str, side: str, status: int
) -> None:
    circuit = world[side].circuit
    create_config_version(circuit, {"timeout": 7}, expected_version=0, user=None)
    client = api_client_for(_user(role, world))
    response = client.post(_url(circuit), {"config": {"timeout": 9}, "percent": 20}, format="json")
    assert response.status_code == status, response.content
    assert Rollout.objects.filter(circuit=circuit).count() == (1 if status == 201 else 0)


def test_rollout_urls_need_a_signed_in_user(circuit: Circuit, client: Any) -> None:
    assert client.get(_url(circuit)).status_code in (401, 403)
    assert client.post(_url(circuit), {}).status_code in (401, 403)


def test_the_rollout_list_is_newest_first(circuit: Circuit, operator_api: APIClient) -> None:
    first = start_rollout(
        circuit, user=None, config={"timeout": 9}, percent=50,
        now=datetime(2026, 12, 1, tzinfo=UTC),
    )  # fmt: skip
    operator_api.post(_url(circuit, f"{first.pk}/rollback/"))
    operator_api.post(_url(circuit), {"config": {"timeout": 8}, "percent": 20}, format="json")
    rows = operator_api.get(_url(circuit)).json()["results"]
    assert [r["state"] for r in rows] == ["active", "rolled_back"]
