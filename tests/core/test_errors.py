"""Every API error, operator and agent endpoints alike, has the one shape of core.errors."""

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from rest_framework.exceptions import ErrorDetail
from rest_framework.test import APIClient

from controlplane.circuits.models import Circuit
from controlplane.core.errors import error_body, flatten_errors

pytestmark = pytest.mark.django_db


def assert_error(response: Any, status: int, field: str, reason_part: str) -> dict[str, Any]:
    """The response is ``status`` in the one error shape, led by ``field``."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert {"detail", "field", "reason", "errors"} <= set(body)
    assert body["field"] == field
    assert reason_part in body["reason"], body
    assert next(iter(body["errors"].items())) == (field, body["reason"])
    expected = body["reason"] if field == "detail" else f"{field}: {body['reason']}"
    assert body["detail"] == expected
    return body


@pytest.fixture
def circuit(post_sync: Any, sync_body: Any) -> Circuit:
    assert post_sync(sync_body(breakers=[{"name": "db"}])).status_code == 200
    return Circuit.objects.get()


# ------------------------------------------------------------------ 400


def test_400_lists_every_field_with_dotted_paths(circuit: Circuit, operator_api: APIClient) -> None:
    response = operator_api.post(
        f"/api/v1/circuits/{circuit.pk}/config/",
        {"expected_version": "one", "config": {"failure_threshold": 0, "bogus": 1}},
        format="json",
    )
    body = assert_error(response, 400, "expected_version", "integer")
    assert set(body["errors"]) == {"expected_version"}  # the serializer stops at its fields
    response = operator_api.post(
        f"/api/v1/circuits/{circuit.pk}/config/",
        {"expected_version": 1, "config": {"failure_threshold": 0, "bogus": 1}},
        format="json",
    )
    first = response.json()["field"]
    body = assert_error(response, 400, first, "")
    assert set(body["errors"]) == {"config.failure_threshold", "config.bogus"}
    assert "between 1 and" in body["errors"]["config.failure_threshold"]


def test_400_of_a_query_filter_names_the_parameter(viewer_api: APIClient, db: None) -> None:
    response = viewer_api.get("/api/v1/audit/?since=yesterday")
    assert_error(response, 400, "since", "valid date")


def test_400_of_the_sync_has_the_same_shape(post_sync: Any, sync_body: Any) -> None:
    assert_error(post_sync(sync_body(protocol=99)), 400, "protocol", "")


def test_flatten_errors_joins_nested_paths_and_indexes() -> None:
    detail = {
        "name": [ErrorDetail("required"), ErrorDetail("too short")],
        "non_field_errors": [ErrorDetail("pick one")],
        "items": [{}, {"qty": [ErrorDetail("must be positive")]}],
        "config": {"non_field_errors": [ErrorDetail("bad combination")]},
    }
    assert flatten_errors(detail) == {
        "name": "required; too short",
        "detail": "pick one",
        "items[1].qty": "must be positive",
        "config": "bad combination",
    }
    assert flatten_errors([ErrorDetail("top level")]) == {"detail": "top level"}
    assert flatten_errors([{}, {"name": [ErrorDetail("taken")]}]) == {"[1].name": "taken"}
    assert error_body({"detail": "no"}) == {
        "detail": "no",
        "field": "detail",
        "reason": "no",
        "errors": {"detail": "no"},
    }


# ------------------------------------------------------------------ 401


@pytest.mark.parametrize(
    ("header", "challenge"),
    [
        (None, 'Bearer realm="api"'),
        ("Bearer syu_wrong", 'Bearer realm="api", error="invalid_token"'),
    ],
)
def test_401_of_the_operator_api_names_authorization_and_challenges(
    header: str | None, challenge: str, db: None
) -> None:
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/circuits/")
    assert_error(response, 401, "authorization", "")
    assert response["WWW-Authenticate"] == challenge


@pytest.mark.parametrize("header", [None, "Bearer sya_wrong"])
def test_401_of_the_sync_names_authorization_and_challenges(
    client: Client, header: str | None, db: None
) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post("/api/v1/agent/sync", "{}", content_type="application/json", **extra)
    assert_error(response, 401, "authorization", "agent token")
    assert response["WWW-Authenticate"].startswith('Bearer realm="agent"')


# ------------------------------------------------------------------ 403, 404, 405


def test_403_without_the_permission(circuit: Circuit, viewer_api: APIClient) -> None:
    response = viewer_api.post(
        f"/api/v1/circuits/{circuit.pk}/override/",
        {"state": "forced_open", "reason": "x"},
        format="json",
    )
    assert_error(response, 403, "detail", "permission")


def test_403_of_the_sync_for_another_service(
    post_sync: Any, sync_body: Any, other_agent_token: str
) -> None:
    response = post_sync(sync_body(service="checkout"), token=other_agent_token)
    assert_error(response, 403, "service", "belongs to service")


def test_404_unknown_object_and_release_without_override(
    circuit: Circuit, operator_api: APIClient
) -> None:
    assert_error(operator_api.get("/api/v1/circuits/999999/"), 404, "detail", "No Circuit")
    response = operator_api.delete(f"/api/v1/circuits/{circuit.pk}/override/")
    assert_error(response, 404, "detail", "no override in force")


def test_404_of_an_unknown_api_url_and_html_elsewhere(viewer_api: APIClient) -> None:
    assert_error(viewer_api.get("/api/v1/nothing-here/"), 404, "detail", "no API endpoint")
    page = Client().get("/nothing-here/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_400_of_malformed_json_names_the_body(circuit: Circuit, operator_api: APIClient) -> None:
    response = operator_api.post(
        f"/api/v1/circuits/{circuit.pk}/override/", "{not json", content_type="application/json"
    )
    assert_error(response, 400, "body", "JSON parse error")


def test_405_of_the_api_and_of_the_sync(circuit: Circuit, admin_api: APIClient) -> None:
    response = admin_api.delete(f"/api/v1/circuits/{circuit.pk}/")
    assert_error(response, 405, "detail", '"DELETE" not allowed')
    response = Client().get("/api/v1/agent/sync")
    assert_error(response, 405, "detail", '"GET" not allowed')
    assert response["Allow"] == "POST"


# ------------------------------------------------------------------ 409, 413


def test_409_keeps_the_versions_it_compared(circuit: Circuit, operator_api: APIClient) -> None:
    url = f"/api/v1/circuits/{circuit.pk}/config/"
    body = {"expected_version": 1, "config": {"timeout": 10}}
    assert operator_api.post(url, body, format="json").status_code == 201
    body = assert_error(
        operator_api.post(url, body, format="json"), 409, "expected_version", "current version"
    )
    assert (body["expected_version"], body["current_version"]) == (1, 2)


@override_settings(SWITCHYARD_SYNC_MAX_BODY_BYTES=2048)
def test_413_of_the_sync(post_sync: Any, sync_body: Any) -> None:
    raw = json.dumps(sync_body(padding="x" * 4096)).encode()
    assert_error(post_sync(None, raw=raw), 413, "body", "at most 2048 bytes")


def test_session_user_gets_403_not_401(circuit: Circuit, viewer: User) -> None:
    # With a session the first authenticator still answers: a bad token is a 401 even so.
    client = APIClient()
    client.force_login(viewer)
    assert client.get("/api/v1/circuits/").status_code == 200
    client.logout()
    assert_error(client.get("/api/v1/circuits/"), 401, "authorization", "credentials")
