"""The open_too_long lifecycle against a plain reference model: random trips, failed
probes, closes, acknowledgements and time steps on two instances of one circuit; after
every evaluation the stored alerts and notifications match the model's."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from alert_helpers import T0, Fleet
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.alerts.evaluate import evaluate
from controlplane.alerts.models import Alert, AlertRule, Channel, Notification
from controlplane.circuits.models import Service

DURATION, REPEAT = 120, 300
INSTANCES = ("web-1", "web-2")


@dataclass
class Model:
    """What should be stored: per instance its state and episode start; the open alert."""

    state: dict[str, str] = field(default_factory=lambda: dict.fromkeys(INSTANCES, "closed"))
    episode: dict[str, datetime | None] = field(default_factory=lambda: dict.fromkeys(INSTANCES))
    open_alert: bool = False
    acked: bool = False
    last_notified: datetime | None = None
    firing_sent: int = 0
    resolved_sent: int = 0
    alerts: int = 0

    def evaluate(self, now: datetime) -> None:
        starts = [self.episode[i] for i in INSTANCES if self.state[i] != "closed"]
        start = min((s for s in starts if s is not None), default=None)
        match = start is not None and start <= now - timedelta(seconds=DURATION)
        if self.open_alert and not match:
            if self.last_notified is not None:
                self.resolved_sent += 1
            self.open_alert, self.acked, self.last_notified = False, False, None
        elif match and not self.open_alert:
            self.open_alert, self.alerts = True, self.alerts + 1
            self.firing_sent += 1
            self.last_notified = now
        elif match and not self.acked:
            assert self.last_notified is not None
            if self.last_notified <= now - timedelta(seconds=REPEAT):
                self.firing_sent += 1
                self.last_notified = now


wait = st.tuples(st.just("wait"), st.integers(1, 200))
steps = st.lists(
    st.one_of(  # waits listed thrice: long episodes (and reminders) need time to pass
        st.tuples(st.sampled_from(["trip", "probe_fail", "close"]), st.sampled_from(INSTANCES)),
        wait,
        wait,
        wait,
        st.tuples(st.just("ack"), st.none()),
    ),
    max_size=40,
)


@pytest.mark.django_db
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
def test_open_too_long_lifecycle_matches_the_model(steps) -> None:
    with transaction.atomic():
        run(steps)
        transaction.set_rollback(True)


def run(steps: list[tuple[str, object]]) -> None:
    fleet = Fleet(Service.objects.create(name="model"))
    db = fleet.circuit("db")
    channel = Channel.objects.create(
        name="m", kind="webhook", config={"url": "http://127.0.0.1:9/", "secret": "x" * 16}
    )
    rule = AlertRule.objects.create(
        name="open", kind="open_too_long", params={"duration": DURATION}, repeat_interval=REPEAT
    )
    rule.channels.set([channel])
    model, now = Model(), T0
    # Agents report and a cycle runs after every step.
    for op, arg in steps:
        now += timedelta(seconds=1)  # every step at its own instant
        if op == "wait":
            now += timedelta(seconds=int(arg))  # type: ignore[call-overload]
        elif op == "trip" and model.state[arg] == "closed":  # type: ignore[index]
            fleet.move(db, "closed", "open", now, instance=str(arg))
            model.state[arg], model.episode[arg] = "open", now  # type: ignore[index]
        elif op == "probe_fail" and model.state[arg] == "open":  # type: ignore[index]
            fleet.move(db, "open", "half_open", now, instance=str(arg))
            fleet.move(db, "half_open", "open", now + timedelta(milliseconds=1), instance=str(arg))
        elif op == "close" and model.state[arg] == "open":  # type: ignore[index]
            fleet.move(db, "open", "closed", now, instance=str(arg))
            model.state[arg], model.episode[arg] = "closed", None  # type: ignore[index]
        elif op == "ack" and model.open_alert:
            Alert.objects.filter(rule=rule, status__in=["pending", "firing"]).update(
                acknowledged_at=now
            )
            model.acked = True
        for instance in INSTANCES:
            fleet.report(db, model.state[instance], now, instance=instance)
        evaluate(now=now)
        model.evaluate(now)
        check(rule, model)


def check(rule: AlertRule, model: Model) -> None:
    alerts = Alert.objects.filter(rule=rule)
    open_alerts = alerts.filter(status__in=["pending", "firing"])
    assert open_alerts.count() == int(model.open_alert)
    assert alerts.count() == model.alerts
    notes = Notification.objects.filter(alert__rule=rule)
    assert notes.filter(event="firing").count() == model.firing_sent
    assert notes.filter(event="resolved").count() == model.resolved_sent
