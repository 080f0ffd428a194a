"""Liveness and rates as every reader shows them: a snapshot is live while its
instance syncs (whatever the row's own ``updated_at``), and a rate is a row's counter
growth over the seconds it covers, summed over the circuit's live rows."""

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.circuits.models import Circuit, Instance, Service, Snapshot
from dashboard import tiles

pytestmark = pytest.mark.django_db


def _instance(service: Service, name: str, last_seen: datetime) -> Instance:
    return Instance.objects.create(
        service=service, instance_id=name, first_seen=last_seen, last_seen=last_seen
    )


def _snapshot(instance: Instance, circuit: Circuit, written: datetime, **fields: Any) -> Snapshot:
    return Snapshot.objects.create(
        instance=instance, circuit=circuit, updated_at=written, **{"state": "closed", **fields}
    )


@pytest.fixture
def traffic(service: Service) -> Circuit:
    """checkout/payments on two live instances whose rows were written 10 minutes ago
    (idle since: the rows were not rewritten, their instances synced 1 s ago), each
    50 calls and 10 rejected over 5 s, web-1 open; and a dead instance (last sync 10
    minutes ago) whose row, open with huge deltas, was written just now."""
    now = timezone.now()
    payments = Circuit.objects.create(service=service, name="payments")
    long_ago = now - timedelta(minutes=10)
    for name, state in (("web-1", "open"), ("web-2", "closed")):
        live = _instance(service, name, now - timedelta(seconds=1))
        _snapshot(
            live,
            payments,
            long_ago,
            state=state,
            calls_delta=50,
            rejected_delta=10,
            delta_seconds=5.0,
            state_since=long_ago,
        )
    dead = _instance(service, "web-3", long_ago)
    _snapshot(
        dead,
        payments,
        now,
        state="forced_open",
        calls_delta=1_000_000,
        rejected_delta=500_000,
        delta_seconds=5.0,
    )
    return payments


def test_liveness_is_the_instances_last_sync_not_the_rows_write(traffic: Circuit) -> None:
    circuit = Circuit.objects.with_fleet_state().get(pk=traffic.pk)
    assert circuit.fleet_state == "open"
    assert (circuit.instances_live, circuit.n_open, circuit.n_closed, circuit.n_forced_open) == (
        2,
        1,
        1,
        0,
    )
    (tile,) = tiles.tiles_by_id([traffic.pk])
    assert tile["summary"] == "open on 1 of 2"


def test_a_circuit_whose_instances_all_went_silent_is_unknown(traffic: Circuit) -> None:
    Instance.objects.update(last_seen=timezone.now() - timedelta(minutes=10))
    Snapshot.objects.update(updated_at=timezone.now())
    (tile,) = tiles.tiles_by_id([traffic.pk])
    assert (tile["state"], tile["summary"], tile["call_rate"]) == (
        "unknown",
        "no live instance",
        None,
    )


def test_rates_are_deltas_over_their_seconds_summed_over_live_rows(
    traffic: Circuit, as_viewer: Client, viewer_api: APIClient
) -> None:
    (tile,) = tiles.tiles_by_id([traffic.pk])
    assert (tile["call_rate"], tile["rejected_rate"]) == (20.0, 4.0)
    assert (tile["text"]["call_rate"], tile["text"]["rejected_rate"]) == ("20.0/s", "4.0/s")

    (json_tile,) = as_viewer.get("/?format=json").json()["tiles"]
    assert (json_tile["call_rate"], json_tile["rejected_rate"]) == (20.0, 4.0)

    (api,) = viewer_api.get("/api/v1/circuits/").json()["results"]
    assert (api["call_rate"], api["rejected_rate"]) == (20.0, 4.0)

    html = as_viewer.get("/").content.decode()
    assert '<b data-field="call_rate">20.0/s</b>' in html
    assert '<b data-field="rejected_rate">4.0/s</b>' in html


