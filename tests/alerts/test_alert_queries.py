"""Evaluation and /metrics are set-based: their query counts do not grow with the fleet."""

from datetime import timedelta

import pytest
from alert_helpers import T0
from django.db import connection
from django.test.utils import CaptureQueriesContext

from controlplane.alerts.evaluate import evaluate

pytestmark = pytest.mark.django_db
S = timedelta(seconds=1)


def grow(fleet, start: int, count: int) -> None:
    for i in range(start, start + count):
        c = fleet.circuit(f"dep{i}")
        fleet.move(c, "closed", "open", T0)
        fleet.report(c, "open", T0 + 100 * S, failure_rate=0.9)


def queries(fn) -> int:
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured)


def test_an_evaluation_cycle_costs_the_same_queries_for_5_or_60_circuits(
    fleet, make_rule, webhook_channel
):
    for kind in ("open_too_long", "failure_rate", "trip_rise", "agent_silent"):
        make_rule(kind, params={"duration": 60} if kind == "open_too_long" else {},
                  channels=[webhook_channel])  # fmt: skip
    grow(fleet, 0, 5)
    small = queries(lambda: evaluate(now=T0 + 100 * S))
    grow(fleet, 5, 55)
    big = queries(lambda: evaluate(now=T0 + 101 * S))
    assert big == small


def test_metrics_cost_the_same_queries_for_5_or_60_circuits(fleet, viewer_api):
    grow(fleet, 0, 5)
    viewer_api.get("/metrics")  # the token's first use records last_used_at
    small = queries(lambda: viewer_api.get("/metrics"))
    grow(fleet, 5, 55)
    big = queries(lambda: viewer_api.get("/metrics"))
    assert big == small
