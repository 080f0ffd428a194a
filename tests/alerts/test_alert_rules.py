"""Each rule kind against a history written to the database, time moved with time_machine."""

from datetime import timedelta

import pytest
import time_machine
from alert_helpers import T0, Fleet
from django.core.exceptions import ValidationError

from controlplane.alerts.evaluate import evaluate
from controlplane.alerts.models import Alert, AlertRule, Notification
from controlplane.alerts.rules.trip_rise import expected_trips, poisson_tail
from controlplane.circuits.models import Override
from controlplane.circuits.operations import force_circuit, release_circuit

pytestmark = pytest.mark.django_db

S = timedelta(seconds=1)


def statuses(rule: AlertRule) -> list[str]:
    return list(Alert.objects.filter(rule=rule).order_by("id").values_list("status", flat=True))


def keep_reporting(fleet, circuit, state, start, end, step=5, **kw):
    """Snapshots every ``step`` seconds from start to end, like a syncing agent."""
    at = start
    while at <= end:
        fleet.report(circuit, state, at, **kw)
        at += step * S


def test_open_too_long_fires_after_duration_and_resolves_when_closed(
    fleet, make_rule, webhook_channel
):
    rule = make_rule("open_too_long", params={"duration": 300}, channels=[webhook_channel])
    db = fleet.circuit("db")
    fleet.move(db, "closed", "open", T0)
    fleet.report(db, "open", T0 + 299 * S)
    with time_machine.travel(T0 + 299 * S, tick=False):
        evaluate()
    assert statuses(rule) == []
    fleet.report(db, "open", T0 + 301 * S)
    with time_machine.travel(T0 + 301 * S, tick=False):
        result = evaluate()
    alert = Alert.objects.get(rule=rule)
    assert (alert.status, alert.started_at, alert.fired_at) == ("firing", T0, T0 + 301 * S)
    assert result.fired == 1 and len(result.notifications) == 1
    fleet.move(db, "half_open", "closed", T0 + 400 * S)
    fleet.report(db, "closed", T0 + 400 * S)
    with time_machine.travel(T0 + 401 * S, tick=False):
        result = evaluate()
    assert statuses(rule) == ["resolved"]
    events = Notification.objects.filter(alert=alert).order_by("id").values_list("event", flat=True)
    assert list(events) == ["firing", "resolved"]


def test_flapping_open_half_open_open_does_not_reset_the_timer(fleet, make_rule):
    rule = make_rule("open_too_long", params={"duration": 300})
    db = fleet.circuit("db")
    fleet.move(db, "closed", "open", T0)
    # Every 30 s a probe fails: OPEN -> HALF_OPEN -> OPEN; state_since moves each time.
    for i in range(1, 11):
        fleet.move(db, "open", "half_open", T0 + (30 * i) * S)
        fleet.move(db, "half_open", "open", T0 + (30 * i + 1) * S)
    fleet.report(db, "open", T0 + 310 * S, since=T0 + 301 * S)
    with time_machine.travel(T0 + 310 * S, tick=False):
        evaluate()
    alert = Alert.objects.get(rule=rule)
    assert alert.status == "firing"
    assert alert.started_at == T0


def test_a_closed_episode_in_between_does_restart_the_timer(fleet, make_rule):
    rule = make_rule("open_too_long", params={"duration": 300})
    db = fleet.circuit("db")
    fleet.move(db, "closed", "open", T0)
    fleet.move(db, "open", "half_open", T0 + 30 * S)
    fleet.move(db, "half_open", "closed", T0 + 31 * S)
    fleet.move(db, "closed", "open", T0 + 200 * S)
    fleet.report(db, "open", T0 + 310 * S)
    with time_machine.travel(T0 + 310 * S, tick=False):
        evaluate()
    assert statuses(rule) == []


