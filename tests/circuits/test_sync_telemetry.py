"""Telemetry reports in the sync (docs/traffic.md): parsed strictly, stored exactly once
per process start in whatever order and however often they arrive, and added up per
circuit and 10-second bucket across instances."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from controlplane.circuits.models import Circuit, Instance, Service, Traffic10s
from controlplane.circuits.sync.parse import SyncError
from controlplane.circuits.sync.reports import WINDOW, Watermark
from controlplane.circuits.sync.store import Item, Store
from tests.circuits.sync_helpers import parse_sync, store_sync

pytestmark = pytest.mark.django_db

BUCKET = 1_764_928_800  # 2025-12-05T10:00:00Z


def report(seq: int, bucket: int = BUCKET, **breakers: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": seq,
        "bucket": bucket,
        "breakers": [{"name": n, **g} for n, g in breakers.items()],
    }


def _write(store: Store, service: Service, *bodies: dict[str, Any]) -> list[Item]:
    items = [Item(service.pk, service.name, parse_sync(b), timezone.now()) for b in bodies]
    store.write(items)
    return items


def _row(name: str = "db", bucket: int = BUCKET) -> Traffic10s:
    return Traffic10s.objects.get(
        circuit=Circuit.objects.get(name=name), bucket=datetime.fromtimestamp(bucket, tz=UTC)
    )


# -- the watermark ----------------------------------------------------------------------


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=120), st.randoms())
def test_a_watermark_takes_each_seq_once_in_any_order(seqs: list[int], rnd: random.Random) -> None:
    rnd.shuffle(seqs)
    mark = Watermark()
    taken = [s for s in seqs if mark.take(s)]
    assert sorted(taken) == sorted(set(seqs))
    # Every seq up to the first gap is behind ``through``.
    expected = 0
    while expected + 1 in set(seqs):
        expected += 1
    assert mark.through == expected


def test_a_seq_far_past_the_watermark_moves_it_on() -> None:
    mark = Watermark()
    assert mark.take(2)  # 1 still missing
    assert mark.through == 0
    assert mark.take(WINDOW + 5)  # 1..5 can no longer come: the agent discarded them
    assert mark.through == 5
    assert not mark.take(3)  # left behind
    assert mark.take(6) and mark.through == 6
    assert mark.seen < 1 << WINDOW


# -- parsing ---------------------------------------------------------------------------------


def test_bad_reports_are_refused_naming_each_field(sync_body: Any) -> None:
    with pytest.raises(SyncError) as caught:
        parse_sync(
            sync_body(
                breakers=[{"name": "db"}],
                telemetry=[
                    report(1, bucket=BUCKET + 5, db={"calls": 1}),
                    report(1, db={"calls": 1}),
                    {"seq": 2, "bucket": BUCKET, "breakers": [{"name": "db"}, {"name": "db"}]},
                ],
            )
        )
    assert caught.value.status == 400
    errors = caught.value.errors
    assert errors["telemetry[0].bucket"] == f"must be a multiple of 10, got {BUCKET + 5}"
    assert errors["telemetry[1].seq"] == "duplicate report 1"
    assert errors["telemetry[2].breakers[1].name"] == "duplicate breaker 'db'"


def test_negative_counts_and_too_many_reports_are_refused(sync_body: Any, settings: Any) -> None:
    with pytest.raises(SyncError) as caught:
        parse_sync(sync_body(telemetry=[report(1, db={"calls": -1})]))
    assert caught.value.status == 400
    assert (
        caught.value.errors == {"telemetry[0].breakers[0].calls": "must be an integer >= 0"}
        or "telemetry[0].breakers[0].calls" in caught.value.errors
    )
    settings.SWITCHYARD_SYNC_MAX_REPORTS = 2
    with pytest.raises(SyncError) as caught:
        parse_sync(sync_body(telemetry=[report(i) for i in range(1, 4)]))
    assert caught.value.status == 413
    assert caught.value.errors == {"telemetry": "at most 2 items per sync, got 3"}


def test_a_report_naming_a_breaker_never_reported_is_refused(
    sync_body: Any, service: Service
) -> None:
    with pytest.raises(SyncError) as caught:
        store_sync(
            service,
            parse_sync(
                sync_body(breakers=[{"name": "db"}], telemetry=[report(1, cache={"calls": 1})])
            ),
        )
    assert caught.value.errors == {
        "telemetry[0].breakers[0].name": "unknown breaker 'cache': report it in breakers first"
    }
    assert not Instance.objects.exists()


# -- storing -----------------------------------------------------------------------------------


def test_reports_are_stored_once_however_often_they_come(sync_body: Any, service: Service) -> None:
    first = report(1, db={"calls": 10, "failures": 2, "latency": [[40, 8], [41, 2]]})
    answer = store_sync(
        service, parse_sync(sync_body(breakers=[{"name": "db"}], telemetry=[first]))
    )
    assert answer["telemetry_through"] == 1
    # The answer was lost: the agent sends report 1 again, with report 2.
    second = report(2, bucket=BUCKET + 10, db={"calls": 5, "rejected": 3, "fallbacks": 3})
    answer = store_sync(
        service, parse_sync(sync_body(breakers=[{"name": "db"}], telemetry=[first, second]))
    )
    assert answer["telemetry_through"] == 2
    row = _row()
    assert (row.calls, row.failures, row.latency) == (10, 2, {"40": 8, "41": 2})
    later = _row(bucket=BUCKET + 10)
    assert (later.calls, later.rejected, later.fallbacks) == (5, 3, 3)
    assert Instance.objects.get().telemetry_through == 2


def test_instances_add_up_into_one_row_per_circuit_and_bucket(
    sync_body: Any, service: Service
) -> None:
    store = Store()
    bodies = [
        sync_body(
            instance={"id": f"web-{i}"},
            breakers=[{"name": "db"}],
            telemetry=[report(1, db={"calls": 10 * i, "successes": 10 * i, "latency": [[i, i]]})],
        )
        for i in range(1, 5)
    ]
    _write(store, service, *bodies[:2])  # two writes, as two web processes would
    _write(store, service, *bodies[2:])
    row = _row()
    assert row.calls == row.successes == 100
    assert row.latency == {"1": 1, "2": 2, "3": 3, "4": 4}
    assert Traffic10s.objects.count() == 1


def test_out_of_order_reports_are_each_stored_and_the_answer_covers_the_first_gap(
    sync_body: Any, service: Service
) -> None:
    body = sync_body(breakers=[{"name": "db"}], telemetry=[report(3, db={"calls": 3})])
    assert store_sync(service, parse_sync(body))["telemetry_through"] == 0
    body = sync_body(
        breakers=[{"name": "db"}],
        telemetry=[
            report(1, db={"calls": 1}),
            report(2, db={"calls": 2}),
            report(3, db={"calls": 3}),
        ],
    )
    assert store_sync(service, parse_sync(body))["telemetry_through"] == 3
    assert _row().calls == 6  # 3 once, not twice


def test_a_restarted_process_numbers_its_reports_from_one_again(
    sync_body: Any, service: Service
) -> None:
    body = sync_body(breakers=[{"name": "db"}], telemetry=[report(1, db={"calls": 7})])
    store_sync(service, parse_sync(body))
    restarted = sync_body(
        instance={"started_at": "2026-11-27T11:00:00Z"},
        breakers=[{"name": "db"}],
        telemetry=[report(1, bucket=BUCKET + 10, db={"calls": 4})],
    )
    assert store_sync(service, parse_sync(restarted))["telemetry_through"] == 1
    assert (_row().calls, _row(bucket=BUCKET + 10).calls) == (7, 4)
    instance = Instance.objects.get()
    assert (instance.generation, instance.telemetry_through) == (1, 1)


def test_a_sync_without_reports_keeps_the_watermark(sync_body: Any, service: Service) -> None:
    store_sync(
        service,
        parse_sync(sync_body(breakers=[{"name": "db"}], telemetry=[report(1, db={"calls": 1})])),
    )
    answer = store_sync(service, parse_sync(sync_body(breakers=[{"name": "db"}])))
    assert answer["telemetry_through"] == 1
    assert Instance.objects.get().telemetry_through == 1


def test_dropped_reports_add_up_on_the_instance(sync_body: Any, service: Service) -> None:
    for _ in range(2):
        store_sync(service, parse_sync(sync_body(breakers=[{"name": "db"}], dropped_reports=5)))
    assert Instance.objects.get().dropped_reports == 10


def test_telemetry_costs_two_statements_per_write_whatever_the_number_of_syncs(
    sync_body: Any, service: Service
) -> None:
    store = Store()

    def bodies(seq: int, n: int) -> list[dict[str, Any]]:
        return [
            sync_body(
                instance={"id": f"web-{i}"},
                clock=10.0 * seq,
                breakers=[{"name": f"b{j}"} for j in range(5)],
                telemetry=[
                    report(seq, **{f"b{j}": {"calls": 1, "latency": [[j, 1]]} for j in range(5)})
                ],
            )
            for i in range(n)
        ]

    _write(store, service, *bodies(1, 30))  # registration
    with CaptureQueriesContext(connection) as one:
        _write(store, service, *bodies(2, 1))
    with CaptureQueriesContext(connection) as thirty:
        _write(store, service, *bodies(3, 30))
    assert len(thirty.captured_queries) == len(one.captured_queries)
    traffic = [q for q in thirty.captured_queries if "circuits_traffic10s" in q["sql"]]
    assert len(traffic) == 1
    assert _row("b0").calls == 61
