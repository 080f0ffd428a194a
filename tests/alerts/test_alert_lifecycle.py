"""Lifecycle: repeat interval, acknowledge, silences, and two evaluations racing."""

import threading
from datetime import timedelta

import pytest
import time_machine
from alert_helpers import T0
from django.db import connection

from controlplane.alerts.evaluate import evaluate
from controlplane.alerts.models import Alert, Notification, Silence

S = timedelta(seconds=1)


def open_circuit(fleet, name="db"):
    circuit = fleet.circuit(name)
    fleet.move(circuit, "closed", "open", T0)
    return circuit


def at(seconds: int):
    return time_machine.travel(T0 + seconds * S, tick=False)


def firing_rounds(rule) -> list[int]:
    rows = Notification.objects.filter(alert__rule=rule, event="firing").order_by("round")
    return list(rows.values_list("round", flat=True))


@pytest.mark.django_db
def test_repeat_interval_reminds_until_acknowledged(fleet, make_rule, webhook_channel):
    rule = make_rule(
        "open_too_long", params={"duration": 60}, repeat_interval=600, channels=[webhook_channel]
    )
    db = open_circuit(fleet)
    for second in (61, 300, 661, 900, 1261):
        fleet.report(db, "open", T0 + second * S)
        with at(second):
            evaluate()
    assert firing_rounds(rule) == [1, 2, 3]
    alert = Alert.objects.get(rule=rule)
    alert.acknowledged_at = T0 + 1300 * S
    alert.save()
    fleet.report(db, "open", T0 + 2000 * S)
    with at(2000):
        evaluate()
    assert firing_rounds(rule) == [1, 2, 3]
    fleet.move(db, "half_open", "closed", T0 + 2001 * S)
    fleet.report(db, "closed", T0 + 2001 * S)
    with at(2001):
        evaluate()
    assert Notification.objects.filter(alert=alert, event="resolved").count() == 1


@pytest.mark.django_db
def test_a_silenced_alert_fires_quietly_and_notifies_when_the_silence_ends(
    fleet, make_rule, webhook_channel, other_service
):
    rule = make_rule("open_too_long", params={"duration": 60}, channels=[webhook_channel])
    db = open_circuit(fleet)
    Silence.objects.create(
        service=fleet.service, starts_at=T0, expires_at=T0 + 120 * S, reason="deploy"
    )
    Silence.objects.create(  # matches nothing here: another service
        service=other_service, starts_at=T0, expires_at=T0 + 9999 * S, reason="other"
    )
    fleet.report(db, "open", T0 + 61 * S)
    with at(61):
        evaluate()
    assert Alert.objects.get(rule=rule).status == "firing"
    assert firing_rounds(rule) == []
    fleet.report(db, "open", T0 + 121 * S)
    with at(121):
        evaluate()
    assert firing_rounds(rule) == [1]


@pytest.mark.django_db
def test_a_silence_on_another_rule_or_circuit_does_not_mute(fleet, make_rule, webhook_channel):
    rule = make_rule("open_too_long", params={"duration": 60}, channels=[webhook_channel])
    other_rule = make_rule("failure_rate")
    db, cache = open_circuit(fleet), fleet.circuit("cache")
    Silence.objects.create(rule=other_rule, starts_at=T0, expires_at=T0 + 999 * S, reason="x")
    Silence.objects.create(circuit=cache, starts_at=T0, expires_at=T0 + 999 * S, reason="y")
    fleet.report(db, "open", T0 + 61 * S)
    with at(61):
        evaluate()
    assert firing_rounds(rule) == [1]


@pytest.mark.django_db
def test_a_resolved_alert_that_never_notified_sends_no_resolved(fleet, make_rule, webhook_channel):
    rule = make_rule("failure_rate", params={"for": 60}, channels=[webhook_channel])
    db = fleet.circuit("db")
    fleet.report(db, "closed", T0, failure_rate=0.9)
    with at(0):
        evaluate()
    fleet.report(db, "closed", T0 + 10 * S, failure_rate=0.0)
    with at(10):
        evaluate()
    assert Alert.objects.get(rule=rule).status == "resolved"
    assert not Notification.objects.exists()


@pytest.mark.django_db
def test_a_new_episode_opens_a_new_alert(fleet, make_rule):
    rule = make_rule("failure_rate", params={"for": 0})
    db = fleet.circuit("db")
    for second, rate in ((0, 0.9), (10, 0.1), (20, 0.9)):
        fleet.report(db, "closed", T0 + second * S, failure_rate=rate)
        with at(second):
            evaluate()
    assert list(
        Alert.objects.filter(rule=rule).order_by("id").values_list("status", flat=True)
    ) == [
        "resolved",
        "firing",
    ]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_concurrent_evaluations_open_each_alert_once(fleet, make_rule, webhook_channel):
    rule = make_rule("open_too_long", params={"duration": 60}, channels=[webhook_channel])
    circuits = [fleet.circuit(f"dep{i}") for i in range(200)]
    for c in circuits:
        fleet.move(c, "closed", "open", T0)
        fleet.report(c, "open", T0 + 61 * S)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(second: int) -> None:
        try:
            barrier.wait(timeout=5)
            evaluate(now=T0 + second * S)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(s,)) for s in (61, 62)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert Alert.objects.filter(rule=rule).count() == 200
    assert set(Alert.objects.values_list("status", flat=True)) == {"firing"}
    assert Notification.objects.filter(event="firing").count() == 200
    # A third cycle changes nothing.
    result = evaluate(now=T0 + 70 * S)
    assert (result.created, result.fired, result.notifications) == (0, 0, [])
