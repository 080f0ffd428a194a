"""Serializers of the operator API; every one lists its fields explicitly."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from breakers.config import wire_schema
from controlplane.circuits import series
from controlplane.circuits.choices import (
    CircuitState,
    FleetState,
    OverrideEnd,
    OverrideState,
    TeamRole,
    TokenScope,
)
from controlplane.circuits.desired import override_wire
from controlplane.circuits.fleet import live_cutoff, rate, state_counts, summary
from controlplane.circuits.models import (
    AgentToken,
    APIToken,
    AuditEvent,
    Circuit,
    ConfigVersion,
    Instance,
    Override,
    Service,
    Snapshot,
    Team,
    Transition,
)
from controlplane.circuits.operations import MAX_EXPIRES_IN_SECONDS
from controlplane.core.audit import MAX_REASON_LENGTH, action_choices


@extend_schema_field(wire_schema())
class BreakerConfigField(serializers.JSONField):
    """A breaker config in the wire format (``breakers.config``'s fields and bounds)."""


@extend_schema_field(wire_schema())
class BreakerConfigChangesField(serializers.DictField):
    """Fields of a breaker config to change (wire format; unknown fields are refused)."""


class OverrideWireSerializer(serializers.Serializer):
    """An override in force, as agents see it."""

    state = serializers.ChoiceField(choices=OverrideState.choices)
    until = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField()
    by = serializers.CharField()


class OverrideStatusSerializer(serializers.Serializer):
    """The override in force on a circuit, or null."""

    override = OverrideWireSerializer(allow_null=True)


class ServiceSerializer(serializers.ModelSerializer):
    """A service with its circuit and live instance counts."""

    circuits = serializers.IntegerField(source="circuit_count", read_only=True)
    instances_live = serializers.IntegerField(read_only=True)
    # The team's name; null: no team (reachable through the global roles only).
    team: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="name", read_only=True, allow_null=True
    )

    class Meta:
        model = Service
        fields = [
            "id",
            "name",
            "description",
            "team",
            "desired_version",
            "circuits",
            "instances_live",
            "created_at",
        ]
        read_only_fields = fields


class ConfigVersionSerializer(serializers.ModelSerializer):
    """One immutable config version (``created_by`` is null for the agent's version 1)."""

    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    config = BreakerConfigField(read_only=True)

    class Meta:
        model = ConfigVersion
        fields = ["version", "config", "source", "reason", "created_by", "created_at"]
        read_only_fields = fields


class FieldChangeSerializer(serializers.Serializer):
    """One wire field that differs: its value in each version (null: absent)."""

    field = serializers.CharField()
    old = serializers.JSONField(allow_null=True)
    new = serializers.JSONField(allow_null=True)


class ConfigDiffSerializer(serializers.Serializer):
    """Two config versions of a circuit and the fields that differ between them."""

    changes = FieldChangeSerializer(many=True)

    def get_fields(self) -> dict[str, serializers.Field]:
        # "from" is a Python keyword: declared here rather than as a class attribute.
        fields = super().get_fields()
        return {
            "from": ConfigVersionSerializer(),
            "to": ConfigVersionSerializer(),
            **fields,
        }


class CircuitSerializer(serializers.ModelSerializer):
    """A circuit with its fleet state ("open on 3 of 12", override first)."""

    service = serializers.CharField(source="service.name", read_only=True)
    service_id = serializers.IntegerField(read_only=True)
    state = serializers.ChoiceField(
        source="fleet_state", choices=FleetState.choices, read_only=True
    )
    summary = serializers.SerializerMethodField()
    instances = serializers.IntegerField(source="instances_live", read_only=True)
    counts = serializers.SerializerMethodField()
    call_rate = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="Calls per second, summed over the live instances' latest sync intervals "
        "(null: no live instance with a known interval).",
    )
    rejected_rate = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="Calls rejected per second, summed like call_rate.",
    )
    override = serializers.SerializerMethodField()
    config_version = serializers.SerializerMethodField()

    class Meta:
        model = Circuit
        fields = [
            "id",
            "service",
            "service_id",
            "name",
            "state",
            "summary",
            "instances",
            "counts",
            "call_rate",
            "rejected_rate",
            "override",
            "config_version",
            "created_at",
        ]
        read_only_fields = fields

    def get_summary(self, obj: Circuit) -> str:
        return summary(obj)

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "integer"}})
    def get_counts(self, obj: Circuit) -> dict[str, int]:
        return state_counts(obj)

    @extend_schema_field(OverrideWireSerializer(allow_null=True))
    def get_override(self, obj: Circuit) -> dict[str, Any] | None:
        active = getattr(obj, "active_override_list", [])
        return override_wire(active[0]) if active else None

    def get_config_version(self, obj: Circuit) -> int:
        return obj.current_config.version if obj.current_config else 0


