"""Serializers of the alerts API; every one lists its fields explicitly."""

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.alerts.choices import MAX_SILENCE
from controlplane.alerts.models import Alert, AlertRule, Channel, Silence
from controlplane.alerts.rules import RULE_KINDS, params_errors
from controlplane.alerts.transports import config_errors, get_transport
from controlplane.core.audit import MAX_REASON_LENGTH
from controlplane.core.jsonlimits import StorableJSONField

REDACTED = "********"


@extend_schema_field({"type": "object", "additionalProperties": {}})
class ObjectField(StorableJSONField):
    """A JSON object that jsonb can store (its keys are checked by the channel's transport
    or the rule's kind)."""


def keep_stored(channel: Channel, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` of an edit of ``channel`` with the stored value back wherever the edit
    leaves a secret out, sends ``********``, or sends a value exactly as the API shows
    it masked (a webhook URL as scheme and host): what the API answered can be sent
    back unchanged."""
    stored = channel.config
    masked = get_transport(channel.kind).redact(stored)
    kept = dict(config)
    for key in get_transport(channel.kind).secret_keys:
        if kept.get(key, REDACTED) == REDACTED and key in stored:
            kept[key] = stored[key]
    for key, shown in masked.items():
        if key in stored and shown != stored[key] and kept.get(key) == shown:
            kept[key] = stored[key]
    return kept


class ChannelSerializer(serializers.ModelSerializer):
    """A channel; its config comes back with secrets masked, to admins too."""

    config = ObjectField()

    class Meta:
        model = Channel
        fields = [
            "id",
            "name",
            "kind",
            "config",
            "enabled",
            "failed_at",
            "last_error",
            "created_at",
        ]
        read_only_fields = ["id", "failed_at", "last_error", "created_at"]

    def to_representation(self, instance: Channel) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["config"] = get_transport(instance.kind).redact(instance.config)
        return data

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = attrs.get("kind", getattr(self.instance, "kind", None))
        if self.instance is not None and kind != self.instance.kind and "config" not in attrs:
            raise serializers.ValidationError({"config": "a new kind needs its own config"})
        if "config" in attrs:
            config = attrs["config"]
            current = self.instance
            if current is not None and kind == current.kind and isinstance(config, dict):
                config = keep_stored(current, config)
            errors = config_errors(str(kind), config)
            if errors:
                raise serializers.ValidationError({"config": errors})
            attrs["config"] = config
            attrs["failed_at"], attrs["last_error"] = None, ""
        return attrs


class ChannelTestSerializer(serializers.Serializer):
    """The outcome of a test notification: delivered or not, and what the far side
    answered (``HTTP 200 from the webhook``) or the error."""

    ok = serializers.BooleanField()
    detail = serializers.CharField()
    duration_ms = serializers.IntegerField()


class AlertRuleSerializer(serializers.ModelSerializer):
    """A rule: kind, params (validated per kind), severity, scope and channels."""

    params = ObjectField(required=False)
    scope = serializers.CharField(read_only=True)
    effective_params = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = [
            "id",
            "name",
            "kind",
            "params",
            "effective_params",
            "severity",
            "scope",
            "service",
            "circuit",
            "channels",
            "enabled",
            "repeat_interval",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "scope", "effective_params", "created_at", "updated_at"]
        extra_kwargs = {"channels": {"required": False}}

    def get_effective_params(self, rule: AlertRule) -> dict[str, Any]:
        """The params with the kind's defaults filled in."""
        return RULE_KINDS[rule.kind].with_defaults(rule.params) if rule.kind in RULE_KINDS else {}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = self.instance
        kind = attrs.get("kind", getattr(current, "kind", None))
        params = attrs.get("params", getattr(current, "params", {}))
        if params is None:
            params = {}
        errors = params_errors(str(kind), params)
        if errors:
            raise serializers.ValidationError({"params": errors})
        attrs["params"] = params
        service = attrs.get("service", getattr(current, "service", None))
        circuit = attrs.get("circuit", getattr(current, "circuit", None))
        if service is not None and circuit is not None:
            raise serializers.ValidationError(
                {"circuit": "scope a rule to a service or to a circuit, not both"}
            )
        return attrs


class SilenceSerializer(serializers.ModelSerializer):
    """A silence: matchers (service, circuit, rule; at least one), expiry and reason."""

    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    active = serializers.SerializerMethodField()
    starts_at = serializers.DateTimeField(required=False)
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH)

    class Meta:
        model = Silence
        fields = [
            "id",
            "service",
            "circuit",
            "rule",
            "starts_at",
            "expires_at",
            "reason",
            "active",
            "created_by",
            "created_at",
        ]
        read_only_fields = ["id", "active", "created_by", "created_at"]

    def get_active(self, silence: Silence) -> bool:
        """Whether it mutes notifications now."""
        return silence.starts_at <= timezone.now() < silence.expires_at

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        current = self.instance
        now = timezone.now()
        attrs.setdefault("starts_at", getattr(current, "starts_at", now))
        if not any(attrs.get(k, getattr(current, k, None)) for k in ("service", "circuit", "rule")):
            raise serializers.ValidationError(
                {"service": "give at least one matcher: service, circuit or rule"}
            )
        expires = attrs.get("expires_at", getattr(current, "expires_at", None))
        if expires is None:
            raise serializers.ValidationError({"expires_at": "This field is required."})
        if expires <= attrs["starts_at"]:
            raise serializers.ValidationError({"expires_at": "must be after starts_at"})
        if expires - max(attrs["starts_at"], now) > MAX_SILENCE:
            raise serializers.ValidationError(
                {"expires_at": f"must be at most {MAX_SILENCE.days} days ahead"}
            )
        return attrs


class AlertSerializer(serializers.ModelSerializer):
    """An alert with its rule, circuit and whether a silence mutes it now."""

    rule_name = serializers.CharField(source="rule.name", read_only=True)
    kind = serializers.CharField(source="rule.kind", read_only=True)
    severity = serializers.CharField(source="rule.severity", read_only=True)
    service = serializers.CharField(source="circuit.service.name", read_only=True)
    circuit_name = serializers.CharField(source="circuit.name", read_only=True)
    acknowledged_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    labels = serializers.DictField(read_only=True)
    silenced = serializers.BooleanField(read_only=True, default=False)

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "rule_name",
            "kind",
            "severity",
            "service",
            "circuit",
            "circuit_name",
            "status",
            "started_at",
            "fired_at",
            "resolved_at",
            "last_notified_at",
            "acknowledged_at",
            "acknowledged_by",
            "value",
            "labels",
            "silenced",
        ]
        read_only_fields = fields
