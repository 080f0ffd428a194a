"""Hostile input answers a clear 4xx: names with a trailing newline, ids that are not ids."""

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from controlplane.circuits.models import Circuit, Service
from controlplane.core.jsonlimits import depth_error

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


@pytest.mark.django_db
def test_time_filters_take_any_rfc3339_offset_and_refuse_times_beyond_the_calendar(
    viewer_api: APIClient,
) -> None:
    from datetime import UTC, datetime

    from controlplane.circuits.models import AuditEvent

    AuditEvent.objects.create(
        actor_name="root", action="config.update", target_type="circuit", target_id="1",
        target_repr="db", at=datetime(2026, 1, 1, 12, tzinfo=UTC),
    )  # fmt: skip
    # -16:49 is past PostgreSQL's 15:59: the filter hands the database UTC instead.
    # 2026-01-01T00:00-16:49 is 16:49 UTC, after the event; 2025-12-31T19:00-16:49 is
    # 11:49 UTC on the 1st, before it.
    for since, found in (("2026-01-01T00:00:00-16:49", 0), ("2025-12-31T19:00:00-16:49", 1)):
        response = viewer_api.get("/api/v1/audit/", {"since": since})
        assert response.status_code == 200, response.content
        assert len(response.json()["results"]) == found, since
    for name in ("since", "until"):
        for url in ("/api/v1/audit/", "/api/v1/circuits/1/transitions/"):
            response = viewer_api.get(url, {name: "0001-01-01T00:00:00+05:00"})
            if url.startswith("/api/v1/circuits/") and response.status_code == 404:
                continue  # no circuit 1: the id is checked first
            assert response.status_code == 400, (url, response.content)
            assert response.json()["field"] == name


# -- nesting depth ------------------------------------------------------------------------


def _deep(levels: int) -> bytes:
    return b'{"protocol": 1, "x": ' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize("levels", [40, 5_000, 200_000])
def test_deeply_nested_json_is_400_on_the_sync(post_sync: Any, levels: int) -> None:
    response = post_sync(None, raw=_deep(levels))
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["field"] == "body" and "nested deeper than 32" in body["reason"]


def test_an_unclosed_deep_body_is_400_too(post_sync: Any) -> None:
    response = post_sync(None, raw=b"[" * 100_000)
    assert response.status_code == 400
    assert response.json()["field"] == "body"


@pytest.mark.parametrize("levels", [40, 100_000])
def test_deeply_nested_json_is_400_on_the_operator_api(
    operator_api: APIClient, post_sync: Any, sync_body: Any, levels: int
) -> None:
    assert post_sync(sync_body(breakers=[{"name": "db"}])).status_code == 200
    circuit = Circuit.objects.get()
    raw = b'{"state": "forced_open", "reason": ' + b"[" * levels + b"]" * levels + b"}"
    response = operator_api.post(
        f"/api/v1/circuits/{circuit.pk}/override/", data=raw, content_type="application/json"
    )
    assert response.status_code == 400, response.content[:300]
    assert response.json()["field"] == "body"
    assert "nested deeper than" in response.json()["reason"]


def test_brackets_inside_strings_do_not_count(post_sync: Any, sync_body: Any) -> None:
    body = sync_body(breakers=[{"name": "db"}], instance={"hostname": "[{" * 100 + '\\"'})
    assert post_sync(body).status_code == 200


def _nesting(value: Any) -> int:
    children = value.values() if isinstance(value, dict) else value
    if not isinstance(value, dict | list):
        return 0
    return 1 + max((_nesting(child) for child in children), default=0)


