"""Shadow evaluations: a candidate config run beside a circuit's config on every
instance without enforcing it (docs/library.md "Shadow evaluation", docs/api.md).

Starting or stopping one is an operator action like a config edit: one transaction that
writes the row, an audit event, bumps the service's desired version (agents receive the
``shadow`` entry of the desired state) and publishes the change. What the candidates
would have done comes back in the agents' telemetry; the sync's store writes it
(:class:`~controlplane.circuits.models.ShadowBucket`, ``ShadowTransition``) and the
functions below read it for the API and the circuit page.
"""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict

from django.conf import settings
from django.contrib.auth.models import User
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Sum
from django.utils import timezone

from breakers.config import CircuitBreakerConfig, config_errors
from controlplane.circuits import events, series
from controlplane.circuits.choices import AuditAction, CircuitState
from controlplane.circuits.desired import shadow_wire
from controlplane.circuits.models import (
    Circuit,
    ConfigVersion,
    ShadowBucket,
    ShadowEvaluation,
    ShadowTransition,
    Transition,
)
from controlplane.circuits.operations import change_desired_state, check_reason, lock_circuit

#: The span of the page's sentence: "would have opened N times in the last hour".
SUMMARY_WINDOW = timedelta(hours=1)
#: The would-be transitions a summary lists (the most recent).
SUMMARY_TRANSITIONS = 20
#: The counters of a bucket, as the store writes them (breakers.wire.SHADOW_COUNTERS).
COUNTERS = ("rejected", "unobserved", "opened", "half_opened", "closed")


class NotRunningError(Exception):
    """Stop of a shadow evaluation on a circuit that runs none."""


class ShadowInvalidError(ValueError):
    """A candidate that cannot be evaluated; ``errors`` maps fields (``config`` holding
    a mapping of wire fields) to reasons, as the API reports them."""

    def __init__(self, errors: dict[str, Any]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k} {v}" for k, v in errors.items()))


def running_shadow(circuit: Circuit) -> ShadowEvaluation | None:
    """The evaluation running on ``circuit``, if any."""
    return (
        ShadowEvaluation.objects.filter(circuit=circuit, ended_at__isnull=True)
        .select_related("created_by")
        .first()
    )


def _candidate(circuit: Circuit, config: Mapping[str, Any] | None, version: int | None) -> Any:
    """(config_version, full config) of the candidate: an existing version of the
    circuit, or changes over its current config (0: not a version)."""
    if (config is None) == (version is None):
        raise ShadowInvalidError({"config": "give either config or config_version"})
    if version is not None:
        found = ConfigVersion.objects.filter(circuit=circuit, version=version).first()
        if found is None:
            raise ShadowInvalidError({"config_version": f"no version {version} of this circuit"})
        return found.version, found.config
    if not isinstance(config, Mapping):
        raise ShadowInvalidError({"config": "must be an object of wire fields"})
    current = circuit.current_config
    base = CircuitBreakerConfig.from_dict(current.config) if current else None
    errors = config_errors(config, base=base)
    if errors:
        raise ShadowInvalidError({"config": errors})
    return 0, CircuitBreakerConfig.from_dict(config, base=base).to_dict()


def start_shadow(
    circuit: Circuit,
    *,
    config: Mapping[str, Any] | None = None,
    config_version: int | None = None,
    user: User | None,
    reason: str = "",
    now: datetime | None = None,
) -> ShadowEvaluation:
    """Evaluate a candidate beside ``circuit``'s config on every instance: ``config``
    (the fields that differ from the current config) or an existing ``config_version``.
    One already running is stopped. Raises ShadowInvalidError naming the bad field."""
    reason = check_reason(reason, required=False)
    now = now or timezone.now()
    with transaction.atomic():
        circuit = lock_circuit(circuit)
        version, candidate = _candidate(circuit, config, config_version)
        previous = running_shadow(circuit)
        before = None
        if previous is not None:
            before = shadow_wire(previous)
            previous.ended_at, previous.ended_by = now, user
            previous.save(update_fields=["ended_at", "ended_by"])
        evaluation = ShadowEvaluation.objects.create(
            circuit=circuit,
            config_version=version,
            config=candidate,
            reason=reason,
            created_by=user,
            created_at=now,
        )
        _announce(circuit, "start", evaluation, user, reason, before, shadow_wire(evaluation), now)
    return evaluation


def stop_shadow(
    circuit: Circuit, *, user: User | None, reason: str = "", now: datetime | None = None
) -> ShadowEvaluation:
    """End the evaluation running on ``circuit``; raises NotRunningError if none runs."""
    reason = check_reason(reason, required=False)
    now = now or timezone.now()
    with transaction.atomic():
        circuit = lock_circuit(circuit)
        evaluation = running_shadow(circuit)
        if evaluation is None:
            raise NotRunningError(f"circuit {circuit} runs no shadow evaluation")
        evaluation.ended_at, evaluation.ended_by = now, user
        evaluation.save(update_fields=["ended_at", "ended_by"])
        _announce(circuit, "stop", evaluation, user, reason, shadow_wire(evaluation), None, now)
    return evaluation


