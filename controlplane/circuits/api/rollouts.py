"""Canary rollouts of one circuit: /api/v1/circuits/{id}/rollouts/ (docs/rollouts.md).

GET lists them (newest first) and reads one with both groups' figures; POST starts one;
``promote`` and ``rollback`` end the active one. Reading needs the permission to view
the circuit's config versions, the writes the permission to edit its config, both in
the circuit's team (controlplane/circuits/access.py).
"""

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from breakers.canary import MAX_NAMED, MAX_PERCENT, MIN_PERCENT
from controlplane.circuits import access, rollouts
from controlplane.circuits.api.permissions import TeamScopedMixin
from controlplane.circuits.choices import RolloutState
from controlplane.circuits.models import Circuit, Rollout
from controlplane.core import schema as core_schema
from controlplane.core.audit import MAX_REASON_LENGTH
from controlplane.core.errors import Conflict
from controlplane.core.permissions import acting_user
from controlplane.core.viewsets import ReadOnlyViewSet

EDIT = "circuits.edit_circuit_config"
VIEW = "circuits.view_configversion"


class StartRolloutSerializer(serializers.Serializer):
    """Body of a start: the version (an existing one, or config fields over the current
    one), the instances (a percentage, or stable identities), the optional margin."""

    to_version = serializers.IntegerField(min_value=1, required=False)
    config = serializers.DictField(required=False)
    percent = serializers.IntegerField(min_value=MIN_PERCENT, max_value=MAX_PERCENT, required=False)
    instances = serializers.ListField(
        child=serializers.CharField(max_length=200),
        min_length=1,
        max_length=MAX_NAMED,
        required=False,
    )
    auto_rollback_margin = serializers.FloatField(
        min_value=0, max_value=rollouts.MAX_MARGIN, required=False, allow_null=True
    )
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, allow_blank=True, default="")


class EndRolloutSerializer(serializers.Serializer):
    """Optional body of a promote or a rollback."""

    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, allow_blank=True, default="")


class RolloutSerializer(serializers.ModelSerializer):
    """A rollout; ``groups`` (both groups' figures) and ``members`` in the detail only."""

    circuit = serializers.IntegerField(source="circuit_id", read_only=True)
    from_version = serializers.IntegerField(source="from_version.version", read_only=True)
    to_version = serializers.IntegerField(source="to_version.version", read_only=True)
    created_by = serializers.SerializerMethodField()
    ended_by = serializers.SerializerMethodField()

    class Meta:
        model = Rollout
        fields = [
            "id",
            "circuit",
            "from_version",
            "to_version",
            "select",
            "state",
            "auto_rollback_margin",
            "reason",
            "created_by",
            "started_at",
            "ended_at",
            "ended_by",
            "end_reason",
        ]
        read_only_fields = fields

    def get_created_by(self, rollout: Rollout) -> str | None:
        return rollout.created_by.get_username() if rollout.created_by else None

    def get_ended_by(self, rollout: Rollout) -> str:
        return rollouts.ended_by_name(rollout)


def detail(rollout: Rollout) -> dict[str, Any]:
    """A rollout with both groups' figures and its live instances."""
    groups = rollouts.figures(rollout)
    return {
        **RolloutSerializer(rollout).data,
        "groups": {name: group.wire() for name, group in groups.items()},
        "members": [
            {
                "instance": m.instance_id,
                "identity": m.identity,
                "group": "canary" if m.canary else "baseline",
                "config_version": m.running,
            }
            for m in rollouts.members(rollout)
        ],
    }


class RolloutViewSet(TeamScopedMixin, ReadOnlyViewSet):
    """The canary rollouts of one circuit."""

    serializer_class = RolloutSerializer
    filterset_class = None
    team_path = "circuit__service__team"
    view_perm = VIEW
    action_permissions = {
        "list": (VIEW, None),
        "retrieve": (VIEW, None),
        "create": (None, EDIT),
        "promote": (None, EDIT),
        "rollback": (None, EDIT),
    }

    def _circuit(self) -> Circuit:
        circuits = access.restrict(
            Circuit.objects.select_related("service", "current_config"),
            self.request.user,
            VIEW,
            "service__team",
        )
        circuit: Circuit = get_object_or_404(circuits, pk=self.kwargs["circuit_id"])
        return circuit

    def get_queryset(self) -> QuerySet[Rollout]:
        if getattr(self, "swagger_fake_view", False):  # the schema: no circuit in the URL
            return Rollout.objects.none()
        return Rollout.objects.filter(circuit=self._circuit()).select_related(
            "circuit__service", "from_version", "to_version", "created_by", "ended_by"
        )

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """One rollout with both groups' figures and its live instances."""
        return Response(detail(self.get_object()))

    def _writable(self, circuit: Circuit) -> None:
        if not access.may(self.request.user, EDIT, circuit.service.team_id):
            raise PermissionDenied("you may not change this circuit's config")

    @extend_schema(
        request=StartRolloutSerializer,
        responses={
            201: RolloutSerializer,
            400: core_schema.error("a bad field (every one in `errors`)"),
            409: core_schema.CONFLICT,
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Start a rollout: 409 when the circuit already has an active one."""
        circuit = self._circuit()
        self._writable(circuit)
        body = StartRolloutSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            rollout = rollouts.start_rollout(
                circuit,
                user=acting_user(request),
                to_version=data.get("to_version"),
                config=data.get("config"),
                percent=data.get("percent"),
                instances=data.get("instances"),
                auto_rollback_margin=data.get("auto_rollback_margin"),
                reason=data["reason"],
            )
        except rollouts.RolloutInvalidError as exc:
            raise ValidationError(exc.errors) from None
        except rollouts.RolloutConflictError as exc:
            raise Conflict(exc.field, str(exc)) from None
        return Response(RolloutSerializer(rollout).data, status=status.HTTP_201_CREATED)

    def _end(self, request: Request, end: Any) -> Response:
        rollout = self.get_object()
        self._writable(rollout.circuit)
        body = EndRolloutSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            rollout = end(rollout, user=acting_user(request), reason=body.validated_data["reason"])
        except rollouts.RolloutConflictError as exc:
            raise Conflict(exc.field, str(exc), state=RolloutState.ACTIVE) from None
        return Response(RolloutSerializer(rollout).data)

    @extend_schema(
        request=EndRolloutSerializer,
        responses={200: RolloutSerializer, 409: core_schema.CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The rollout's version becomes the circuit's config on every instance."""
        return self._end(request, rollouts.promote_rollout)

    @extend_schema(
        request=EndRolloutSerializer,
        responses={200: RolloutSerializer, 409: core_schema.CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Every canary instance returns to the circuit's current config."""
        return self._end(request, rollouts.rollback_rollout)