@pytest.mark.parametrize(
    "value",
    [
        {"a": "[" * 50, "b": "]]]]" * 20},
        {"a": '\\"[[[[[[[[[[[[[[[[[[[[', "b": [[[[1]]]]},
        {"a": "\\", "b": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
        [{"k": [{"k": [{"k": [{"k": [{"k": [{"k": [{"k": [{"k": [{"k": []}]}]}]}]}]}]}]}]}] * 5,
        {"x": [{"y": [{}]}] * 40, "z": "{" * 100},
    ],
)
def test_the_depth_measure_agrees_with_the_parsed_value(value: Any) -> None:
    raw = json.dumps(value).encode()
    assert (depth_error(raw, 32) is not None) == (_nesting(json.loads(raw)) > 32), raw[:80]
    assert (depth_error(raw, 8) is not None) == (_nesting(json.loads(raw)) > 8), raw[:80]


def test_the_depth_setting_is_honoured(post_sync: Any, settings: Any) -> None:
    settings.SWITCHYARD_JSON_MAX_DEPTH = 8
    assert "deeper than 8" in post_sync(None, raw=_deep(8)).json()["reason"]
    assert post_sync(None, raw=_deep(6)).json()["field"] != "body"


# -- characters PostgreSQL cannot store ----------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hostname", "web\x00evil"),
        ("hostname", "web\u0007"),
        ("hostname", "web\ud800"),
        ("library_version", "0.1\x00"),
        ("id", "web\x00"),
    ],
)
def test_control_characters_in_instance_fields_are_400(
    post_sync: Any, sync_body: Any, field: str, value: str
) -> None:
    body = sync_body(breakers=[{"name": "db"}], instance={field: value})
    response = post_sync(body)
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    # A lone surrogate is not UTF-8: the body itself is refused as malformed.
    assert f"instance.{field}" in errors or ("\ud800" in value and "malformed" in errors["body"])
    assert not Circuit.objects.exists()


@pytest.mark.parametrize(
    "where", ["breakers[0].name", "transitions[0].breaker", "service", "transitions[0].reason"]
)
def test_nul_in_names_and_reasons_is_400(post_sync: Any, sync_body: Any, where: str) -> None:
    body = sync_body(
        breakers=[{"name": "db"}],
        transitions=[
            {
                "id": 1,
                "breaker": "db",
                "from": "closed",
                "to": "open",
                "at": "2026-11-27T10:04:00Z",
                "reason": "failure_rate",
            }
        ],
    )
    top, _, key = where.partition(".")
    if key:
        name, index = top.rstrip("]").split("[")
        body[name][int(index)][key] += "\x00"
    else:
        body[top] = "checkout\x00"
    response = post_sync(body)
    assert response.status_code == 400, response.content
    assert where in response.json()["errors"]


_HOOK = "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    ("url", "payload", "field"),
    [
        (
            "/api/v1/channels/",
            {"name": "x", "kind": "webhook", "config": {"url": _HOOK, "secret": "s" * 16 + "\x00"}},
            "config.secret",
        ),
        (
            "/api/v1/channels/",
            {"name": "x", "kind": "webhook", "config": {"url": _HOOK, "secret\x00": "s" * 16}},
            "config",
        ),
        (
            "/api/v1/alert-rules/",
            {"name": "r", "kind": "open_too_long", "params": {"duration": "\ud800"}},
            "params.duration",
        ),
        ("/api/v1/alert-rules/", {"name": "r\x00", "kind": "open_too_long"}, "name"),
    ],
)
def test_nul_in_operator_json_fields_is_400(
    admin_api: APIClient, url: str, payload: dict[str, Any], field: str
) -> None:
    # json.dumps escapes a lone surrogate (\ud800), as a hostile client would send it.
    response = admin_api.post(url, json.dumps(payload), content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()


def test_nul_in_operator_reasons_is_400(
    operator_api: APIClient, post_sync: Any, sync_body: Any
) -> None:
    assert post_sync(sync_body(breakers=[{"name": "db"}])).status_code == 200
    circuit = Circuit.objects.get()
    for url, payload in (
        (f"/api/v1/circuits/{circuit.pk}/override/", {"state": "forced_open", "reason": "a\x00"}),
        (
            f"/api/v1/circuits/{circuit.pk}/config/",
            {"expected_version": 1, "config": {}, "reason": "a\x00"},
        ),
    ):
        response = operator_api.post(url, payload, format="json")
        assert response.status_code == 400, response.content
        assert response.json()["field"] == "reason"
