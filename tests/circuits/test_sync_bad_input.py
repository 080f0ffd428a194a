"""Bad sync requests get 400 or 413 naming the field and the reason; nothing is stored."""

import json
from typing import Any

import pytest
from django.test import override_settings

from controlplane.circuits.models import Circuit, Instance, Transition

pytestmark = pytest.mark.django_db


def _assert_rejected(response: Any, status: int, field: str, reason_part: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert field in body["errors"], body
    assert reason_part in body["errors"][field], body
    assert body["field"] and body["reason"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"\xff\xfe", b'{"protocol": 1,'],
    ids=["garbage", "empty", "not-utf8", "truncated"],
)
def test_malformed_json_is_400(post_sync, raw: bytes) -> None:
    _assert_rejected(post_sync(None, raw=raw), 400, "body", "malformed JSON")


def test_body_must_be_an_object(post_sync) -> None:
    _assert_rejected(post_sync([1, 2]), 400, "body", "must be a JSON object")


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda b: b.pop("instance"), "instance", "is required"),
        (lambda b: b.update(instance="web-1"), "instance", "must be an object"),
        (lambda b: b["instance"].update(id=""), "instance.id", "must match"),
        (lambda b: b["instance"].update(id="x" * 201), "instance.id", "at most 200"),
        (lambda b: b["instance"].update(id="has space"), "instance.id", "must match"),
        (lambda b: b["instance"].update(pid="1234"), "instance.pid", "must be an integer"),
        (lambda b: b["instance"].update(pid=True), "instance.pid", "must be an integer"),
        (lambda b: b["instance"].update(started_at="yesterday"), "instance.started_at", "ISO-8601"),
        (
            lambda b: b["instance"].update(started_at="2026-11-27T10:00:00"),
            "instance.started_at",
            "time zone",
        ),
        (lambda b: b.update(protocol=2), "protocol", "must be 1"),
        (lambda b: b.update(breakers={"db": {}}), "breakers", "must be a list"),
        (lambda b: b["breakers"][0].update(state="exploded"), "breakers[0].state", "one of"),
        (lambda b: b["breakers"][0].update(name=None), "breakers[0].name", "must be a string"),
        (lambda b: b["breakers"][0].update(name="n" * 201), "breakers[0].name", "at most 200"),
        (lambda b: b["breakers"][0].update(calls=-1), "breakers[0].calls", ">= 0"),
        (lambda b: b["breakers"][0].update(calls=1.5), "breakers[0].calls", "integer"),
        (
            lambda b: b["breakers"][0].update(failure_rate=1.5),
            "breakers[0].failure_rate",
            "<= 1",
        ),
        (
            lambda b: b["breakers"][0].update(config={"failure_threshold": 0}),
            "breakers[0].config.failure_threshold",
            "between 1 and",
        ),
        (
            lambda b: b["breakers"][0].update(config={"no_such_field": 1}),
            "breakers[0].config.no_such_field",
            "not a known field",
        ),
        (lambda b: b["breakers"][0].update(config=[1]), "breakers[0].config", "must be an object"),
        (lambda b: b["breakers"].append(dict(b["breakers"][0])), "breakers[1].name", "duplicate"),
        (lambda b: b["transitions"][0].update(id=0), "transitions[0].id", ">= 1"),
        (lambda b: b["transitions"][0].update(id="7"), "transitions[0].id", "integer"),
        (lambda b: b["transitions"][0].update(to="sideways"), "transitions[0].to", "one of"),
        (lambda b: b["transitions"][0].update(reason="bored"), "transitions[0].reason", "one of"),
        (lambda b: b["transitions"][0].pop("at"), "transitions[0].at", "is required"),
        (
            lambda b: b["transitions"][0].update(breaker="ghost"),
            "transitions[0].breaker",
            "unknown breaker",
        ),
        (lambda b: b.update(dropped_transitions=-3), "dropped_transitions", ">= 0"),
        (lambda b: b.update(service="bad name!"), "service", "must match"),
    ],
)
def test_wrong_types_and_unknown_values_are_400(
    post_sync, sync_body, mutate: Any, field: str, reason: str
) -> None:
    body = sync_body(
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
    mutate(body)
    _assert_rejected(post_sync(body), 400, field, reason)
    assert not Transition.objects.exists()
    assert not Circuit.objects.exists()


def test_every_bad_field_is_reported_at_once(post_sync, sync_body) -> None:
    # Values of the right types that break the protocol's rules are all named at once
    # (a value of the wrong type or range stops the decoding: it is named alone).
    body = sync_body(breakers=[{"name": "db", "state": "nope", "config": {"timeout": -1}}])
    body["instance"]["id"] = "no spaces"
    errors = post_sync(body).json()["errors"]
    assert {"breakers[0].state", "breakers[0].config.timeout", "instance.id"} <= set(errors)


@override_settings(SWITCHYARD_SYNC_MAX_BREAKERS=3)
def test_too_many_breakers_is_413(post_sync, sync_body) -> None:
    body = sync_body(breakers=[{"name": f"b{i}"} for i in range(4)])
    _assert_rejected(post_sync(body), 413, "breakers", "at most 3 items per sync, got 4")
    assert not Instance.objects.exists()


@override_settings(SWITCHYARD_SYNC_MAX_TRANSITIONS=2)
def test_too_many_transitions_is_413(post_sync, sync_body) -> None:
    transitions = [
        {
            "id": i,
            "breaker": "db",
            "from": "closed",
            "to": "open",
            "at": "2026-11-27T10:04:00Z",
            "reason": "failure_threshold",
        }
        for i in range(1, 4)
    ]
    body = sync_body(breakers=[{"name": "db"}], transitions=transitions)
    _assert_rejected(post_sync(body), 413, "transitions", "at most 2 items per sync, got 3")


def test_default_limits_are_500_breakers_and_5000_transitions(post_sync, sync_body) -> None:
    body = sync_body(breakers=[{"name": f"b{i}"} for i in range(501)])
    _assert_rejected(post_sync(body), 413, "breakers", "at most 500 items")
    body = sync_body(transitions=[{}] * 5001)
    _assert_rejected(post_sync(body), 413, "transitions", "at most 5000 items")


@override_settings(SWITCHYARD_SYNC_MAX_BODY_BYTES=2048)
def test_oversized_body_is_413(post_sync, sync_body) -> None:
    body = sync_body(breakers=[{"name": "db"}], padding="x" * 4096)
    assert len(json.dumps(body)) > 2048
    _assert_rejected(post_sync(body), 413, "body", "at most 2048 bytes")


def test_default_body_limit_is_one_mebibyte(post_sync, sync_body) -> None:
    body = sync_body(padding="x" * (1024 * 1024))
    _assert_rejected(post_sync(body), 413, "body", "at most 1048576 bytes")


def test_rejected_batch_loses_nothing_already_accepted(post_sync, sync_body) -> None:
    good = sync_body(
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
    assert post_sync(good).json()["acked_through"] == 1
    bad = sync_body(
        breakers=[{"name": "db", "state": "closed"}],
        transitions=[
            {
                "id": 2,
                "breaker": "db",
                "from": "open",
                "to": "closed",
                "at": "2026-11-27T10:05:00Z",
                "reason": "nonsense",
            }
        ],
    )
    assert post_sync(bad).status_code == 400
    assert list(Transition.objects.values_list("seq", flat=True)) == [1]
    assert Instance.objects.get().acked_through == 1
    assert Circuit.objects.get().snapshots.get().state == "open"