class InstanceStateSerializer(serializers.ModelSerializer):
    """One instance's latest report of a circuit."""

    instance = serializers.CharField(source="instance.instance_id", read_only=True)
    instance_pk = serializers.IntegerField(source="instance_id", read_only=True)
    hostname = serializers.CharField(source="instance.hostname", read_only=True)
    last_seen = serializers.DateTimeField(source="instance.last_seen", read_only=True)
    live = serializers.SerializerMethodField()
    config_drift = serializers.SerializerMethodField()
    call_rate = serializers.SerializerMethodField()
    rejected_rate = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = [
            "instance",
            "instance_pk",
            "hostname",
            "state",
            "config_version",
            "config_drift",
            "last_seen",
            "live",
            "calls",
            "successes",
            "failures",
            "slow_calls",
            "rejected",
            "trip_count",
            "call_rate",
            "rejected_rate",
            "delta_seconds",
            "failure_rate",
            "state_since",
            "retry_after",
            "updated_at",
        ]
        read_only_fields = fields

    def get_live(self, obj: Snapshot) -> bool:
        """Live while its instance syncs (``updated_at`` only says when the row changed)."""
        return obj.instance.last_seen >= self.context["live_cutoff"]

    def get_call_rate(self, obj: Snapshot) -> float | None:
        """Calls per second over the ``delta_seconds`` before the latest counters."""
        return rate(obj.calls_delta, obj.delta_seconds)

    def get_rejected_rate(self, obj: Snapshot) -> float | None:
        """Rejected calls per second over the same ``delta_seconds``."""
        return rate(obj.rejected_delta, obj.delta_seconds)

    def get_config_drift(self, obj: Snapshot) -> bool:
        """Whether the instance runs another version than the circuit's current one."""
        return obj.config_version != self.context["current_version"]


class CircuitDetailSerializer(CircuitSerializer):
    """A circuit with its current config and the state each instance reports."""

    config = serializers.SerializerMethodField()
    instance_states = serializers.SerializerMethodField()

    class Meta(CircuitSerializer.Meta):
        fields = [*CircuitSerializer.Meta.fields, "config", "instance_states"]
        read_only_fields = fields

    @extend_schema_field(BreakerConfigField(allow_null=True))
    def get_config(self, obj: Circuit) -> dict[str, Any] | None:
        return obj.current_config.config if obj.current_config else None

    @extend_schema_field(InstanceStateSerializer(many=True))
    def get_instance_states(self, obj: Circuit) -> list[dict[str, Any]]:
        snapshots = obj.snapshots.select_related("instance").order_by("instance__instance_id")
        context = {
            "live_cutoff": live_cutoff(),
            "current_version": self.get_config_version(obj),
        }
        return list(InstanceStateSerializer(snapshots, many=True, context=context).data)


class TransitionSerializer(serializers.ModelSerializer):
    """One stored transition; ``from`` and ``to`` are the wire names of its states."""

    instance = serializers.CharField(source="instance.instance_id", read_only=True)
    circuit = serializers.IntegerField(source="circuit_id", read_only=True)
    circuit_name = serializers.CharField(source="circuit.name", read_only=True)

    class Meta:
        model = Transition
        # "from" and "to" (Python keywords) are added after "seq" by get_fields().
        fields = [
            "id",
            "circuit",
            "circuit_name",
            "instance",
            "seq",
            "at",
            "reason",
            "failure_rate",
            "calls",
            "failures",
            "config_version",
            "received_at",
        ]
        read_only_fields = fields

    def get_fields(self) -> dict[str, serializers.Field]:
        fields: dict[str, serializers.Field] = {}
        for name, field in super().get_fields().items():
            fields[name] = field
            if name == "seq":
                fields["from"] = serializers.ChoiceField(
                    source="from_state", choices=CircuitState.choices, read_only=True
                )
                fields["to"] = serializers.ChoiceField(
                    source="to_state", choices=CircuitState.choices, read_only=True
                )
        return fields


class NewConfigVersionSerializer(serializers.Serializer):
    """Body of a config edit: the version it is based on, the changed fields, why."""

    expected_version = serializers.IntegerField(min_value=0)
    config = BreakerConfigChangesField(allow_empty=True)
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, allow_blank=True, default="")


class ForceSerializer(serializers.Serializer):
    """Body of a force: the state, why, and optionally for how long (seconds)."""

    state = serializers.ChoiceField(choices=OverrideState.choices)
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH)
    expires_in = serializers.FloatField(
        min_value=1, max_value=MAX_EXPIRES_IN_SECONDS, required=False, allow_null=True
    )


