"""The series API (docs/traffic.md): known traffic in, the figures it must give out;
bounds, permissions, roll-ups read where they have got to, bands from transitions."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from rest_framework.test import APIClient

from breakers.latency import bucket_index
from controlplane.circuits.models import Circuit, Service, Traffic10s
from controlplane.circuits.rollup import rollup
from tests.circuits.sync_helpers import parse_sync, store_sync

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
T0 = int(NOW.timestamp()) - 600  # ten minutes ago, on the 10-second grid


def _sync(
    service: Service, sync_body: Any, instance: str, seq: int, bucket: int, **growth: Any
) -> None:
    body = sync_body(
        instance={"id": instance},
        breakers=[{"name": "db"}],
        telemetry=[{"seq": seq, "bucket": bucket, "breakers": [{"name": "db", **growth}]}],
    )
    store_sync(service, parse_sync(body))


def _get(api: APIClient, path: str, **params: Any) -> Any:
    return api.get(path, params, format="json")


@pytest.fixture
def traffic(service: Service, sync_body: Any) -> dict[str, Any]:
    """Two instances, 30 buckets (five minutes): known calls, failures, rejections and
    latencies. Returns the circuit and every duration recorded."""
    rng = random.Random(7)
    durations: list[float] = []
    with time_machine.travel(NOW, tick=False):
        for n in range(30):
            for i, instance in enumerate(("web-1", "web-2")):
                sample = [rng.lognormvariate(math.log(0.05), 0.6) for _ in range(50 + 10 * i)]
                durations.extend(sample)
                latency: dict[int, int] = {}
                for d in sample:
                    latency[bucket_index(d)] = latency.get(bucket_index(d), 0) + 1
                _sync(
                    service,
                    sync_body,
                    instance,
                    n + 1,
                    T0 + 10 * n,
                    calls=len(sample),
                    successes=len(sample) - 5,
                    failures=5,
                    rejected=2,
                    latency=sorted(latency.items()),
                )
    return {"circuit": Circuit.objects.get(name="db"), "durations": sorted(durations)}


def test_the_series_gives_the_rates_and_percentiles_of_what_was_recorded(
    viewer_api: APIClient, traffic: dict[str, Any]
) -> None:
    circuit = traffic["circuit"]
    start = datetime.fromtimestamp(T0, tz=UTC)
    with time_machine.travel(NOW, tick=False):
        answer = _get(
            viewer_api,
            f"/api/v1/circuits/{circuit.pk}/series/",
            metric=["calls", "failure_rate", "rejected", "p50", "p99"],
            **{"from": start.isoformat(), "to": (start + timedelta(seconds=300)).isoformat()},
            step=300,
        )
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert (data["step"], data["times"]) == (300, [T0])
    assert data["units"] == {
        "calls": "1/s",
        "failure_rate": "%",
        "rejected": "1/s",
        "p50": "s",
        "p99": "s",
    }
    calls = 30 * (50 + 60)
    assert data["series"]["calls"] == [pytest.approx(calls / 300)]
    assert data["series"]["failure_rate"] == [pytest.approx(100 * 30 * 10 / calls)]
    assert data["series"]["rejected"] == [pytest.approx(30 * 4 / 300)]
    exact = traffic["durations"]
    for metric, q in (("p50", 0.5), ("p99", 0.99)):
        truth = exact[max(0, math.ceil(q * len(exact)) - 1)]
        assert data["series"][metric][0] == pytest.approx(truth, rel=0.05)
    assert data["partial_from"] is None
    assert data["bands"] == []


def test_steps_without_reports_are_null_and_the_step_holding_now_is_partial(
    viewer_api: APIClient, traffic: dict[str, Any]
) -> None:
    circuit = traffic["circuit"]
    with time_machine.travel(NOW, tick=False):
        data = _get(viewer_api, f"/api/v1/circuits/{circuit.pk}/series/", step=60).json()
    # The last hour by default: 60 steps, the last five minutes... of traffic ten
    # minutes ago.
    assert len(data["times"]) == 60
    values = dict(zip(data["times"], data["series"]["calls"], strict=True))
    assert values[T0] == pytest.approx(6 * 110 / 60)
    assert values[T0 + 300] is None
    assert data["partial_from"] is None  # now is on a step boundary: every step has ended


def test_a_service_series_adds_up_its_circuits(
    viewer_api: APIClient, traffic: dict[str, Any], service: Service, sync_body: Any
) -> None:
    with time_machine.travel(NOW, tick=False):
        body = sync_body(
            instance={"id": "web-3"},
            breakers=[{"name": "cache"}],
            telemetry=[{"seq": 1, "bucket": T0, "breakers": [{"name": "cache", "calls": 90}]}],
        )
        store_sync(service, parse_sync(body))
        data = _get(
            viewer_api,
            f"/api/v1/services/{service.pk}/series/",
            **{"from": datetime.fromtimestamp(T0, tz=UTC).isoformat()},
            step=10,
            to=datetime.fromtimestamp(T0 + 10, tz=UTC).isoformat(),
        ).json()
    assert data["service"] == service.pk
    assert data["series"]["calls"] == [pytest.approx((50 + 60 + 90) / 10)]


def test_the_minute_rollup_is_read_where_it_has_got_to(
    viewer_api: APIClient, traffic: dict[str, Any]
) -> None:
    circuit = traffic["circuit"]
    with time_machine.travel(NOW, tick=False):
        rollup(NOW)
        # The 10-second rows are gone: what the answer gives comes from the minute rows.
        Traffic10s.objects.all().delete()
        data = _get(
            viewer_api,
            f"/api/v1/circuits/{circuit.pk}/series/",
            metric=["calls", "p50"],
            **{"from": datetime.fromtimestamp(T0, tz=UTC).isoformat()},
            to=datetime.fromtimestamp(T0 + 300, tz=UTC).isoformat(),
            step=60,
        ).json()
    assert data["series"]["calls"] == [pytest.approx(6 * 110 / 60)] * 5
    assert all(v is not None for v in data["series"]["p50"])


def test_bands_are_the_periods_any_instance_was_not_closed(
    viewer_api: APIClient, service: Service, sync_body: Any
) -> None:
    def transition(tid: int, to: str, at: datetime, frm: str) -> dict[str, Any]:
        return {
            "id": tid,
            "breaker": "db",
            "from": frm,
            "to": to,
            "at": at.isoformat(),
            "reason": "failure_rate" if to == "open" else "timeout_elapsed",
        }

    opened = NOW - timedelta(minutes=20)
    with time_machine.travel(NOW, tick=False):
        for instance, transitions in (
            ("web-1", [transition(1, "open", opened, "closed")]),
            (
                "web-2",
                [
                    transition(1, "open", opened + timedelta(minutes=5), "closed"),
                    transition(2, "half_open", opened + timedelta(minutes=6), "open"),
                    transition(3, "closed", opened + timedelta(minutes=7), "half_open"),
                ],
            ),
        ):
            body = sync_body(
                instance={"id": instance}, breakers=[{"name": "db"}], transitions=transitions
            )
            store_sync(service, parse_sync(body))
        # web-1 closes ten minutes after it opened.
        store_sync(
            service,
            parse_sync(
                sync_body(
                    instance={"id": "web-1"},
                    breakers=[{"name": "db"}],
                    transitions=[transition(2, "closed", opened + timedelta(minutes=10), "open")],
                )
            ),
        )
        circuit = Circuit.objects.get()
        data = _get(
            viewer_api,
            f"/api/v1/circuits/{circuit.pk}/series/",
            **{"from": (opened + timedelta(minutes=2)).isoformat()},
            step=10,
        ).json()
    start = int(opened.timestamp()) + 120
    # Open from before the range until web-1 closes (web-2's half-open is hidden behind
    # web-1 still open).
    assert data["bands"] == [{"from": start, "to": int(opened.timestamp()) + 600, "state": "open"}]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"metric": "latency"}, "metric"),
        ({"step": 15}, "step"),
        ({"step": 5}, "step"),
        ({"step": "ten"}, "step"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-12-05T12:00:00Z", "to": "2026-12-05T11:00:00Z"}, "from"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-12-05T00:00:00Z"}, "from"),
        ({"from": "2026-12-01T00:00:00Z", "to": "2026-12-05T00:00:00Z", "step": 10}, "step"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(
    viewer_api: APIClient, service: Service, params: dict[str, Any], field: str
) -> None:
    circuit = Circuit.objects.create(service=service, name="db")
    answer = _get(viewer_api, f"/api/v1/circuits/{circuit.pk}/series/", **params)
    assert answer.status_code == 400, answer.content
    # The parameter (and for a list, the item: "metric.0").
    assert {key.split(".")[0] for key in answer.json()["errors"]} == {field}, answer.json()


def test_the_series_needs_a_signed_in_viewer(api_client_for: Any, service: Service) -> None:
    circuit = Circuit.objects.create(service=service, name="db")
    for path in (
        f"/api/v1/circuits/{circuit.pk}/series/",
        f"/api/v1/services/{service.pk}/series/",
    ):
        assert api_client_for(None).get(path).status_code in (401, 403)
    assert api_client_for(None).get("/api/v1/circuits/999999/series/").status_code in (401, 403)