@pytest.mark.parametrize("closed_ago", [timedelta(hours=2), timedelta(days=3)])
def test_the_episode_starts_at_the_first_trip_after_the_last_close_however_long_ago(
    fleet, make_rule, closed_ago
):
    # A close within a day of now is found in the recent history; an older one by the
    # search of the whole history: the same episode start either way.
    rule = make_rule("open_too_long", params={"duration": 300})
    db = fleet.circuit("db")
    now = T0 + timedelta(days=10)
    fleet.move(db, "closed", "open", now - timedelta(days=8))  # an earlier episode
    fleet.move(db, "half_open", "closed", now - closed_ago - 60 * S)
    fleet.move(db, "closed", "open", now - closed_ago)
    fleet.move(db, "open", "half_open", now - closed_ago + 30 * S)
    fleet.move(db, "half_open", "open", now - closed_ago + 31 * S)
    fleet.report(db, "open", now, since=now - closed_ago + 31 * S)
    with time_machine.travel(now, tick=False):
        evaluate()
    alert = Alert.objects.get(rule=rule)
    assert (alert.status, alert.started_at) == ("firing", now - closed_ago)


def test_forced_open_is_labelled_and_does_not_page_by_default(fleet, make_rule, webhook_channel):
    quiet = make_rule("open_too_long", params={"duration": 60}, channels=[webhook_channel])
    loud = make_rule(
        "open_too_long", params={"duration": 60, "page_forced": True}, channels=[webhook_channel]
    )
    db = fleet.circuit("db")
    fleet.report(db, "forced_open", T0)
    Override.objects.create(circuit=db, state="forced_open", reason="maintenance", created_at=T0)
    with time_machine.travel(T0 + 61 * S, tick=False):
        evaluate()
    for rule in (quiet, loud):
        alert = Alert.objects.get(rule=rule)
        assert (alert.status, alert.forced, alert.labels) == ("firing", True, {"forced": True})
    assert not Notification.objects.filter(alert__rule=quiet).exists()
    assert Notification.objects.filter(alert__rule=loud, event="firing").count() == 1


def test_forcing_closed_resolves_the_open_too_long_alert(fleet, make_rule):
    rule = make_rule("open_too_long", params={"duration": 60})
    db = fleet.circuit("db")
    fleet.move(db, "closed", "open", T0)
    fleet.report(db, "open", T0 + 61 * S)
    with time_machine.travel(T0 + 61 * S, tick=False):
        evaluate()
    assert statuses(rule) == ["firing"]
    force_circuit(db, "forced_closed", reason="ok", user=None, now=T0 + 62 * S)
    fleet.report(db, "open", T0 + 70 * S)  # agents have not applied it yet: still resolved
    with time_machine.travel(T0 + 70 * S, tick=False):
        evaluate()
    assert statuses(rule) == ["resolved"]
    # Released while the breaker is still open: the episode is the breaker's again.
    release_circuit(db, user=None, now=T0 + 80 * S)
    fleet.report(db, "open", T0 + 80 * S)
    with time_machine.travel(T0 + 80 * S, tick=False):
        evaluate()
    assert statuses(rule) == ["resolved", "firing"]


def test_failure_rate_goes_pending_then_fires_after_its_pending_duration(fleet, make_rule):
    rule = make_rule("failure_rate", params={"threshold": 0.5, "for": 60})
    db = fleet.circuit("db")
    fleet.report(db, "closed", T0, failure_rate=0.7)
    with time_machine.travel(T0, tick=False):
        evaluate()
    assert statuses(rule) == ["pending"]
    fleet.report(db, "closed", T0 + 59 * S, failure_rate=0.8)
    with time_machine.travel(T0 + 59 * S, tick=False):
        evaluate()
    assert statuses(rule) == ["pending"]
    fleet.report(db, "closed", T0 + 60 * S, failure_rate=0.8)
    with time_machine.travel(T0 + 60 * S, tick=False):
        evaluate()
    assert statuses(rule) == ["firing"]
    assert Alert.objects.get(rule=rule).value == pytest.approx(0.8)
    fleet.report(db, "closed", T0 + 70 * S, failure_rate=0.5)  # not above 50%
    with time_machine.travel(T0 + 70 * S, tick=False):
        evaluate()
    assert statuses(rule) == ["resolved"]


