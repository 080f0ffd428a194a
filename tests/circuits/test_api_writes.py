"""Operator writes: force, release, config versions; permissions, audit, 409, CSRF."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from controlplane.circuits import watchhub
from controlplane.circuits.models import AuditEvent, Circuit, ConfigVersion, Override, Service
from controlplane.core import live

pytestmark = pytest.mark.django_db


@pytest.fixture
def circuit(post_sync: Any, sync_body: Any) -> Circuit:
    body = sync_body(breakers=[{"name": "db", "state": "closed", "config": {"timeout": 20}}])
    assert post_sync(body).status_code == 200
    return Circuit.objects.get()


@pytest.fixture
def signals(monkeypatch: pytest.MonkeyPatch) -> Any:
    """What the watch hub's change feed is told (and still tells the hubs)."""
    received: list[dict[str, Any]] = []
    announce = watchhub.announce

    def recording(service_id: int, desired_version: int) -> None:
        received.append({"service_id": service_id, "desired_version": desired_version})
        announce(service_id, desired_version)

    monkeypatch.setattr(watchhub, "announce", recording)
    return received


def _url(circuit: Circuit, tail: str) -> str:
    return f"/api/v1/circuits/{circuit.pk}/{tail}/"


# ------------------------------------------------------------------ force / release


