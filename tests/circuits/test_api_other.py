"""Services, instances, audit log, health endpoints, schema, docs and admin pages."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from controlplane.circuits.models import Circuit
from controlplane.circuits.operations import force_circuit

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_services_list_counts_circuits_and_live_instances(
    post_sync, sync_body, viewer_api: APIClient, time_machine: Any, other_service: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    post_sync(sync_body(instance={"id": "a"}, breakers=[{"name": "x"}, {"name": "y"}]))
    time_machine.move_to(T0 + timedelta(seconds=20), tick=False)
    post_sync(sync_body(instance={"id": "b"}, breakers=[{"name": "x"}]))
    services = {s["name"]: s for s in viewer_api.get("/api/v1/services/").json()["results"]}
    assert (services["checkout"]["circuits"], services["checkout"]["instances_live"]) == (2, 1)
    assert (services["billing"]["circuits"], services["billing"]["instances_live"]) == (0, 0)
    one = viewer_api.get(f"/api/v1/services/{services['checkout']['id']}/").json()
    assert one["name"] == "checkout"


def test_instances_list_with_live_filter(
    post_sync, sync_body, viewer_api: APIClient, time_machine: Any
) -> None:
    time_machine.move_to(T0, tick=False)
    post_sync(sync_body(instance={"id": "old-1", "hostname": "h-old"}))
    time_machine.move_to(T0 + timedelta(seconds=60), tick=False)
    post_sync(sync_body(instance={"id": "new-1", "hostname": "h-new"}))
    rows = viewer_api.get("/api/v1/instances/").json()["results"]
    assert [(r["instance_id"], r["live"]) for r in rows] == [("new-1", True), ("old-1", False)]
    assert rows[0]["service"] == "checkout" and rows[0]["pid"] == 4242
    live = viewer_api.get("/api/v1/instances/?live=true").json()["results"]
    assert [r["instance_id"] for r in live] == ["new-1"]
    dead = viewer_api.get("/api/v1/instances/?live=false&q=h-OLD").json()["results"]
    assert [r["instance_id"] for r in dead] == ["old-1"]


def test_audit_log_is_readable_by_viewers_and_filterable(
    post_sync, sync_body, viewer_api: APIClient, operator: User
) -> None:
    post_sync(sync_body(breakers=[{"name": "x"}]))
    force_circuit(Circuit.objects.get(), "forced_open", reason="test", user=operator)
    rows = viewer_api.get("/api/v1/audit/?action=override.force").json()["results"]
    assert len(rows) == 1
    row = rows[0]
    assert (row["actor"], row["action"], row["service"], row["target"]) == (
        "otto",
        "override.force",
        "checkout",
        "checkout/x",
    )
    assert row["after"]["state"] == "forced_open"
    assert viewer_api.get("/api/v1/audit/?actor=nobody").json()["results"] == []
    assert viewer_api.post("/api/v1/audit/", {}, format="json").status_code in (403, 405)


def test_health_circuits_needs_a_signed_in_reader(client: Client, api_client_for, db: None) -> None:
    assert client.get("/health/circuits").status_code == 401
    nobody = User.objects.create_user("nobody", password="x")  # in no role group
    assert api_client_for(nobody).get("/health/circuits").status_code == 403


def test_health_circuits_reports_open_circuits(
    post_sync, sync_body, viewer_api, operator: User
) -> None:
    client = viewer_api
    post_sync(sync_body(breakers=[{"name": "db", "state": "open"}, {"name": "cache"}]))
    health = client.get("/health/circuits").json()
    assert health["healthy"] is False
    assert [(c["service"], c["name"], c["state"]) for c in health["open_circuits"]] == [
        ("checkout", "db", "open")
    ]
    assert {c["name"]: c["state"] for c in health["all_circuits"]} == {
        "db": "open",
        "cache": "closed",
    }
    force_circuit(Circuit.objects.get(name="db"), "forced_closed", reason="x", user=operator)
    assert client.get("/health/circuits").json()["healthy"] is True


def test_schema_and_docs_are_served(client: Client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/circuits/",
        "/api/v1/circuits/{id}/override/",
        "/api/v1/circuits/{id}/config/",
        "/api/v1/circuits/{id}/transitions/",
        "/api/v1/services/",
        "/api/v1/instances/",
        "/api/v1/audit/",
    ):
        assert path in paths
    assert set(paths["/api/v1/circuits/{id}/override/"]) >= {"get", "post", "delete"}
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_admin_has_a_page_for_every_model(
    post_sync, sync_body, client: Client, operator: User
) -> None:
    post_sync(
        sync_body(
            breakers=[{"name": "db", "state": "open"}],
            transitions=[
                {
                    "id": 1,
                    "breaker": "db",
                    "from": "closed",
                    "to": "open",
                    "at": "2026-11-27T10:04:00Z",
                    "reason": "failure_threshold",
                }
            ],
        )
    )
    force_circuit(Circuit.objects.get(), "forced_open", reason="x", user=operator)
    superuser = User.objects.create_superuser("root", password="pw-root-123!")
    client.force_login(superuser)
    for model in (
        "service",
        "agenttoken",
        "apitoken",
        "instance",
        "circuit",
        "configversion",
        "snapshot",
        "transition",
        "override",
        "auditevent",
    ):
        changelist = client.get(f"/admin/circuits/{model}/")
        assert changelist.status_code == 200, model
    circuit = Circuit.objects.get()
    assert client.get(f"/admin/circuits/circuit/{circuit.pk}/change/").status_code == 200


def test_admin_revokes_agent_tokens_with_an_audit_event(
    post_sync, sync_body, client: Client, agent_token: str
) -> None:
    from controlplane.circuits.models import AgentToken, AuditEvent

    assert post_sync(sync_body()).status_code == 200
    superuser = User.objects.create_superuser("root", password="pw-root-123!")
    client.force_login(superuser)
    token = AgentToken.objects.get()
    response = client.post(
        "/admin/circuits/agenttoken/",
        {"action": "revoke_agent_tokens", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.get(action="agent_token.revoke").actor_name == "root"
    assert post_sync(sync_body()).status_code == 401