def test_rows_without_known_seconds_have_no_rate(service: Service) -> None:
    now = timezone.now()
    unknown = Circuit.objects.create(service=service, name="unknown")
    zero = Circuit.objects.create(service=service, name="zero")
    mixed = Circuit.objects.create(service=service, name="mixed")
    a = _instance(service, "a", now)
    b = _instance(service, "b", now)
    _snapshot(a, unknown, now, calls_delta=50, rejected_delta=5, delta_seconds=None)
    _snapshot(a, zero, now, calls_delta=50, rejected_delta=5, delta_seconds=0.0)
    _snapshot(a, mixed, now, calls_delta=50, rejected_delta=5, delta_seconds=None)
    _snapshot(b, mixed, now, calls_delta=30, rejected_delta=3, delta_seconds=10.0)
    by_name = {t["name"]: t for t in tiles.tiles_by_id([unknown.pk, zero.pk, mixed.pk])}
    for name in ("unknown", "zero"):
        assert (by_name[name]["call_rate"], by_name[name]["rejected_rate"]) == (None, None)
        assert by_name[name]["text"]["call_rate"] == "-"
    assert (by_name["mixed"]["call_rate"], by_name["mixed"]["rejected_rate"]) == (3.0, 0.3)


def test_volume_sorts_by_calls_per_second(service: Service, as_viewer: Client) -> None:
    now = timezone.now()
    inst = _instance(service, "a", now)
    # More calls, over a much longer time: fewer calls per second.
    _snapshot(inst, Circuit.objects.create(service=service, name="slow"), now,
              calls_delta=600, delta_seconds=60.0)  # fmt: skip
    _snapshot(inst, Circuit.objects.create(service=service, name="busy"), now,
              calls_delta=100, delta_seconds=5.0)  # fmt: skip
    _snapshot(inst, Circuit.objects.create(service=service, name="idle"), now,
              calls_delta=0, delta_seconds=None)  # fmt: skip
    body = as_viewer.get("/?sort=volume&format=json").json()
    assert [(t["name"], t["call_rate"]) for t in body["tiles"]] == [
        ("busy", 20.0),
        ("slow", 10.0),
        ("idle", None),
    ]


def test_circuit_page_shows_each_instances_rates_liveness_and_interval(
    traffic: Circuit, as_viewer: Client
) -> None:
    html = as_viewer.get(f"/circuits/{traffic.pk}/").content.decode()
    rows = {
        name: html[html.index(f'<tr data-instance="{name}"') :].split("</tr>", 1)[0]
        for name in ("web-1", "web-2", "web-3")
    }
    for name in ("web-1", "web-2"):
        assert 'data-live="yes"' in rows[name]
        assert 'data-field="call_rate">10.0/s</td>' in rows[name]
        assert 'data-field="rejected_rate">2.0/s</td>' in rows[name]
        assert 'data-field="covers">5.0 s</td>' in rows[name]
        assert 'data-field="live">live</td>' in rows[name]
    assert 'data-live="no"' in rows["web-3"] and "not live" in rows["web-3"]
    # The header tile: the fleet's figures, with the same strings as the overview.
    assert '<b data-field="call_rate">20.0/s</b>' in html


def test_api_instance_states_carry_liveness_and_rates(
    traffic: Circuit, viewer_api: APIClient
) -> None:
    body = viewer_api.get(f"/api/v1/circuits/{traffic.pk}/").json()
    assert (body["state"], body["call_rate"], body["rejected_rate"]) == ("open", 20.0, 4.0)
    states = {s["instance"]: s for s in body["instance_states"]}
    assert {name: s["live"] for name, s in states.items()} == {
        "web-1": True,
        "web-2": True,
        "web-3": False,
    }
    assert (states["web-1"]["call_rate"], states["web-1"]["rejected_rate"]) == (10.0, 2.0)
    assert states["web-1"]["delta_seconds"] == 5.0
    assert states["web-3"]["call_rate"] == 200_000.0  # its own figure; not in the fleet's
