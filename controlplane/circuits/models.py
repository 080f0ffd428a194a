"""Data model of the control plane.

Durable history (transitions, config versions, overrides, audit events) is append-only;
the latest snapshot per instance x circuit is hot data overwritten on every sync.
"""

from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from controlplane.circuits.choices import (
    HOSTNAME_MAX_LENGTH,
    LIBRARY_VERSION_MAX_LENGTH,
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    AuditAction,
    CircuitState,
    ConfigSource,
    DrillEnd,
    MembershipSource,
    OverrideEnd,
    OverrideState,
    RolloutGroup,
    RolloutState,
    TeamRole,
    TokenScope,
    TransitionReason,
)
from controlplane.circuits.querysets import (
    CircuitQuerySet,
    DrillQuerySet,
    InstanceQuerySet,
    OverrideQuerySet,
)
from controlplane.core.models import BearerToken

name_validator = RegexValidator(
    NAME_PATTERN, "Use 1-200 letters, digits or _ . : / @ + - (starting with a letter, digit or _)."
)


class Team(models.Model):
    """A group of people owning services: their roles in it apply to its services only."""

    name = models.CharField(max_length=NAME_MAX_LENGTH, unique=True)
    slug = models.SlugField(max_length=NAME_MAX_LENGTH, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """One person's role (viewer, operator, admin) in one team."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=TeamRole.choices)
    source = models.CharField(
        max_length=16, choices=MembershipSource.choices, default=MembershipSource.MANUAL
    )

    class Meta:
        ordering = ["team", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="membership_user_team_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}: {self.role}"


class SSOIdentity(models.Model):
    """The person an OpenID Connect provider knows as ``subject``: the user they sign in
    as, and the global roles single sign-on granted them (and may take away again)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities"
    )
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    global_roles = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["issuer", "subject"]
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique"),
            models.UniqueConstraint(fields=["user", "issuer"], name="sso_identity_user_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


class Service(models.Model):
    """An application whose processes embed breakers; agents sync on its behalf."""

    name = models.CharField(max_length=NAME_MAX_LENGTH, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    # Null: reachable through the global roles only.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="services"
    )
    # Bumped in the same transaction as every change of what agents should run.
    desired_version = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentToken(BearerToken):
    """A bearer token (sya_...) that lets agents sync one service; stored as a sha256."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="agent_tokens")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["service", "-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.service})"


class APIToken(BearerToken):
    """A personal bearer token (syu_...) for scripts; stored as a sha256.

    It acts as its user, cut to its scope and, when it names one, to its team's services
    (controlplane/circuits/access.py); past ``expires_at`` it no longer authenticates.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    scope = models.CharField(max_length=16, choices=TokenScope.choices, default=TokenScope.READ)
    # Null: every service the user reaches.
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    # Null: never (tokens made before lifetimes existed).
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user", "-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class Instance(models.Model):
    """One process of a service running the agent, identified by the agent's instance id."""

    # No index of its own: the unique (service, instance_id) and instance_live_idx lead
    # with it, and every sync updates the row (each index is one more write).
    service = models.ForeignKey(
        Service, on_delete=models.CASCADE, related_name="instances", db_index=False
    )
    instance_id = models.CharField(max_length=NAME_MAX_LENGTH)
    hostname = models.CharField(max_length=HOSTNAME_MAX_LENGTH, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    library_version = models.CharField(max_length=LIBRARY_VERSION_MAX_LENGTH, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # A new started_at for the same instance id is a restart: transition ids start over,
    # so transitions are unique per (instance, generation, id).
    generation = models.PositiveIntegerField(default=0)
    restarts = models.PositiveIntegerField(default=0)
    acked_through = models.BigIntegerField(default=0)
    dropped_transitions = models.PositiveBigIntegerField(default=0)
    # Telemetry reports (docs/traffic.md) stored of this generation: every seq up to
    # ``telemetry_through``, and bit k of ``telemetry_seen`` for seq through + 1 + k; and
    # the reports the agent discarded unsent.
    telemetry_through = models.BigIntegerField(default=0)
    telemetry_seen = models.BigIntegerField(default=0)
    dropped_reports = models.PositiveBigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    objects = InstanceQuerySet.as_manager()

    class Meta:
        ordering = ["service", "instance_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["service", "instance_id"], name="instance_unique_per_service"
            ),
        ]
        indexes = [models.Index(fields=["service", "last_seen"], name="instance_live_idx")]

    def __str__(self) -> str:
        return f"{self.service}/{self.instance_id}"


class Circuit(models.Model):
    """A named breaker of a service, aggregated over every instance that runs it."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="circuits")
    name = models.CharField(max_length=NAME_MAX_LENGTH, validators=[name_validator])
    current_config = models.ForeignKey(
        "ConfigVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CircuitQuerySet.as_manager()

    # Set on the rows of CircuitQuerySet.with_fleet_state() only.
    fleet_state: str
    instances_live: int
    # Set on the rows of CircuitQuerySet.with_rates() only (None: no known rate).
    call_rate: float | None
    rejected_rate: float | None
    override_state: str | None
    active_override_list: list["Override"]

    class Meta:
        ordering = ["service", "name"]
        constraints = [
            models.UniqueConstraint(fields=["service", "name"], name="circuit_unique_per_service"),
        ]
        permissions = [
            ("override_circuit", "Can force a circuit open or closed and release it"),
            ("edit_circuit_config", "Can create a new config version of a circuit"),
        ]

    def __str__(self) -> str:
        return f"{self.service}/{self.name}"


class ConfigVersion(models.Model):
    """An immutable breaker config (wire fields); version N+1 supersedes N for its circuit."""

    circuit = models.ForeignKey(Circuit, on_delete=models.CASCADE, related_name="config_versions")
    version = models.PositiveIntegerField()
    config = models.JSONField()
    source = models.CharField(max_length=10, choices=ConfigSource.choices)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["circuit", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["circuit", "version"], name="config_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="config_version_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.circuit} v{self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Insert only: a config version never changes once written."""
        if not self._state.adding:
            raise ValueError("config versions are immutable; create a new version instead")
        super().save(*args, **kwargs)


class Snapshot(models.Model):
    """The latest reported state and counters of one circuit in one instance (hot data)."""

    # No index of their own: snapshot_unique leads with the instance, and
    # snapshot_circuit_state_idx with the circuit (each index is one more write per row).
    instance = models.ForeignKey(
        Instance, on_delete=models.CASCADE, related_name="snapshots", db_index=False
    )
    circuit = models.ForeignKey(
        Circuit, on_delete=models.CASCADE, related_name="snapshots", db_index=False
    )
    state = models.CharField(max_length=16, choices=CircuitState.choices)
    config_version = models.PositiveIntegerField(default=0)
    calls = models.PositiveBigIntegerField(default=0)
    successes = models.PositiveBigIntegerField(default=0)
    failures = models.PositiveBigIntegerField(default=0)
    slow_calls = models.PositiveBigIntegerField(default=0)
    rejected = models.PositiveBigIntegerField(default=0)
    trip_count = models.PositiveBigIntegerField(default=0)
    # The instance's generation (process start) the counters belong to: counters of
    # another generation start over from zero.
    generation = models.PositiveIntegerField(default=0)
    # The agent's monotonic clock (seconds since its library started) when it read the
    # counters; null from agents that do not send it.
    clock = models.FloatField(null=True, blank=True)
    # Growth of the cumulative counters over the ``delta_seconds`` before ``clock`` (the
    # time between the two syncs they were read in, by the agent's clock; after a
    # restart, since the process started). A rate is delta / delta_seconds; null
    # delta_seconds: unknown (no clock), no rate.
    calls_delta = models.PositiveBigIntegerField(default=0)
    failures_delta = models.PositiveBigIntegerField(default=0)
    slow_calls_delta = models.PositiveBigIntegerField(default=0)
    rejected_delta = models.PositiveBigIntegerField(default=0)
    delta_seconds = models.FloatField(null=True, blank=True)
    failure_rate = models.FloatField(null=True, blank=True)
    state_since = models.DateTimeField(null=True, blank=True)
    retry_after = models.FloatField(null=True, blank=True)
    # When this row was last written (liveness is the instance's ``last_seen``).
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["circuit", "instance"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "circuit"], name="snapshot_unique"),
        ]
        indexes = [models.Index(fields=["circuit", "state"], name="snapshot_circuit_state_idx")]

    def __str__(self) -> str:
        return f"{self.circuit} @ {self.instance.instance_id}: {self.state}"