class ReleaseSerializer(serializers.Serializer):
    """Optional body of a release."""

    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, allow_blank=True, default="")


class OverrideSerializer(serializers.ModelSerializer):
    """An override row (in force or historical)."""

    circuit = serializers.IntegerField(source="circuit_id", read_only=True)
    by = serializers.SerializerMethodField()
    until = serializers.DateTimeField(source="expires_at", read_only=True, allow_null=True)
    # Blank while the override is in force.
    end_reason = serializers.ChoiceField(
        choices=OverrideEnd.choices, allow_blank=True, read_only=True
    )

    class Meta:
        model = Override
        fields = [
            "id",
            "circuit",
            "state",
            "reason",
            "by",
            "created_at",
            "until",
            "ended_at",
            "end_reason",
        ]
        read_only_fields = fields

    def get_by(self, obj: Override) -> str:
        return obj.created_by.get_username() if obj.created_by else "system"


class InstanceSerializer(serializers.ModelSerializer):
    """One agent process."""

    service = serializers.CharField(source="service.name", read_only=True)
    live = serializers.SerializerMethodField()

    class Meta:
        model = Instance
        fields = [
            "id",
            "service",
            "instance_id",
            "hostname",
            "pid",
            "library_version",
            "started_at",
            "restarts",
            "first_seen",
            "last_seen",
            "live",
            "acked_through",
            "dropped_transitions",
        ]
        read_only_fields = fields

    def get_live(self, obj: Instance) -> bool:
        return obj.last_seen >= self.context["live_cutoff"]


class AuditEventSerializer(serializers.ModelSerializer):
    """Who did what to which object, when and why."""

    actor = serializers.CharField(source="actor_name", read_only=True)
    # Every registered action (the alerts app adds its own), not the model's first list.
    action = serializers.ChoiceField(choices=action_choices(), read_only=True)
    # Null for events about no service (a user's API token, an alert rule).
    service: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="name", read_only=True, allow_null=True
    )
    target = serializers.CharField(source="target_repr", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor",
            "action",
            "service",
            "team",
            "target_type",
            "target_id",
            "target",
            "reason",
            "before",
            "after",
        ]
        read_only_fields = fields


def _from(fields: Any) -> Any:
    """``start`` spelled ``from`` on the wire (a keyword in Python)."""
    field = fields.pop("start")
    fields["from"] = field
    return fields


class SeriesQuerySerializer(serializers.Serializer):
    """The series API's query (docs/traffic.md)."""

    metric = serializers.ListField(
        child=serializers.ChoiceField(choices=list(series.METRICS)),
        min_length=1,
        max_length=len(series.METRICS),
        default=["calls"],
    )
    start = serializers.DateTimeField(required=False, help_text="default: to minus 1 hour")
    to = serializers.DateTimeField(required=False, help_text="default: now")
    step = serializers.IntegerField(
        required=False,
        min_value=series.MIN_STEP,
        max_value=series.MAX_STEP,
        help_text=f"seconds, a multiple of {series.MIN_STEP}; default: the smallest step "
        f"giving at most {series.MAX_POINTS} points",
    )

    def get_fields(self) -> Any:
        return _from(super().get_fields())


class BandSerializer(serializers.Serializer):
    """A period while at least one instance was not closed (Unix seconds)."""

    start = serializers.IntegerField()
    to = serializers.IntegerField()
    state = serializers.ChoiceField(choices=CircuitState.choices)

    def get_fields(self) -> Any:
        return _from(super().get_fields())


class SeriesSerializer(serializers.Serializer):
    """Figures per step: ``times`` (the steps' starts, Unix seconds) and one list of
    values per metric (null: nothing reported in that step)."""

    circuit = serializers.IntegerField(required=False)
    service = serializers.IntegerField(required=False)
    start = serializers.DateTimeField()
    to = serializers.DateTimeField()
    step = serializers.IntegerField()
    times = serializers.ListField(child=serializers.IntegerField())
    series = serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True))
    )
    units = serializers.DictField(child=serializers.CharField())
    partial_from = serializers.IntegerField(
        allow_null=True, help_text="steps from this one on may still grow"
    )
    bands = BandSerializer(many=True)

    def get_fields(self) -> Any:
        return _from(super().get_fields())


