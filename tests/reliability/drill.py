"""One fault drill: a fleet in steady traffic, a fault held for a while, recovery, and
the count of every acknowledged transition against the database."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.reliability.checks import Tally, tally
from tests.reliability.costs import report_cost, wait_until
from tests.reliability.fleet import SERVICE, Fleet, agent_record, outage


@dataclass
class DrillResult:
    fault: str
    held: float  # seconds the fault was in place
    restore: float  # seconds restoring took (a restart up to its first healthy answer)
    recovered: float  # from the restore to every agent syncing again
    outage: float  # the longest an agent went without a successful sync
    retried: int  # sync exchanges that failed and were retried
    watch_retried: int  # long polls that failed and were retried
    errors_5xx: int
    produced_during: int  # transitions the breakers produced while the fault lasted
    acked_during: int  # transitions acknowledged while the fault lasted
    slowest_sync: float  # the longest sync exchange begun while the fault lasted
    tally: Tally
    drained: bool
    extra: dict[str, Any]


def run_drill(
    fault: str,
    url: str,
    token: str,
    inject: Callable[[], None],
    restore: Callable[[], None],
    *,
    seconds: float = 6.0,
    service: str = SERVICE,
    during: Callable[[Fleet, float], None] | None = None,
    **fleet_kwargs: Any,
) -> DrillResult:
    """Run the drill and print its cost; ``during(fleet, started)`` checks the fleet
    while the fault is in place (after ``seconds``, before the restore)."""
    fleet = Fleet(url, token, service=service, **fleet_kwargs).start()
    extra: dict[str, Any] = {}
    try:
        wait_until(
            lambda: all(a.stats()["syncs_ok"] >= 1 for a in fleet.agents) and fleet.acked() >= 20,
            30,
            "steady traffic acknowledged",
        )
        statuses_before = fleet.statuses()
        watch_failed_before = sum(a.stats()["watch_failed"] for a in fleet.agents)
        produced_before = fleet.produced()
        acked_before = fleet.acked()
        started = time.monotonic()
        inject()
        wait_until(lambda: time.monotonic() - started >= seconds, seconds + 5, "the fault to last")
        if during is not None:
            during(fleet, started)
        produced_during = fleet.produced() - produced_before
        acked_during = fleet.acked() - acked_before
        held = time.monotonic() - started
        restore_started = time.monotonic()
        restore()
        restored = time.monotonic()
        wait_until(
            lambda: all(any(e.ok and e.end >= restored for e in a.exchanges) for a in fleet.agents),
            40,
            "every agent syncing again",
        )
        recovered = time.monotonic() - restored
        acked_then = fleet.acked()
        wait_until(lambda: fleet.acked() >= acked_then + 20, 30, "traffic acknowledged again")
    finally:
        fleet.stop_load()
        drained = fleet.drain(40)
        fleet.stop()
    counted = tally(service, [agent_record(a) for a in fleet.agents])
    statuses = fleet.statuses()
    statuses.subtract(statuses_before)
    result = DrillResult(
        fault=fault,
        held=held,
        restore=restored - restore_started,
        recovered=recovered,
        outage=outage(fleet.agents, started),
        retried=fleet.failed_exchanges(since=started),
        watch_retried=sum(a.stats()["watch_failed"] for a in fleet.agents) - watch_failed_before,
        errors_5xx=sum(n for status, n in statuses.items() if status >= 500),
        produced_during=produced_during,
        acked_during=acked_during,
        slowest_sync=max(
            (
                e.end - e.at
                for a in fleet.agents
                for e in a.exchanges
                if started <= e.at <= started + held
            ),
            default=0.0,
        ),
        tally=counted,
        drained=drained,
        extra=extra,
    )
    report_cost(
        fault,
        held_s=result.held,
        restore_took_s=result.restore,
        every_agent_syncing_again_after_s=result.recovered,
        longest_agent_without_a_sync_s=result.outage,
        syncs_retried=result.retried,
        watches_retried=result.watch_retried,
        answers_5xx=result.errors_5xx,
        slowest_sync_begun_during_the_fault_s=result.slowest_sync,
        produced_during_the_fault=produced_during,
        acknowledged_during_the_fault=acked_during,
    )
    report_cost(fault, **{"count": counted.line()})
    return result


def assert_nothing_lost(result: DrillResult) -> None:
    t = result.tally
    assert result.drained, f"agents still hold unacknowledged transitions: {t.line()}"
    assert t.problems == [], t.problems
    assert t.clean, t.line()
    assert t.produced == t.acked == t.stored, t.line()
    assert result.produced_during > 0, "the breakers produced nothing during the fault"