class Transition(models.Model):
    """One state change of a breaker in one instance, as reported by its agent (full history).

    On PostgreSQL the table is partitioned by range of ``at``, one partition per UTC month
    (migration 0007, docs/history.md): the primary key there is ``(id, at)`` and the
    agent's id is unique per ``(instance, generation, seq, at)``. A replay carries the
    transition's own ``at``, so it is recognised and not stored twice."""

    instance = models.ForeignKey(
        Instance, on_delete=models.CASCADE, related_name="transitions", db_index=False
    )
    circuit = models.ForeignKey(
        Circuit, on_delete=models.CASCADE, related_name="transitions", db_index=False
    )
    generation = models.PositiveIntegerField(default=0)
    seq = models.BigIntegerField(help_text="Agent-assigned id, rising per instance.")
    from_state = models.CharField(max_length=16, choices=CircuitState.choices)
    to_state = models.CharField(max_length=16, choices=CircuitState.choices)
    at = models.DateTimeField()
    reason = models.CharField(max_length=32, choices=TransitionReason.choices)
    failure_rate = models.FloatField(null=True, blank=True)
    calls = models.PositiveIntegerField(null=True, blank=True)
    failures = models.PositiveIntegerField(null=True, blank=True)
    config_version = models.PositiveIntegerField(null=True, blank=True)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            # A unique key of a partitioned table holds its partition key.
            models.UniqueConstraint(
                fields=["instance", "generation", "seq", "at"],
                name="transition_unique_per_instance",
            ),
        ]
        indexes = [
            # "this circuit's history, newest first", paged by (at, id)
            models.Index(fields=["circuit", "-at", "-id"], name="transition_history_idx"),
            # "every transition in this window", paged by (at, id)
            models.Index(fields=["at", "id"], name="transition_at_idx"),
            # "trips in the last N minutes"
            models.Index(
                fields=["at", "circuit"],
                name="transition_trip_idx",
                condition=Q(to_state=CircuitState.OPEN),
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.circuit}: {self.from_state} -> {self.to_state} at {self.at:%Y-%m-%dT%H:%M:%SZ}"
        )