class AgentTokenSerializer(serializers.ModelSerializer):
    """An agent token of a service, told apart by its prefix (the secret is never stored)."""

    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = AgentToken
        fields = ["id", "prefix", "label", "created_by", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class NewAgentTokenSerializer(serializers.Serializer):
    """POST body of a new agent token; the answer adds ``token``, the secret, shown once."""

    label = serializers.CharField(  # type: ignore[assignment]
        max_length=100, required=False, default="", allow_blank=True
    )
    token = serializers.CharField(read_only=True)


class MemberSerializer(serializers.Serializer):
    """One member of a team: a username and their role in it."""

    user = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=TeamRole.choices)


class MemberRemovalSerializer(serializers.Serializer):
    """DELETE body of ``members``: whom to remove."""

    user = serializers.CharField(max_length=150)


class TeamSerializer(serializers.ModelSerializer):
    """A team with its services and members."""

    services: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="name", many=True, read_only=True
    )
    members = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ["id", "name", "slug", "services", "members", "created_at"]
        read_only_fields = ["id", "services", "members", "created_at"]

    def get_members(self, team: Team) -> list[dict[str, str]]:
        return [
            {"user": m.user.get_username(), "role": m.role, "source": m.source}
            for m in team.memberships.all()
        ]


class APITokenSerializer(serializers.ModelSerializer):
    """A personal API token as its user sees it (never its secret)."""

    user = serializers.CharField(source="user.username", read_only=True)
    team: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True
    )
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = APIToken
        fields = [
            "id", "prefix", "label", "user", "scope", "team", "created_at", "expires_at",
            "last_used_at", "revoked_at", "active",
        ]  # fmt: skip
        read_only_fields = fields


class NewAPITokenSerializer(serializers.Serializer):
    """POST /api/v1/tokens/: scope at most the user's rights, a team among theirs."""

    scope = serializers.ChoiceField(choices=TokenScope.choices)
    team = serializers.SlugField(required=False, allow_blank=True, default="")
    expires_in_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="lifetime in days: 1 to SWITCHYARD_API_TOKEN_MAX_DAYS (its default)",
    )
    label = serializers.CharField(  # type: ignore[assignment]
        required=False, allow_blank=True, default="", max_length=100
    )


class CreatedAPITokenSerializer(APITokenSerializer):
    """A new token with its secret, which is shown this once."""

    token = serializers.CharField(read_only=True, help_text="the secret (syu_...), shown once")

    class Meta(APITokenSerializer.Meta):
        fields = [*APITokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class StartShadowSerializer(serializers.Serializer):
    """Body of a shadow start: a candidate config (the fields that differ from the
    current config) or an existing config version, and why."""

    config = BreakerConfigChangesField(required=False, allow_empty=True)
    config_version = serializers.IntegerField(min_value=1, required=False)
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, allow_blank=True, default="")


class StopShadowSerializer(serializers.Serializer):
    """Optional body of a shadow stop."""

    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, allow_blank=True, default="")


class ShadowTransitionSerializer(serializers.Serializer):
    """A transition the candidate would have made in one instance."""

    instance = serializers.CharField()
    from_state = serializers.CharField()
    to = serializers.CharField()
    at = serializers.DateTimeField()
    reason = serializers.CharField()

    def get_fields(self) -> Any:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_state")  # a keyword in Python
        return fields


class ShadowSummarySerializer(serializers.Serializer):
    """A shadow evaluation and what its candidate would have done over the last hour it
    ran (``since`` to ``until``), summed from the agents' reports."""

    evaluation = serializers.IntegerField()
    config_version = serializers.IntegerField(help_text="0: a candidate that is no version")
    config = serializers.JSONField()
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    rejected = serializers.IntegerField()
    unobserved = serializers.IntegerField()
    opened = serializers.IntegerField()
    half_opened = serializers.IntegerField()
    closed = serializers.IntegerField()
    transitions = ShadowTransitionSerializer(many=True)


class ShadowSeriesSerializer(serializers.Serializer):
    """Live and candidate side by side per step (docs/api.md)."""

    start = serializers.DateTimeField()
    to = serializers.DateTimeField()
    step = serializers.IntegerField()
    times = serializers.ListField(child=serializers.IntegerField())
    live_rejected = serializers.ListField(child=serializers.FloatField(allow_null=True))
    candidate_rejected = serializers.ListField(child=serializers.FloatField(allow_null=True))
    live_opened = serializers.ListField(child=serializers.IntegerField())
    candidate_opened = serializers.ListField(child=serializers.IntegerField(allow_null=True))

    def get_fields(self) -> Any:
        return _from(super().get_fields())


class ShadowStatusSerializer(serializers.Serializer):
    """The shadow evaluation running on a circuit (null: none) and its series."""

    shadow = ShadowSummarySerializer(allow_null=True)
    series = ShadowSeriesSerializer(allow_null=True)
