"""Drills: a circuit forced open on some of its instances for a bounded time, released
automatically, with the outcome recorded (docs/drills.md).

A drill names, at its start, the agent instances it forces (a share of the circuit's
live instances drawn at random, at least one, or instances named by the operator) and
its end. The service's desired state carries it under the breaker's ``drill`` key; each
listed agent forces its breaker open and releases it at ``until`` by its own clock, as
it does an expiring override, so a drill never outlives its bound even while the
control plane is down. The server ends it too: at once when an operator ends it early,
else when it is due (the periodic task, and any sync of the service that sees it past
its end), at ``ends_at`` exactly. Each is one transaction that writes the row, an audit
event and bumps the service's desired version, like every other change of desired state.

The outcome is read from the circuit's traffic (docs/traffic.md) over the 10-second
buckets that hold the drill, compared with as long a span right before it, and from the
transitions of the drilled instances; it is computed when the drill ends and again until
the reports of its last bucket are in (``final_at``).
"""

import logging
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from controlplane.circuits import events
from controlplane.circuits.choices import AuditAction, CircuitState, DrillEnd
from controlplane.circuits.desired import drill_wire, isoformat
from controlplane.circuits.models import Circuit, Drill, Override, Snapshot, Traffic10s, Transition
from controlplane.circuits.operations import change_desired_state, lock_circuit
from controlplane.circuits.querysets import live_cutoff
from controlplane.core.audit import MAX_REASON_LENGTH

logger = logging.getLogger(__name__)

# Instances one drill may name (a share draws from every live instance).
MAX_NAMED_INSTANCES = 1000
# The traffic tables' bucket, seconds: the outcome's window is whole buckets.
BUCKET_SECONDS = Traffic10s.step
TRAFFIC_FIELDS = ("calls", "successes", "failures", "rejected", "fallbacks")


class DrillInvalidError(ValueError):
    """A drill request that breaks a rule; ``field`` names the parameter at fault."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class DrillConflictError(Exception):
    """A drill that cannot start now (another one runs, or an override is in force)."""

    def __init__(self, field: str, reason: str, **extra: Any) -> None:
        self.field = field
        self.reason = reason
        self.extra = extra
        super().__init__(reason)


class NotRunningError(Exception):
    """End of a drill that is no longer running."""


def drill_state(drill: Drill, now: datetime | None = None) -> Literal["running", "ended"]:
    """``running`` until it was ended or its end passed (agents release it then)."""
    now = now or timezone.now()
    return "running" if drill.ended_at is None and drill.ends_at > now else "ended"


def live_instance_ids(circuit: Circuit, now: datetime | None = None) -> list[str]:
    """Agent instance ids of the circuit's live instances, sorted."""
    return sorted(
        Snapshot.objects.filter(
            circuit=circuit, instance__last_seen__gte=live_cutoff(now)
        ).values_list("instance__instance_id", flat=True)
    )