class Traffic(models.Model):
    """One circuit's traffic in one bucket, added up over every instance that reported it
    (docs/traffic.md): the growth of the counters inside the bucket and the latency
    histogram of the calls that ran (sparse, ``{"<bucket index>": count}``, the indexes of
    :mod:`breakers.latency`). On PostgreSQL each resolution is a table partitioned by
    range of ``bucket`` (migration 0005), created and dropped whole by the maintenance
    task; the foreign key to the circuit (ON DELETE CASCADE) is the database's."""

    pk = models.CompositePrimaryKey("circuit_id", "bucket")
    circuit = models.ForeignKey(
        Circuit, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    bucket = models.DateTimeField()
    calls = models.BigIntegerField(default=0)
    successes = models.BigIntegerField(default=0)
    failures = models.BigIntegerField(default=0)
    slow_calls = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    fallbacks = models.BigIntegerField(default=0)
    latency = models.JSONField(default=dict)

    #: Seconds one bucket covers.
    step = 0

    class Meta:
        abstract = True


class Traffic10s(Traffic):
    """Every 10 seconds, as reported (kept SWITCHYARD_TRAFFIC_RAW_DAYS)."""

    step = 10

    class Meta:
        db_table = "circuits_traffic10s"


class Traffic1m(Traffic):
    """Every minute, rolled up from the 10-second rows (kept SWITCHYARD_TRAFFIC_MINUTE_DAYS)."""

    step = 60

    class Meta:
        db_table = "circuits_traffic1m"


class Traffic1h(Traffic):
    """Every hour, rolled up from the minute rows (kept SWITCHYARD_TRAFFIC_HOUR_DAYS)."""

    step = 3600

    class Meta:
        db_table = "circuits_traffic1h"


class TrafficRollup(models.Model):
    """How far one roll-up has gone: every bucket of ``resolution`` (``1m`` from the
    10-second rows, ``1h`` from the minute rows) that starts before ``through`` has been
    computed (controlplane/circuits/rollup.py). The last few are computed again on every
    run, so a report that arrives late is still counted."""

    resolution = models.CharField(max_length=8, primary_key=True)
    through = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.resolution} through {self.through:%Y-%m-%d %H:%M}"


