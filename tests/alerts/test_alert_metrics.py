"""/metrics: fleet figures read from the database at scrape time, behind a token."""

from datetime import timedelta

import pytest
from alert_helpers import Fleet
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from controlplane.alerts.models import Alert
from controlplane.circuits.models import Override

pytestmark = pytest.mark.django_db
S = timedelta(seconds=1)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_need_a_token_unless_public(client, viewer_api, settings):
    assert client.get("/metrics").status_code in (401, 403)
    response = viewer_api.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    settings.SWITCHYARD_METRICS_PUBLIC = True
    assert client.get("/metrics").status_code == 200


def test_metrics_report_states_rates_durations_transitions_instances_and_alerts(
    viewer_api, fleet: Fleet, make_rule
):
    now = timezone.now()
    db, cache, pay = fleet.circuit("db"), fleet.circuit("cache"), fleet.circuit("pay")
    fleet.move(db, "closed", "open", now - 100 * S)
    fleet.move(db, "open", "half_open", now - 50 * S)
    fleet.move(db, "half_open", "open", now - 49 * S)  # flapping: the episode began 100 s ago
    fleet.report(db, "open", now, failure_rate=0.75, since=now - 49 * S)
    fleet.report(cache, "closed", now, failure_rate=0.1)
    fleet.report(pay, "closed", now)
    Override.objects.create(circuit=pay, state="forced_open", reason="x", created_at=now)
    fleet.instance("old", seen=now - timedelta(hours=1))
    rule = make_rule("open_too_long", severity="critical")
    Alert.objects.create(rule=rule, circuit=db, status="firing", started_at=now, created_at=now)

    text = viewer_api.get("/metrics").content.decode()
    got = samples(text)
    svc = ("service", "checkout")
    assert got[("switchyard_circuit_state", (("circuit", "db"), ("forced", "false"), svc))] == 2
    assert got[("switchyard_circuit_state", (("circuit", "cache"), ("forced", "false"), svc))] == 0
    assert got[("switchyard_circuit_state", (("circuit", "pay"), ("forced", "true"), svc))] == 2
    assert got[("switchyard_circuit_failure_rate", (("circuit", "db"), svc))] == 0.75
    duration = got[("switchyard_circuit_open_duration_seconds", (("circuit", "db"), svc))]
    assert 100 <= duration < 130
    assert got[("switchyard_transitions_total", (svc, ("to_state", "open")))] == 2
    assert got[("switchyard_transitions_total", (svc, ("to_state", "half_open")))] == 1
    assert got[("switchyard_instances", (svc, ("status", "live")))] == 1
    assert got[("switchyard_instances", (svc, ("status", "stale")))] == 1
    key = (
        "switchyard_alerts",
        (("rule", rule.name), ("severity", "critical"), ("status", "firing")),
    )
    assert got[key] == 1


TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "text/plain",
        "text/plain; version=0.0.4",
        "text/plain;version=0.0.4;q=0.3,*/*;q=0.1",
        "application/json",  # unknown to the exposition: the text format, not a 406
        "image/png",
    ],
)
def test_metrics_answer_the_text_format_to_any_other_accept(viewer_api, fleet: Fleet, accept):
    fleet.report(fleet.circuit("db"), "open", timezone.now())
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = viewer_api.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == TEXT_0_0_4
    assert "Accept" in response["Vary"]
    got = samples(response.content.decode())
    key = (
        "switchyard_circuit_state",
        (("circuit", "db"), ("forced", "false"), ("service", "checkout")),
    )
    assert got[key] == 2


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0",
        # What Prometheus sends by default.
        "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;"
        "version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    ],
)
def test_metrics_answer_openmetrics_when_asked(viewer_api, fleet: Fleet, accept):
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )

    fleet.report(fleet.circuit("db"), "open", timezone.now())
    response = viewer_api.get("/metrics", HTTP_ACCEPT=accept)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = response.content.decode()
    assert text.endswith("# EOF\n")
    got = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in openmetrics_families(text)
        for sample in family.samples
    }
    key = (
        "switchyard_circuit_state",
        (("circuit", "db"), ("forced", "false"), ("service", "checkout")),
    )
    assert got[key] == 2


def test_metrics_refusals_are_json_whatever_the_accept(client):
    for accept in ("text/plain", "application/openmetrics-text", "image/png"):
        response = client.get("/metrics", HTTP_ACCEPT=accept)
        assert response.status_code in (401, 403), accept
        assert response["Content-Type"] == "application/json"
        assert response.json()["field"] in ("authorization", "detail")


def test_metrics_count_a_row_live_while_its_instance_syncs(viewer_api, fleet: Fleet):
    now = timezone.now()
    db, cache = fleet.circuit("db"), fleet.circuit("cache")
    # web-1's db row was written 10 minutes ago, and web-1 synced just now.
    fleet.report(db, "open", now - 600 * S, failure_rate=0.75)
    fleet.sync(now)
    # web-2's cache row was written just now, but web-2 has not synced since.
    fleet.report(cache, "open", now, instance="web-2", failure_rate=0.5)
    fleet.sync(now - 600 * S, instance="web-2")

    got = samples(viewer_api.get("/metrics").content.decode())
    rate = "switchyard_circuit_failure_rate"
    assert got[(rate, (("circuit", "db"), ("service", "checkout")))] == 0.75
    assert (rate, (("circuit", "cache"), ("service", "checkout"))) not in got
    state = "switchyard_circuit_state"
    assert got[(state, (("circuit", "db"), ("forced", "false"), ("service", "checkout")))] == 2
    assert not any(k[0] == state and ("circuit", "cache") in k[1] for k in got)
