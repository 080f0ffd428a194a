"""trip_rise against the same hour of past weeks: a circuit that trips every Monday at
9:00 is expected to, the same trips on a Tuesday are not, and a circuit younger than
the weeks read is judged on its trailing baseline. Real PostgreSQL, time moved with
time_machine (the circuit's ``created_at`` is when it was registered)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from alert_helpers import Fleet

from controlplane.alerts.evaluate import evaluate
from controlplane.alerts.models import Alert, AlertRule
from controlplane.alerts.rules.trip_rise import weekly_windows
from controlplane.circuits.models import Circuit

pytestmark = pytest.mark.django_db

S = timedelta(seconds=1)
WEEK = timedelta(days=7)
MONDAY_9 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # week 5: four Mondays of history before
PER_MONDAY = 5  # trips each past Monday between 9:00 and 9:02 (the rule's 5-minute window)


def registered(fleet: Fleet, name: str, at: datetime) -> Circuit:
    with time_machine.travel(at, tick=False):
        return fleet.circuit(name)


def trips(fleet: Fleet, circuit: Circuit, start: datetime, count: int, spacing=10 * S) -> None:
    for i in range(count):
        fleet.move(circuit, "closed", "open", start + i * spacing)


def every_monday_9(fleet: Fleet, name: str = "batch") -> Circuit:
    """A circuit registered five weeks ago that tripped PER_MONDAY times at 9:00 on each
    of the four Mondays before MONDAY_9, and never otherwise."""
    circuit = registered(fleet, name, MONDAY_9 - 5 * WEEK)
    for week in range(1, 5):
        trips(fleet, circuit, MONDAY_9 - week * WEEK, PER_MONDAY)
    return circuit


def alerted(rule: AlertRule, at: datetime) -> list[tuple[str, str, float]]:
    with time_machine.travel(at, tick=False):
        evaluate()
    return list(
        Alert.objects.filter(rule=rule)
        .order_by("id")
        .values_list("circuit__name", "status", "value")
    )


def test_the_weekly_windows_end_whole_weeks_before_now_and_last_the_window() -> None:
    now = MONDAY_9 + 200 * S
    ranges = weekly_windows(now, 300, 4)
    assert [end for _, end in ranges] == [now - k * WEEK for k in (1, 2, 3, 4)]
    assert {end - start for start, end in ranges} == {300 * S}


def test_monday_9_trips_as_usual_do_not_match(fleet, make_rule):
    rule = make_rule("trip_rise")  # window 300 s, weeks 4
    batch = every_monday_9(fleet)
    trips(fleet, batch, MONDAY_9, PER_MONDAY)
    # lambda = (4 * 5 + 1) / 4 = 5.25; P(X >= 5) ~ 0.60
    assert alerted(rule, MONDAY_9 + 200 * S) == []


def test_monday_9_with_three_times_the_usual_trips_matches(fleet, make_rule):
    rule = make_rule("trip_rise")
    batch = every_monday_9(fleet)
    trips(fleet, batch, MONDAY_9, 3 * PER_MONDAY)
    # lambda = 5.25; P(X >= 15) ~ 3.7e-4 < 0.001
    assert alerted(rule, MONDAY_9 + 200 * S) == [("batch", "firing", 15.0)]


def test_the_monday_count_on_a_tuesday_matches_its_quiet_same_hour(fleet, make_rule):
    rule = make_rule("trip_rise")
    batch = every_monday_9(fleet)
    tuesday = MONDAY_9 + timedelta(days=1)
    trips(fleet, batch, tuesday, PER_MONDAY)
    # No Tuesday 9:00 trip in four weeks: lambda = 1 / 4; P(X >= 5) ~ 6.6e-6
    assert alerted(rule, tuesday + 200 * S) == [("batch", "firing", 5.0)]


def test_the_same_hour_baseline_reads_as_many_weeks_as_asked(fleet, make_rule):
    # Trips on the last Monday only; twice as many now.
    one_week = make_rule("trip_rise", params={"weeks": 1})
    batch = registered(fleet, "batch", MONDAY_9 - 5 * WEEK)
    trips(fleet, batch, MONDAY_9 - WEEK, PER_MONDAY)
    trips(fleet, batch, MONDAY_9, 2 * PER_MONDAY)
    # One week read: lambda = (5 + 1) / 1 = 6; P(X >= 10) ~ 0.084
    assert alerted(one_week, MONDAY_9 + 200 * S) == []
    four_weeks = make_rule("trip_rise", params={"weeks": 4})
    # Four weeks read, three of them quiet: lambda = (5 + 1) / 4 = 1.5; P(X >= 10) ~ 4.1e-6
    assert alerted(four_weeks, MONDAY_9 + 201 * S) == [("batch", "firing", 10.0)]


def test_a_circuit_with_three_days_of_history_is_judged_on_its_trailing_baseline(fleet, make_rule):
    rule = make_rule("trip_rise")
    now = MONDAY_9 + 200 * S
    young = registered(fleet, "young", now - timedelta(days=3))
    old = registered(fleet, "old", now - 5 * WEEK)
    for circuit in (young, old):
        # A trip every 5 minutes through the last day: lambda ~ 1 on the trailing day.
        trips(fleet, circuit, now - 300 * S - timedelta(days=1) + S, 288, 300 * S)
        trips(fleet, circuit, MONDAY_9, 4)
    # young: lambda = (288 + 1) * 300 / 86400 ~ 1.0, P(X >= 4) ~ 0.019: no match.
    # old: its past Mondays at 9:00 were quiet, lambda = 1 / 4, P(X >= 4) ~ 1.3e-4.
    assert alerted(rule, now) == [("old", "firing", 4.0)]


@pytest.mark.parametrize(
    ("registered_before", "weekly"),
    [(timedelta(0), True), (timedelta(seconds=-1), False)],
)
def test_weeks_of_history_means_registered_before_the_earliest_window_read(
    fleet, make_rule, registered_before, weekly
):
    rule = make_rule("trip_rise")
    now = MONDAY_9 + 200 * S
    earliest = weekly_windows(now, 300, 4)[-1][0]
    circuit = registered(fleet, "db", earliest - registered_before)
    # Trailing day: a trip every 5 minutes (no match); same hour of past weeks: none.
    trips(fleet, circuit, now - 300 * S - timedelta(days=1) + S, 288, 300 * S)
    trips(fleet, circuit, MONDAY_9, 4)
    assert bool(alerted(rule, now)) is weekly