class Override(models.Model):
    """An operator forcing a circuit open or closed on every instance, until released or expired."""

    circuit = models.ForeignKey(Circuit, on_delete=models.CASCADE, related_name="overrides")
    state = models.CharField(max_length=16, choices=OverrideState.choices)
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    end_reason = models.CharField(max_length=10, choices=OverrideEnd.choices, blank=True)

    objects = OverrideQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # At most one override in force per circuit.
            models.UniqueConstraint(
                fields=["circuit"],
                condition=Q(ended_at__isnull=True),
                name="override_one_open_per_circuit",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=models.F("created_at")),
                name="override_expires_after_creation",
            ),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="override_expiry_idx",
                condition=Q(ended_at__isnull=True, expires_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.circuit}: {self.state}"


class Drill(models.Model):
    """A circuit forced open on some of its instances for a bounded time, then released
    by the agents themselves at ``ends_at`` (controlplane/circuits/drills.py, docs/drills.md).

    ``instances`` are the agent instance ids chosen at the start among the circuit's live
    instances (a share of them drawn at random, or named); ``outcome`` is what the traffic
    and the transitions of the drill's window show, computed when it ends and again until
    the last reports of its window are in (``outcome_final``)."""

    circuit = models.ForeignKey(Circuit, on_delete=models.CASCADE, related_name="drills")
    # The share asked for, percent of the live instances (null: instances were named).
    share = models.PositiveSmallIntegerField(null=True, blank=True)
    instances = models.JSONField(default=list)
    # Live instances of the circuit at the start (the share's base).
    live_instances = models.PositiveIntegerField(default=0)
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    end_reason = models.CharField(max_length=10, choices=DrillEnd.choices, blank=True)
    outcome = models.JSONField(null=True, blank=True)
    outcome_final = models.BooleanField(default=False)

    objects = DrillQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # At most one drill running per circuit.
            models.UniqueConstraint(
                fields=["circuit"],
                condition=Q(ended_at__isnull=True),
                name="drill_one_running_per_circuit",
            ),
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("started_at")), name="drill_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(share__isnull=True) | Q(share__gte=1, share__lte=100),
                name="drill_share_percent",
            ),
        ]
        indexes = [
            models.Index(
                fields=["ends_at"], name="drill_due_idx", condition=Q(ended_at__isnull=True)
            ),
            models.Index(
                fields=["ended_at"],
                name="drill_unsettled_idx",
                condition=Q(ended_at__isnull=False, outcome_final=False),
            ),
        ]
        permissions = [("run_drill", "Can start and end drills")]

    def __str__(self) -> str:
        return f"{self.circuit}: drill {self.pk}"