def _announce(
    circuit: Circuit,
    action: Literal["start", "stop"],
    evaluation: ShadowEvaluation,
    user: User | None,
    reason: str,
    before: Any,
    after: Any,
    now: datetime,
) -> None:
    change_desired_state(
        circuit,
        actor=user,
        action=AuditAction.SHADOW_START if action == "start" else AuditAction.SHADOW_STOP,
        reason=reason,
        before=before,
        after=after,
        now=now,
        event=lambda version: events.shadow_event(
            circuit, action=action, evaluation=evaluation.pk, desired_version=version
        ),
    )


def retention(now: datetime, *, using: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Delete what is older than the 10-second traffic's retention
    (SWITCHYARD_TRAFFIC_RAW_DAYS): buckets, would-be transitions and evaluations that
    ended before it (their rows with them). Rows deleted per table."""
    cutoff = now - timedelta(days=settings.SWITCHYARD_TRAFFIC_RAW_DAYS)
    return {
        model._meta.db_table: queryset.using(using).delete()[1].get(model._meta.label, 0)
        for model, queryset in (
            (ShadowBucket, ShadowBucket.objects.filter(bucket__lt=cutoff)),
            (ShadowTransition, ShadowTransition.objects.filter(at__lt=cutoff)),
            (ShadowEvaluation, ShadowEvaluation.objects.filter(ended_at__lt=cutoff)),
        )
    }


class Summary(TypedDict):
    """What a candidate would have done over the summary window (the last hour of the
    evaluation): counters summed from the stored buckets, its recent transitions."""

    evaluation: int
    config_version: int
    config: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None
    since: datetime
    until: datetime
    rejected: int
    unobserved: int
    opened: int
    half_opened: int
    closed: int
    transitions: list[dict[str, Any]]


def summary(evaluation: ShadowEvaluation, *, now: datetime | None = None) -> Summary:
    """The evaluation's figures over the last hour it ran (SUMMARY_WINDOW), from what
    the agents reported: 10-second buckets that start within it."""
    now = now or timezone.now()
    until = evaluation.ended_at or now
    since = max(evaluation.created_at, until - SUMMARY_WINDOW)
    first = since - timedelta(seconds=since.timestamp() % 10)  # the bucket ``since`` is in
    sums = ShadowBucket.objects.filter(
        evaluation=evaluation, bucket__gte=first, bucket__lte=until
    ).aggregate(**{name: Sum(name) for name in COUNTERS})
    recent = ShadowTransition.objects.filter(evaluation=evaluation, at__gte=since).select_related(
        "instance"
    )
    transitions = [
        {
            "instance": t.instance.instance_id,
            "from": t.from_state,
            "to": t.to_state,
            "at": t.at,
            "reason": t.reason,
        }
        for t in recent.order_by("-at", "-id")[:SUMMARY_TRANSITIONS]
    ]
    return {
        "evaluation": evaluation.pk,
        "config_version": evaluation.config_version,
        "config": evaluation.config,
        "started_at": evaluation.created_at,
        "ended_at": evaluation.ended_at,
        "since": since,
        "until": until,
        "rejected": sums["rejected"] or 0,
        "unobserved": sums["unobserved"] or 0,
        "opened": sums["opened"] or 0,
        "half_opened": sums["half_opened"] or 0,
        "closed": sums["closed"] or 0,
        "transitions": transitions,
    }


def side_by_side(
    circuit: Circuit, evaluation: ShadowEvaluation, w: series.Window, now: datetime | None = None
) -> dict[str, Any]:
    """The live breaker and the candidate per step of ``w``: rejected calls per second
    (``live_rejected``: what the instances rejected; ``candidate_rejected``: what the
    candidate would have, null before the evaluation started or where no instance
    reported traffic) and entries into open (``live_opened``: transitions to open
    stored for the circuit; ``candidate_opened``: would-be ones, null before the
    evaluation started)."""
    now = now or timezone.now()
    live = series.read([circuit.pk], ["rejected"], w, now)
    times: list[int] = live["times"]
    index = {t: i for i, t in enumerate(times)}
    rejected = [0] * len(times)
    opened = [0] * len(times)
    buckets = ShadowBucket.objects.filter(
        evaluation=evaluation, bucket__gte=w.start, bucket__lt=w.end
    ).values_list("bucket", "rejected", "opened")
    for bucket, would_reject, would_open in buckets:
        i = index.get(int(bucket.timestamp()) // w.step * w.step)
        if i is not None:
            rejected[i] += would_reject
            opened[i] += would_open
    live_opened = [0] * len(times)
    trips = Transition.objects.filter(
        circuit=circuit, to_state=CircuitState.OPEN, at__gte=w.start, at__lt=w.end
    ).values_list("at", flat=True)
    for at in trips:
        i = index.get(int(at.timestamp()) // w.step * w.step)
        if i is not None:
            live_opened[i] += 1
    started = evaluation.created_at.timestamp()
    ended = evaluation.ended_at.timestamp() if evaluation.ended_at else now.timestamp()
    candidate: list[float | None] = []
    candidate_opened: list[int | None] = []
    for i, t in enumerate(times):
        seconds = max(1.0, min(float(w.step), now.timestamp() - t))
        ran = t + w.step > started and t <= ended
        seen = live["series"]["rejected"][i] is not None or rejected[i]
        candidate.append(round(rejected[i] / seconds, 6) if ran and seen else None)
        candidate_opened.append(opened[i] if ran else None)
    return {
        "times": times,
        "live_rejected": live["series"]["rejected"],
        "candidate_rejected": candidate,
        "live_opened": live_opened,
        "candidate_opened": candidate_opened,
    }