def test_operator_forces_open_with_expiry_and_it_is_audited(
    circuit: Circuit, operator_api: APIClient, signals: list, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_api.post(
            _url(circuit, "override"),
            {"state": "forced_open", "reason": "db failover", "expires_in": 600},
            format="json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["state"], body["reason"], body["by"], body["circuit"]) == (
        "forced_open",
        "db failover",
        "otto",
        circuit.pk,
    )
    until = datetime.fromisoformat(body["until"])
    assert timedelta(seconds=595) < until - datetime.now(UTC) <= timedelta(seconds=600)
    service = Service.objects.get()
    assert service.desired_version == 1
    assert live.dispatcher().wait_idle(5)  # Redis announcements leave from its thread
    assert signals == [{"service_id": service.pk, "desired_version": 1}]
    event = AuditEvent.objects.get(action="override.force")
    assert (event.actor_name, event.reason, event.target_id) == (
        "otto",
        "db failover",
        str(circuit.pk),
    )
    assert event.before is None and event.after["state"] == "forced_open"
    assert event.service == service


def test_forcing_again_replaces_the_override(circuit: Circuit, operator_api: APIClient) -> None:
    url = _url(circuit, "override")
    operator_api.post(url, {"state": "forced_open", "reason": "a"}, format="json")
    operator_api.post(url, {"state": "forced_closed", "reason": "b"}, format="json")
    assert operator_api.get(url).json()["override"]["state"] == "forced_closed"
    ended = Override.objects.get(state="forced_open")
    assert ended.end_reason == "replaced" and ended.ended_at is not None
    second = AuditEvent.objects.filter(action="override.force").order_by("id").last()
    assert second.before["state"] == "forced_open" and second.after["state"] == "forced_closed"


def test_operator_releases_and_it_is_audited(
    circuit: Circuit, operator_api: APIClient, signals: list, django_capture_on_commit_callbacks
) -> None:
    url = _url(circuit, "override")
    operator_api.post(url, {"state": "forced_open", "reason": "drill"}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        response = operator_api.delete(url, {"reason": "drill over"}, format="json")
    assert response.status_code == 204
    assert operator_api.get(url).json() == {"override": None}
    event = AuditEvent.objects.get(action="override.release")
    assert event.before["state"] == "forced_open" and event.after is None
    assert event.reason == "drill over"
    assert Service.objects.get().desired_version == 2
    assert live.dispatcher().wait_idle(5)
    assert signals[-1]["desired_version"] == 2


def test_release_without_override_is_404(circuit: Circuit, operator_api: APIClient) -> None:
    response = operator_api.delete(_url(circuit, "override"))
    assert response.status_code == 404
    assert "no override in force" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"state": "open", "reason": "x"}, "state"),
        ({"state": "closed", "reason": "x"}, "state"),
        ({"state": "forced_open"}, "reason"),
        ({"state": "forced_open", "reason": ""}, "reason"),
        ({"state": "forced_open", "reason": "x", "expires_in": 0}, "expires_in"),
        ({"state": "forced_open", "reason": "x", "expires_in": 10**9}, "expires_in"),
        ({"state": "forced_open", "reason": "x", "expires_in": "soon"}, "expires_in"),
    ],
)
def test_bad_force_is_400_naming_the_field(
    circuit: Circuit, operator_api: APIClient, body: dict, field: str
) -> None:
    response = operator_api.post(_url(circuit, "override"), body, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert (
        not Override.objects.exists()
        and not AuditEvent.objects.filter(action="override.force").exists()
    )


def test_viewer_is_refused_every_write(circuit: Circuit, viewer_api: APIClient) -> None:
    assert viewer_api.get(_url(circuit, "override")).status_code == 200
    forced = viewer_api.post(
        _url(circuit, "override"), {"state": "forced_open", "reason": "x"}, format="json"
    )
    released = viewer_api.delete(_url(circuit, "override"))
    edited = viewer_api.post(
        _url(circuit, "config"), {"expected_version": 1, "config": {"timeout": 1}}, format="json"
    )
    assert forced.status_code == released.status_code == edited.status_code == 403
    assert not Override.objects.exists()
    assert ConfigVersion.objects.count() == 1
    assert not AuditEvent.objects.filter(action__startswith="override").exists()


def test_user_without_role_cannot_read(circuit: Circuit, api_client_for: Any) -> None:
    nobody = User.objects.create_user("nobody", password="pw-nobody-123")
    api = api_client_for(nobody)
    assert api.get("/api/v1/circuits/").status_code == 403
    assert api.get("/api/v1/audit/").status_code == 403


def test_admin_may_force(circuit: Circuit, admin_api: APIClient) -> None:
    # The admin group holds every circuits permission, override_circuit included.
    response = admin_api.post(
        _url(circuit, "override"), {"state": "forced_open", "reason": "x"}, format="json"
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "header", [None, "Bearer syu_wrong", "Bearer sya_agent-token-is-not-a-user-token", "Token x"]
)
def test_missing_or_bad_api_token_is_401(circuit: Circuit, header: str | None) -> None:
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/circuits/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('Bearer realm="api"')
    assert response.json()["field"] == "authorization"


def test_agent_token_cannot_use_the_operator_api(circuit: Circuit, agent_token: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {agent_token}")
    assert client.get("/api/v1/circuits/").status_code == 401


# ------------------------------------------------------------------ config versions


def test_operator_creates_a_config_version(
    circuit: Circuit, operator_api: APIClient, post_sync: Any, sync_body: Any
) -> None:
    response = operator_api.post(
        _url(circuit, "config"),
        {"expected_version": 1, "config": {"failure_threshold": 8}, "reason": "flaky upstream"},
        format="json",
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["version"] == 2 and created["created_by"] == "otto"
    # Unchanged fields are kept from version 1 (timeout 20 came from the agent).
    assert created["config"]["failure_threshold"] == 8 and created["config"]["timeout"] == 20.0
    versions = operator_api.get(_url(circuit, "config")).json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    event = AuditEvent.objects.get(action="config.create")
    assert event.before["version"] == 1 and event.after["version"] == 2
    assert event.before["config"]["failure_threshold"] == 5
    assert event.after["config"]["failure_threshold"] == 8
    # Agents get the new version.
    answer = post_sync(sync_body(breakers=[{"name": "db"}])).json()
    assert answer["breakers"]["db"]["config_version"] == 2
    assert answer["desired_version"] == 1


def test_stale_expected_version_is_409(circuit: Circuit, operator_api: APIClient) -> None:
    url = _url(circuit, "config")
    assert (
        operator_api.post(
            url, {"expected_version": 1, "config": {"timeout": 10}}, format="json"
        ).status_code
        == 201
    )
    stale = operator_api.post(
        url, {"expected_version": 1, "config": {"timeout": 99}}, format="json"
    )
    assert stale.status_code == 409
    body = stale.json()
    assert (body["field"], body["expected_version"], body["current_version"]) == (
        "expected_version",
        1,
        2,
    )
    assert body["errors"] == {"expected_version": body["reason"]}
    assert "current version is 2" in body["reason"]
    assert ConfigVersion.objects.filter(circuit=circuit).count() == 2
    assert AuditEvent.objects.filter(action="config.create").count() == 1


@pytest.mark.parametrize(
    ("config", "field", "reason"),
    [
        ({"failure_threshold": 0}, "failure_threshold", "between 1 and"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold", "at most 1"),
        ({"window_type": "sliding"}, "window_type", "'count' or 'time'"),
        ({"bogus": 1}, "bogus", "not a known field"),
        ({"timeout": 100, "max_timeout": 50}, "max_timeout", "at least timeout"),
        ({"failure_threshold": True}, "failure_threshold", "integer"),
    ],
)
def test_invalid_config_is_400_with_the_librarys_reason(
    circuit: Circuit, operator_api: APIClient, config: dict, field: str, reason: str
) -> None:
    response = operator_api.post(
        _url(circuit, "config"), {"expected_version": 1, "config": config}, format="json"
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert reason in errors[f"config.{field}"]
    assert ConfigVersion.objects.count() == 1


def test_config_body_fields_are_required(circuit: Circuit, operator_api: APIClient) -> None:
    response = operator_api.post(_url(circuit, "config"), {"config": {}}, format="json")
    assert response.status_code == 400 and response.json()["field"] == "expected_version"
    response = operator_api.post(
        _url(circuit, "config"), {"expected_version": 1, "config": [1]}, format="json"
    )
    assert response.status_code == 400 and response.json()["field"] == "config"


# ------------------------------------------------------------------ sessions


def test_session_reads_work_and_session_writes_need_csrf(circuit: Circuit, operator: User) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.get("/api/v1/circuits/").status_code == 200
    response = client.post(
        _url(circuit, "override"), {"state": "forced_open", "reason": "x"}, format="json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Override.objects.exists()
    # With the token from the cookie, the same write is accepted.
    client.get("/admin/login/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        _url(circuit, "override"),
        {"state": "forced_open", "reason": "x"},
        format="json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 201


def test_expiry_is_audited_as_system(
    circuit: Circuit, operator_api: APIClient, time_machine: Any
) -> None:
    from controlplane.circuits.operations import expire_overrides

    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    time_machine.move_to(start, tick=False)
    operator_api.post(
        _url(circuit, "override"),
        {"state": "forced_open", "reason": "short", "expires_in": 30},
        format="json",
    )
    assert expire_overrides(now=start + timedelta(seconds=29)) == 0
    assert expire_overrides(now=start + timedelta(seconds=31)) == 1
    assert expire_overrides(now=start + timedelta(seconds=32)) == 0  # claimed once
    event = AuditEvent.objects.get(action="override.expire")
    assert event.actor_name == "system" and event.actor is None
    override = Override.objects.get()
    assert override.end_reason == "expired"
    assert override.ended_at == start + timedelta(seconds=30)
    assert Service.objects.get().desired_version == 2