class AuditEvent(models.Model):
    """Who did what to which object, when and why, with the state before and after.

    Append-only: on PostgreSQL a trigger refuses every UPDATE and DELETE (an UPDATE that
    only clears ``actor`` or ``service``, when the user or service is deleted, excepted);
    only retention removes rows, and it records that it did (docs/history.md). The table
    is partitioned by range of ``at``, one partition per UTC month."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    # Kept when the user is deleted; "system" for automatic actions such as expiry.
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    service = models.ForeignKey(
        Service,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    # The name of the service's team when the event was recorded ("" for none): text, so
    # that renaming or deleting a team never rewrites the trail.
    team = models.CharField(max_length=NAME_MAX_LENGTH, blank=True, default="")
    target_type = models.CharField(max_length=50)
    target_id = models.CharField(max_length=64)
    target_repr = models.CharField(max_length=500)
    reason = models.TextField(blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["at", "id"], name="audit_at_idx"),
            models.Index(
                fields=["target_type", "target_id", "-at", "-id"], name="audit_target_idx"
            ),
            models.Index(fields=["service", "at"], name="audit_service_idx"),
            models.Index(fields=["actor"], name="audit_actor_idx"),
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("the audit trail is append-only: an audit event cannot be changed")
        if self.service_id is not None and not self.team:
            self.team = (
                Team.objects.filter(services__pk=self.service_id)
                .values_list("name", flat=True)
                .first()
                or ""
            )
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise TypeError("the audit trail is append-only: an audit event cannot be deleted")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%dT%H:%M:%SZ} {self.actor_name} {self.action} {self.target_repr}"


class ShadowEvaluation(models.Model):
    """A candidate config run beside a circuit's config on every instance, never
    enforced (docs/library.md, "Shadow evaluation"): what it would have done is reported
    per 10-second bucket (:class:`ShadowBucket`) and transition (:class:`ShadowTransition`).
    At most one runs per circuit (``ended_at`` null)."""

    circuit = models.ForeignKey(Circuit, on_delete=models.CASCADE, related_name="shadows")
    # The version evaluated; 0 for a candidate config that is not (yet) a version.
    config_version = models.PositiveIntegerField(default=0)
    config = models.JSONField()
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["circuit", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["circuit"],
                condition=Q(ended_at__isnull=True),
                name="shadow_one_running_per_circuit",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.circuit} shadow #{self.pk}"


class ShadowBucket(models.Model):
    """What an evaluation's candidate would have done in one 10-second bucket, added up
    over every instance that reported it (the growth of its counters)."""

    evaluation = models.ForeignKey(ShadowEvaluation, on_delete=models.CASCADE, related_name="+")
    bucket = models.DateTimeField()
    rejected = models.BigIntegerField(default=0)
    unobserved = models.BigIntegerField(default=0)
    opened = models.BigIntegerField(default=0)
    half_opened = models.BigIntegerField(default=0)
    closed = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["evaluation", "bucket"]
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "bucket"], name="shadow_bucket_unique"),
        ]

    def __str__(self) -> str:
        return f"shadow #{self.evaluation_id} at {self.bucket:%H:%M:%S}"


class ShadowTransition(models.Model):
    """A transition an evaluation's candidate would have made in one instance."""

    evaluation = models.ForeignKey(
        ShadowEvaluation, on_delete=models.CASCADE, related_name="transitions"
    )
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="+")
    from_state = models.CharField(max_length=16, choices=CircuitState.choices)
    to_state = models.CharField(max_length=16, choices=CircuitState.choices)
    at = models.DateTimeField()
    reason = models.CharField(max_length=32)

    class Meta:
        ordering = ["evaluation", "at", "id"]
        indexes = [models.Index(fields=["evaluation", "at"], name="shadow_transition_at")]

    def __str__(self) -> str:
        return f"shadow #{self.evaluation_id}: {self.from_state} -> {self.to_state}"


class Rollout(models.Model):
    """A canary rollout: ``to_version`` runs on the instances ``select`` picks
    (breakers.canary) while the others keep ``from_version``, the circuit's current
    config, until it is promoted (``to_version`` becomes current) or rolled back
    (controlplane/circuits/rollouts.py, docs/rollouts.md)."""

    circuit = models.ForeignKey(Circuit, on_delete=models.CASCADE, related_name="rollouts")
    from_version = models.ForeignKey(ConfigVersion, on_delete=models.PROTECT, related_name="+")
    to_version = models.ForeignKey(ConfigVersion, on_delete=models.PROTECT, related_name="+")
    # {"percent": P, "salt": S} or {"instances": [identity, ...]}.
    select = models.JSONField()
    state = models.CharField(
        max_length=16, choices=RolloutState.choices, default=RolloutState.ACTIVE
    )
    # Roll back automatically when the canary group's trips per instance exceed the
    # baseline group's by more than this; null: never.
    auto_rollback_margin = models.FloatField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    # Null with ended_at set: ended by the system (automatic rollback).
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    end_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["circuit"],
                condition=Q(state=RolloutState.ACTIVE),
                name="rollout_one_active_per_circuit",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.circuit} v{self.from_version_id}->v{self.to_version_id}: {self.state}"


class RolloutTraffic(models.Model):
    """One group's traffic during a rollout in one 10-second bucket, written by the sync
    store with the circuit's traffic: a report counts for the canary group when its
    instance runs the rollout's ``to_version``, for the baseline when it runs
    ``from_version`` (docs/rollouts.md, "Figures")."""

    pk = models.CompositePrimaryKey("rollout_id", "group", "bucket")
    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="+")
    # "group" is a keyword of SQL: the column has another name.
    group = models.CharField(max_length=8, choices=RolloutGroup.choices, db_column="rollout_group")
    bucket = models.DateTimeField()
    calls = models.BigIntegerField(default=0)
    failures = models.BigIntegerField(default=0)
    slow_calls = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    latency = models.JSONField(default=dict)

    class Meta:
        db_table = "circuits_rollouttraffic"

    def __str__(self) -> str:
        return f"rollout {self.rollout_id} {self.group} @ {self.bucket:%H:%M:%S}"
