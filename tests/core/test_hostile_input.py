"""Hostile input answers a clear 4xx: names with a trailing newline, ids that are not ids."""

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from controlplane.circuits.models import Circuit, Service

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("where", "mutate"),
    [
        ("breakers[0].name", lambda b: b["breakers"][0].update(name="db\n")),
        ("instance.id", lambda b: b["instance"].update(id="web-1\n")),
        ("service", lambda b: b.update(service="checkout\n")),
    ],
)
def test_a_name_ending_in_a_newline_is_refused(
    post_sync: Any, sync_body: Any, where: str, mutate: Any
) -> None:
    body = sync_body(breakers=[{"name": "db"}])
    mutate(body)
    response = post_sync(body)
    assert response.status_code == 400, response.content
    assert "must match" in response.json()["errors"][where]
    assert not Circuit.objects.exists()


def test_the_model_refuses_a_name_ending_in_a_newline() -> None:
    with pytest.raises(ValidationError) as refused:
        Service(name="checkout\n").full_clean()
    assert "name" in refused.value.message_dict
    Service(name="checkout").full_clean()


@pytest.mark.parametrize("bad_id", ["abc", "1.5", "-1", "1e3", "99999999999999999999", "%00"])
@pytest.mark.parametrize("below", ["", "transitions/", "config/", "override/"])
def test_a_circuit_id_that_is_not_an_integer_is_404_in_the_error_shape(
    viewer_api: APIClient, operator_api: APIClient, bad_id: str, below: str
) -> None:
    url = f"/api/v1/circuits/{bad_id}/{below}"
    for client, method in ((viewer_api, "get"), (operator_api, "post")):
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 404, (method, url, response.content)
        body = response.json()
        assert body["field"] == "detail" and body["errors"] == {"detail": body["reason"]}


def test_every_api_collection_routes_integer_ids_only(viewer_api: APIClient) -> None:
    for collection in ("services", "circuits", "instances", "audit", "alerts", "alert-rules"):
        assert viewer_api.get(f"/api/v1/{collection}/x/").status_code == 404
        assert viewer_api.get(f"/api/v1/{collection}/1/").status_code in (403, 404)