def share_count(live: int, share: int) -> int:
    """How many of ``live`` instances a share (percent) drills: rounded down, at least one."""
    return max(1, min(live, live * share // 100))


def _check(
    *,
    reason: Any,
    duration: Any,
    share: Any,
    instances: Any,
) -> tuple[str, float]:
    if not isinstance(reason, str) or not reason.strip():
        raise DrillInvalidError("reason", "must not be empty")
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise DrillInvalidError(
            "reason", f"must be at most {MAX_REASON_LENGTH} characters, got {len(reason)}"
        )
    longest = settings.SWITCHYARD_DRILL_MAX_SECONDS
    number = isinstance(duration, int | float) and not isinstance(duration, bool)
    if not number or not math.isfinite(duration) or not 1 <= duration <= longest:
        raise DrillInvalidError(
            "duration", f"must be a number of seconds between 1 and {longest}, got {duration!r}"
        )
    if (share is None) == (instances is None):
        raise DrillInvalidError("share", "give either share (percent) or instances, not both")
    if share is not None and (
        isinstance(share, bool) or not isinstance(share, int) or not 1 <= share <= 100
    ):
        raise DrillInvalidError(
            "share", f"must be a whole percent between 1 and 100, got {share!r}"
        )
    if instances is not None:
        if not isinstance(instances, list) or not 1 <= len(instances) <= MAX_NAMED_INSTANCES:
            raise DrillInvalidError(
                "instances", f"must be a list of 1 to {MAX_NAMED_INSTANCES} instance ids"
            )
        for i, item in enumerate(instances):
            if not isinstance(item, str) or not item:
                raise DrillInvalidError(f"instances[{i}]", "must be an instance id")
        if len(set(instances)) != len(instances):
            raise DrillInvalidError("instances", "names an instance twice")
    return reason, float(duration)


def _change(
    circuit: Circuit,
    drill: Drill,
    *,
    actor: User | None,
    action: str,
    event: Literal["start", "end", "complete"],
    reason: str,
    before: Any,
    after: Any,
    now: datetime,
) -> None:
    """Audit a drill's change with the circuit's team, bump the service's desired version
    and publish the event after commit (which wakes the agents' watches)."""
    wire = drill_wire(drill)
    change_desired_state(
        circuit,
        actor=actor,
        action=action,
        reason=reason,
        before=before,
        after=after,
        now=now,
        event=lambda version: events.drill_event(
            circuit, action=event, drill=wire, desired_version=version
        ),
    )


def start_drill(
    circuit: Circuit,
    *,
    reason: Any,
    duration: Any,
    share: Any = None,
    instances: Any = None,
    user: User | None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Drill:
    """Force ``circuit`` open for ``duration`` seconds on ``share`` percent of its live
    instances (drawn at random, at least one) or on the named live ``instances``.

    Raises DrillInvalidError naming the parameter at fault, DrillConflictError when a
    drill already runs on the circuit or an override is in force on it.
    """
    reason, seconds = _check(reason=reason, duration=duration, share=share, instances=instances)
    now = now or timezone.now()
    with transaction.atomic():
        circuit = lock_circuit(circuit)
        complete_due_drills(now=now, circuit_id=circuit.pk)
        running = Drill.objects.filter(circuit=circuit, ended_at__isnull=True).first()
        if running is not None:
            raise DrillConflictError(
                "circuit", f"drill {running.pk} is running on this circuit", drill=running.pk
            )
        if Override.objects.filter(circuit=circuit).in_force(now).exists():
            raise DrillConflictError(
                "circuit", "an override is in force on this circuit: release it first"
            )
        live = live_instance_ids(circuit, now)
        if share is not None:
            if not live:
                raise DrillInvalidError("share", "the circuit has no live instance")
            chosen = sorted(
                (rng or random.SystemRandom()).sample(live, share_count(len(live), share))
            )
        else:
            known = set(live)
            for i, name in enumerate(instances):
                if name not in known:
                    raise DrillInvalidError(
                        f"instances[{i}]", f"{name!r} is not a live instance of this circuit"
                    )
            chosen = sorted(instances)
        # The circuit's row lock orders starts; the unique constraint stands behind it.
        drill = Drill.objects.create(
            circuit=circuit,
            share=share,
            instances=chosen,
            live_instances=len(live),
            reason=reason,
            created_by=user,
            started_at=now,
            ends_at=now + timedelta(seconds=seconds),
        )
        _change(
            circuit,
            drill,
            actor=user,
            action=AuditAction.DRILL_START,
            event="start",
            reason=reason,
            before=None,
            after=_audit_wire(drill),
            now=now,
        )
    return drill


def end_drill(
    drill: Drill, *, user: User | None, reason: str = "", now: datetime | None = None
) -> Drill:
    """End a running drill early (its agents release the circuit at once); raises
    NotRunningError when it already ended or is past its end."""
    if not isinstance(reason, str) or len(reason.strip()) > MAX_REASON_LENGTH:
        raise DrillInvalidError("reason", f"must be text of at most {MAX_REASON_LENGTH} characters")
    now = now or timezone.now()
    with transaction.atomic():
        circuit = lock_circuit(drill.circuit)
        drill = Drill.objects.select_for_update().get(pk=drill.pk)
        if drill_state(drill, now) != "running":
            raise NotRunningError(f"drill {drill.pk} is not running")
        _finish(
            circuit,
            drill,
            at=now,
            user=user,
            end_reason=DrillEnd.STOPPED,
            reason=reason.strip(),
            now=now,
        )
    return drill


def _finish(
    circuit: Circuit,
    drill: Drill,
    *,
    at: datetime,
    user: User | None,
    end_reason: str,
    reason: str,
    now: datetime,
) -> None:
    before = _audit_wire(drill)
    drill.ended_at = at
    drill.ended_by = user
    drill.end_reason = end_reason
    drill.outcome = outcome(drill)
    drill.outcome_final = now >= final_at(drill)
    drill.save(update_fields=["ended_at", "ended_by", "end_reason", "outcome", "outcome_final"])
    stopped = end_reason == DrillEnd.STOPPED
    _change(
        circuit,
        drill,
        actor=user,
        action=AuditAction.DRILL_END if stopped else AuditAction.DRILL_COMPLETE,
        event="end" if stopped else "complete",
        reason=reason,
        before=before,
        after=_audit_wire(drill),
        now=now,
    )


def complete_due_drills(
    *, now: datetime | None = None, service_id: int | None = None, circuit_id: int | None = None
) -> int:
    """End every drill past its end (of one service or circuit, or all), at its end, by
    the system; returns how many. Each is claimed by a conditional UPDATE, so the
    periodic task and syncs running at once end it once. One indexed query when none is due.
    """
    now = now or timezone.now()
    due = Drill.objects.filter(ended_at__isnull=True, ends_at__lte=now)
    if service_id is not None:
        due = due.filter(circuit__service_id=service_id)
    if circuit_id is not None:
        due = due.filter(circuit_id=circuit_id)
    ended = 0
    for drill in due.select_related("circuit"):
        with transaction.atomic():
            claimed = Drill.objects.filter(pk=drill.pk, ended_at__isnull=True).update(
                ended_at=drill.ends_at, end_reason=DrillEnd.COMPLETED
            )
            if not claimed:
                continue
            ended += 1
            _finish(
                drill.circuit,
                drill,
                at=drill.ends_at,
                user=None,
                end_reason=DrillEnd.COMPLETED,
                reason=drill.reason,
                now=now,
            )
            logger.info("drill %s of %s ran to its end", drill.pk, drill.circuit)
    return ended


def settle_outcomes(*, now: datetime | None = None) -> int:
    """Compute again the outcome of ended drills whose last reports may still arrive, and
    mark it final once they are in; returns how many were computed."""
    now = now or timezone.now()
    settled = 0
    for drill in Drill.objects.filter(ended_at__isnull=False, outcome_final=False):
        drill.outcome = outcome(drill)
        drill.outcome_final = now >= final_at(drill)
        drill.save(update_fields=["outcome", "outcome_final"])
        settled += 1
    return settled


def run_drills(now: datetime | None = None) -> dict[str, int]:
    """The periodic work: end the drills that are due, settle the ended ones' outcomes."""
    now = now or timezone.now()
    return {"completed": complete_due_drills(now=now), "settled": settle_outcomes(now=now)}


# -- the outcome -------------------------------------------------------------------------


def _floor(at: datetime) -> datetime:
    seconds = math.floor(at.timestamp() / BUCKET_SECONDS) * BUCKET_SECONDS
    return datetime.fromtimestamp(seconds, tz=UTC)


def _ceil(at: datetime) -> datetime:
    seconds = math.ceil(at.timestamp() / BUCKET_SECONDS) * BUCKET_SECONDS
    return datetime.fromtimestamp(seconds, tz=UTC)


def window(drill: Drill) -> tuple[datetime, datetime]:
    """The traffic buckets holding the drill: [start of the first, end of the last)."""
    end = drill.ended_at or drill.ends_at
    start = _floor(drill.started_at)
    return start, max(_ceil(end), start + timedelta(seconds=BUCKET_SECONDS))


def final_at(drill: Drill) -> datetime:
    """When the reports of the drill's last bucket are in: agents cut a report at each
    bucket's end and send it with their next sync (within a poll interval); two intervals
    leave room for a sync that failed once."""
    return window(drill)[1] + timedelta(seconds=2 * settings.SWITCHYARD_POLL_INTERVAL)


def _rates(totals: dict[str, int]) -> dict[str, Any]:
    calls, rejected = totals["calls"], totals["rejected"]
    requests = calls + rejected
    return {
        **totals,
        # Failed over the calls that ran; rejected and answered by a fallback over every
        # request (the calls that ran and those refused), percent; null without any.
        "error_rate": 100 * totals["failures"] / calls if calls else None,
        "rejected_rate": 100 * rejected / requests if requests else None,
        "fallback_rate": 100 * totals["fallbacks"] / requests if requests else None,
    }


def traffic_totals(circuit_id: int, start: datetime, end: datetime) -> dict[str, Any]:
    """The circuit's traffic, every instance added up, in the buckets of [start, end)."""
    sums = Traffic10s.objects.filter(
        circuit_id=circuit_id, bucket__gte=start, bucket__lt=end
    ).aggregate(**{field: Sum(field) for field in TRAFFIC_FIELDS})
    return _rates({field: int(sums[field] or 0) for field in TRAFFIC_FIELDS})


def _instances(drill: Drill, until: datetime) -> list[dict[str, Any]]:
    """Per drilled instance: when it reported forcing the breaker open for the drill, and
    when it reported leaving forced_open after that (the agents' own clocks)."""
    rows = (
        Transition.objects.filter(
            circuit_id=drill.circuit_id,
            instance__instance_id__in=drill.instances,
            at__gte=drill.started_at - timedelta(seconds=BUCKET_SECONDS),
            at__lt=until,
        )
        .order_by("at", "id")
        .values_list("instance__instance_id", "from_state", "to_state", "at")
    )
    seen: dict[str, dict[str, Any]] = {
        name: {"instance": name, "forced_at": None, "released_at": None} for name in drill.instances
    }
    for name, from_state, to_state, at in rows:
        entry = seen[name]
        if entry["forced_at"] is None:
            if to_state == CircuitState.FORCED_OPEN and at >= drill.started_at - timedelta(
                seconds=1
            ):
                entry["forced_at"] = isoformat(at)
        elif entry["released_at"] is None and from_state == CircuitState.FORCED_OPEN:
            entry["released_at"] = isoformat(at)
    return list(seen.values())


def outcome(drill: Drill) -> dict[str, Any]:
    """What the drill did: the circuit's traffic over the buckets holding it (``during``)
    and over as long a span right before (``before``), every instance of the circuit
    added up (the traffic tables are per circuit); and per drilled instance, from its
    transitions, when it forced the breaker open and when it released it."""
    start, end = window(drill)
    span = end - start
    return {
        "window": {"from": isoformat(start), "to": isoformat(end)},
        "covers": "every instance of the circuit",
        "during": traffic_totals(drill.circuit_id, start, end),
        "before": traffic_totals(drill.circuit_id, start - span, start),
        "instances": _instances(drill, final_at(drill)),
    }


def _audit_wire(drill: Drill) -> dict[str, Any]:
    return {
        "drill": drill.pk,
        "instances": list(drill.instances),
        "share": drill.share,
        "started_at": isoformat(drill.started_at),
        "ends_at": isoformat(drill.ends_at),
        "ended_at": isoformat(drill.ended_at),
        "end_reason": drill.end_reason or None,
    }