def test_failure_rate_dip_before_the_pending_duration_never_fires(fleet, make_rule):
    rule = make_rule("failure_rate")  # defaults: 0.5 for 60 s
    db = fleet.circuit("db")
    fleet.report(db, "closed", T0, failure_rate=0.9)
    with time_machine.travel(T0, tick=False):
        evaluate()
    fleet.report(db, "closed", T0 + 30 * S, failure_rate=0.1)
    with time_machine.travel(T0 + 30 * S, tick=False):
        evaluate()
    fleet.report(db, "closed", T0 + 61 * S, failure_rate=0.9)
    with time_machine.travel(T0 + 61 * S, tick=False):
        evaluate()
    assert statuses(rule) == ["resolved", "pending"]


def trips(fleet, circuit, start, count, spacing):
    for i in range(count):
        fleet.move(circuit, "closed", "open", start + i * spacing)


def test_trip_rise_fires_on_a_quiet_history_and_not_on_a_noisy_one(fleet, make_rule):
    rule = make_rule("trip_rise", params={"window": 300, "baseline": 86400, "min_count": 3})
    now = T0 + timedelta(days=1)
    quiet, noisy = fleet.circuit("quiet"), fleet.circuit("noisy")
    trips(fleet, quiet, now - timedelta(hours=20), 1, S)  # one trip in the last day
    trips(fleet, noisy, now - timedelta(hours=23), 270, timedelta(minutes=5))  # ~1 per 5 min
    trips(fleet, quiet, now - 200 * S, 4, 30 * S)
    trips(fleet, noisy, now - 200 * S, 4, 30 * S)
    with time_machine.travel(now, tick=False):
        evaluate()
    alert = Alert.objects.get(rule=rule)
    assert alert.circuit == quiet and alert.status == "firing"
    assert alert.value == 4 and alert.started_at == now - 200 * S
    with time_machine.travel(now + 301 * S, tick=False):
        evaluate()
    assert statuses(rule) == ["resolved"]


def test_trip_rise_needs_min_count(fleet, make_rule):
    rule = make_rule("trip_rise", params={"min_count": 5})
    now = T0 + timedelta(days=1)
    trips(fleet, fleet.circuit("db"), now - 100 * S, 4, 10 * S)
    with time_machine.travel(now, tick=False):
        evaluate()
    assert statuses(rule) == []


def test_poisson_tail_matches_the_documented_formula() -> None:
    lam = expected_trips(0, 300, 86400)
    assert lam == pytest.approx(1 / 288)
    assert poisson_tail(0, lam) == 1.0
    assert poisson_tail(1, 2.0) == pytest.approx(1 - 0.1353352832366127)
    assert poisson_tail(3, 1.0) == pytest.approx(0.0803013970713942)


def test_agent_silent_matches_a_quiet_instance_while_others_report(fleet, make_rule):
    rule = make_rule("agent_silent", params={"after": 60})
    db = fleet.circuit("db")
    fleet.report(db, "closed", T0, instance="web-1")
    fleet.report(db, "closed", T0 + 100 * S, instance="web-2")
    with time_machine.travel(T0 + 100 * S, tick=False):
        evaluate()
    alert = Alert.objects.get(rule=rule)
    assert (alert.status, alert.value, alert.started_at) == ("firing", 1, T0)
    fleet.report(db, "closed", T0 + 110 * S, instance="web-1")  # it came back
    with time_machine.travel(T0 + 110 * S, tick=False):
        evaluate()
    assert statuses(rule) == ["resolved"]


def test_agent_silent_ignores_a_service_that_is_entirely_down(fleet, make_rule):
    rule = make_rule("agent_silent", params={"after": 60})
    db = fleet.circuit("db")
    fleet.report(db, "closed", T0, instance="web-1")
    fleet.report(db, "closed", T0, instance="web-2")
    with time_machine.travel(T0 + 100 * S, tick=False):
        evaluate()
    assert statuses(rule) == []


