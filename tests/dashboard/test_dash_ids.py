"""Ids in the dashboard's query strings are parsed strictly: a bad list is a 400 naming
the parameter and the reason, never a 500 or a silently shortened list."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.test import Client

from controlplane.circuits.models import Circuit, Service
from dashboard.params import MAX_ID, MAX_IDS

pytestmark = pytest.mark.django_db


@pytest.fixture
def circuits() -> list[Circuit]:
    service = Service.objects.create(name="checkout")
    return [Circuit.objects.create(service=service, name=name) for name in ("db", "payments")]


def _tiles(client: Client, ids: str) -> tuple[int, dict]:
    response = client.get(f"/?format=json&ids={quote(ids, safe=',')}")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("ids", "reason"),
    [
        ("²", "item 0 must be an id (ASCII digits, at most {max}), got '²'"),
        ("1,x", "item 1 must be an id (ASCII digits, at most {max}), got 'x'"),
        ("-1", "item 0 must be an id (ASCII digits, at most {max}), got '-1'"),
        ("+1", "item 0 must be an id (ASCII digits, at most {max}), got '+1'"),
        (" 1", "item 0 must be an id (ASCII digits, at most {max}), got ' 1'"),
        ("1_0", "item 0 must be an id (ASCII digits, at most {max}), got '1_0'"),
        ("٣", "item 0 must be an id (ASCII digits, at most {max}), got '٣'"),  # Arabic-Indic 3
        ("1,,2", "item 1 is empty"),
        ("1,", "item 1 is empty"),
        (",1", "item 0 is empty"),
        ("", "must name at least one id"),
        (str(MAX_ID + 1), "item 0 must be an id (ASCII digits, at most {max}), got '{big}'"),
        ("9" * 5000, "item 0 must be an id (ASCII digits, at most {max}), got '{nines}...'"),
        (",".join(["1"] * (MAX_IDS + 1)), f"at most {MAX_IDS} ids, got {MAX_IDS + 1}"),
    ],
)
def test_a_bad_ids_list_is_400_naming_ids_and_the_reason(
    as_viewer: Client, circuits: list[Circuit], ids: str, reason: str
) -> None:
    status, body = _tiles(as_viewer, ids)
    expected = reason.format(max=MAX_ID, big=MAX_ID + 1, nines="9" * 20)
    assert status == 400, body
    assert body["errors"] == {"ids": expected}
    assert body["field"] == "ids"


def test_good_ids_lists_get_their_tiles(as_viewer: Client, circuits: list[Circuit]) -> None:
    db, payments = circuits
    status, body = _tiles(as_viewer, f"{payments.pk},{db.pk},{payments.pk}")
    assert status == 200
    assert sorted(t["key"] for t in body["tiles"]) == ["checkout/db", "checkout/payments"]
    # At the bounds: the most ids, the largest id (no such circuit: no tile).
    many = ",".join([str(db.pk)] * (MAX_IDS - 1) + [str(MAX_ID)])
    status, body = _tiles(as_viewer, many)
    assert status == 200
    assert [t["key"] for t in body["tiles"]] == ["checkout/db"]
    assert _tiles(as_viewer, "0") == (200, {"tiles": []})


@pytest.mark.parametrize("alert", ["²", "-1", "", str(MAX_ID + 1), "1 "])
def test_the_silence_form_refuses_a_bad_alert_id(as_operator: Client, alert: str) -> None:
    response = as_operator.get(f"/alerts/silence?alert={quote(alert)}")
    assert response.status_code == 400
    assert response.content.decode().startswith("alert: must be an id (ASCII digits")


def test_the_silence_form_takes_a_plain_alert_id(as_operator: Client) -> None:
    assert as_operator.get(f"/alerts/silence?alert={MAX_ID}").status_code == 404
