"""Audit events and transitions cannot be changed or deleted through the admin or the API."""

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from controlplane.circuits.models import AuditEvent, Circuit, Service, Transition
from controlplane.circuits.operations import force_circuit
from controlplane.core.audit import record_audit

pytestmark = pytest.mark.django_db

HISTORY = [("auditevent", AuditEvent), ("transition", Transition)]


@pytest.fixture
def history(post_sync: Any, sync_body: Any, operator: User) -> Circuit:
    """One transition and one audit event of the circuit checkout/db."""
    transition = {
        "id": 1,
        "breaker": "db",
        "from": "closed",
        "to": "open",
        "at": "2026-11-27T10:04:00Z",
        "reason": "failure_threshold",
    }
    body = sync_body(breakers=[{"name": "db", "state": "open"}], transitions=[transition])
    assert post_sync(body).status_code == 200
    circuit = Circuit.objects.get()
    force_circuit(circuit, "forced_open", reason="incident", user=operator)
    assert Transition.objects.count() == AuditEvent.objects.count() == 1
    return circuit


@pytest.fixture
def root(client: Client) -> Client:
    """The test client signed in as a superuser (every permission)."""
    client.force_login(User.objects.create_superuser("root", password="pw-root-123!"))
    return client


@pytest.mark.parametrize(("name", "model"), HISTORY)
def test_superuser_cannot_delete_history_in_the_admin(
    history: Circuit, root: Client, name: str, model: type
) -> None:
    row = model.objects.get()
    changelist = root.get(f"/admin/circuits/{name}/")
    assert changelist.status_code == 200
    assert changelist.context["action_form"] is None  # no bulk action, delete_selected gone
    bulk = root.post(
        f"/admin/circuits/{name}/",
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert root.get(f"/admin/circuits/{name}/{row.pk}/delete/").status_code == 403
    assert root.post(f"/admin/circuits/{name}/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize(("name", "model"), HISTORY)
def test_superuser_cannot_add_or_change_history_in_the_admin(
    history: Circuit, root: Client, name: str, model: type
) -> None:
    row = model.objects.get()
    assert root.get(f"/admin/circuits/{name}/add/").status_code == 403
    assert root.get(f"/admin/circuits/{name}/{row.pk}/change/").status_code == 200  # view only
    assert root.post(f"/admin/circuits/{name}/{row.pk}/change/", {}).status_code == 403
    assert model.objects.count() == 1


def test_deleting_a_service_in_the_admin_cannot_cascade_into_history(
    history: Circuit, root: Client
) -> None:
    service = Service.objects.get()
    page = root.get(f"/admin/circuits/service/{service.pk}/delete/")
    assert page.status_code == 200 and page.context["perms_lacking"]
    # Refused either way: 403, or the page again listing what may not be deleted.
    refused = root.post(f"/admin/circuits/service/{service.pk}/delete/", {"post": "yes"})
    assert refused.status_code in (200, 403)
    assert Service.objects.exists() and Transition.objects.count() == 1


def test_the_api_offers_no_write_on_history(history: Circuit, admin_api: APIClient) -> None:
    event = AuditEvent.objects.get()
    for method in ("post", "put", "patch", "delete"):
        assert getattr(admin_api, method)("/api/v1/audit/", {}, format="json").status_code == 405
        detail = getattr(admin_api, method)(f"/api/v1/audit/{event.pk}/", {}, format="json")
        assert detail.status_code == 405, method
        history_url = f"/api/v1/circuits/{history.pk}/transitions/"
        assert getattr(admin_api, method)(history_url, {}, format="json").status_code == 405
    assert admin_api.get(f"/api/v1/audit/{event.pk}/").status_code == 200
    assert AuditEvent.objects.count() == Transition.objects.count() == 1


def test_record_audit_names_the_system_when_there_is_no_actor(service: Service) -> None:
    event = record_audit(actor=None, action="override.expire", target=service, reason="r")
    assert (event.actor_name, event.target_type, event.target_id) == (
        "system",
        "service",
        str(service.pk),
    )