def test_rules_read_liveness_from_the_instances_last_sync_not_the_rows_write(fleet, make_rule):
    open_long = make_rule("open_too_long", params={"duration": 300})
    failing = make_rule("failure_rate", params={"threshold": 0.5, "for": 0})
    silent = make_rule("agent_silent", params={"after": 60})
    db, cache = fleet.circuit("db"), fleet.circuit("cache")
    # web-1's rows were written at T0 and never since (idle), but web-1 keeps syncing.
    fleet.move(db, "closed", "open", T0)
    fleet.report(db, "open", T0, failure_rate=0.9)
    fleet.sync(T0 + 600 * S)
    # web-2 wrote its rows at T0 + 530 s (long after web-1's) and stopped syncing then:
    # its cache row (open, failing) is not live 71 s later.
    fleet.report(cache, "open", T0 + 530 * S, instance="web-2", failure_rate=0.9)
    fleet.report(db, "closed", T0 + 530 * S, instance="web-2")
    with time_machine.travel(T0 + 601 * S, tick=False):
        evaluate()
    assert set(Alert.objects.filter(rule=open_long).values_list("circuit__name", flat=True)) == {
        "db"
    }
    assert set(Alert.objects.filter(rule=failing).values_list("circuit__name", flat=True)) == {"db"}
    # web-2 went quiet on db while web-1, whose db row is 10 minutes old, is live.
    alert = Alert.objects.get(rule=silent)
    assert (alert.circuit, alert.value) == (db, 1)


def test_rules_are_scoped_to_their_service_or_circuit(fleet, make_rule, other_service):
    other = Fleet(other_service)
    db, cache = fleet.circuit("db"), fleet.circuit("cache")
    far = other.circuit("db")
    for c, f in ((db, fleet), (cache, fleet), (far, other)):
        f.report(c, "closed", T0, failure_rate=0.9)
    by_service = make_rule("failure_rate", params={"for": 0}, service=fleet.service)
    by_circuit = make_rule("failure_rate", params={"for": 0}, circuit=cache)
    everywhere = make_rule("failure_rate", params={"for": 0})
    with time_machine.travel(T0, tick=False):
        evaluate()

    def circuits(rule):
        return set(Alert.objects.filter(rule=rule).values_list("circuit_id", flat=True))

    assert circuits(by_service) == {db.pk, cache.pk}
    assert circuits(by_circuit) == {cache.pk}
    assert circuits(everywhere) == {db.pk, cache.pk, far.pk}


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("open_too_long", {"duration": 0}, "duration"),
        ("open_too_long", {"duration": "5m"}, "duration"),
        ("failure_rate", {"threshold": 1.5}, "threshold"),
        ("trip_rise", {"p_value": True}, "p_value"),
        ("trip_rise", {"weeks": 0}, "weeks"),
        ("trip_rise", {"weeks": 13}, "weeks"),
        ("trip_rise", {"weeks": 2.5}, "weeks"),
        ("trip_rise", {"weeks": "4"}, "weeks"),
        ("agent_silent", {"after": 600, "lookback": 300}, "lookback"),
        ("agent_silent", {"nope": 1}, "nope"),
    ],
)
def test_bad_params_name_the_parameter(kind, params, field) -> None:
    rule = AlertRule(name="x", kind=kind, params=params)
    with pytest.raises(ValidationError) as info:
        rule.full_clean()
    assert field in str(info.value.message_dict["params"])


@pytest.mark.parametrize("weeks", [1, 12, 4.0])
def test_trip_rise_takes_one_to_twelve_whole_weeks(weeks) -> None:
    rule = AlertRule(name="x", kind="trip_rise", params={"weeks": weeks})
    rule.full_clean()
    assert rule.full_params()["weeks"] == weeks
