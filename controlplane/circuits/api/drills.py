"""The drills of a circuit (docs/drills.md): ``/api/v1/circuits/{circuit}/drills/``.

Reading them needs ``circuits.view_drill``; starting and ending one ``circuits.run_drill``
(operators and admins, globally or of the circuit's team), answered by access.py.
"""

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.circuits import access
from controlplane.circuits.api.permissions import TeamScopedMixin
from controlplane.circuits.choices import NAME_MAX_LENGTH, DrillEnd
from controlplane.circuits.drills import (
    MAX_NAMED_INSTANCES,
    DrillConflictError,
    DrillInvalidError,
    NotRunningError,
    drill_state,
    end_drill,
    start_drill,
)
from controlplane.circuits.models import Circuit, Drill
from controlplane.core import schema as core_schema
from controlplane.core.audit import MAX_REASON_LENGTH
from controlplane.core.errors import Conflict
from controlplane.core.permissions import acting_user
from controlplane.core.viewsets import ID_PATTERN, ReadOnlyViewSet

RUN = "circuits.run_drill"
VIEW = "circuits.view_drill"


class NewDrillSerializer(serializers.Serializer):
    """Body of a drill: a share (percent of the live instances) or named instances, how
    long (seconds, 1 to SWITCHYARD_DRILL_MAX_SECONDS) and why."""

    share = serializers.IntegerField(min_value=1, max_value=100, required=False, allow_null=True)
    instances = serializers.ListField(
        child=serializers.CharField(max_length=NAME_MAX_LENGTH),
        max_length=MAX_NAMED_INSTANCES,
        required=False,
        allow_null=True,
    )
    duration = serializers.FloatField(
        min_value=1, help_text="seconds, at most SWITCHYARD_DRILL_MAX_SECONDS (3600 by default)"
    )
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH)


class EndDrillSerializer(serializers.Serializer):
    """Optional body of an early end."""

    reason = serializers.CharField(max_length=MAX_REASON_LENGTH, allow_blank=True, default="")


class DrillInstanceSerializer(serializers.Serializer):
    """A drilled instance, as its transitions tell (the agent's clock)."""

    instance = serializers.CharField()
    forced_at = serializers.DateTimeField(allow_null=True)
    released_at = serializers.DateTimeField(allow_null=True)


class TrafficTotalsSerializer(serializers.Serializer):
    """The circuit's traffic over a span, every instance added up."""

    calls = serializers.IntegerField()
    successes = serializers.IntegerField()
    failures = serializers.IntegerField()
    rejected = serializers.IntegerField()
    fallbacks = serializers.IntegerField()
    error_rate = serializers.FloatField(allow_null=True, help_text="failures over calls, %")
    rejected_rate = serializers.FloatField(
        allow_null=True, help_text="rejected over calls and rejected, %"
    )
    fallback_rate = serializers.FloatField(
        allow_null=True, help_text="fallbacks over calls and rejected, %"
    )


class OutcomeSerializer(serializers.Serializer):
    """What the drill did (docs/drills.md, "The outcome")."""

    window = serializers.DictField(
        child=serializers.DateTimeField(), help_text="{from, to}: the buckets holding the drill"
    )
    covers = serializers.CharField()
    during = TrafficTotalsSerializer()
    before = TrafficTotalsSerializer()
    instances = DrillInstanceSerializer(many=True)


class DrillSerializer(serializers.ModelSerializer):
    """A drill with its state and, once ended, its outcome."""

    circuit = serializers.IntegerField(source="circuit_id", read_only=True)
    state = serializers.SerializerMethodField()
    by = serializers.SerializerMethodField()
    ended_by = serializers.SerializerMethodField()
    end_reason = serializers.ChoiceField(choices=DrillEnd.choices, allow_blank=True, read_only=True)
    outcome = serializers.SerializerMethodField()

    class Meta:
        model = Drill
        fields = [
            "id",
            "circuit",
            "state",
            "share",
            "instances",
            "live_instances",
            "reason",
            "by",
            "started_at",
            "ends_at",
            "ended_at",
            "ended_by",
            "end_reason",
            "outcome",
            "outcome_final",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "string", "enum": ["running", "ended"]})
    def get_state(self, drill: Drill) -> str:
        return drill_state(drill, self.context.get("now"))

    def get_by(self, drill: Drill) -> str:
        return drill.created_by.get_username() if drill.created_by else "system"

    @extend_schema_field({"type": "string", "nullable": True})
    def get_ended_by(self, drill: Drill) -> str | None:
        if drill.ended_at is None:
            return None
        return drill.ended_by.get_username() if drill.ended_by else "system"

    @extend_schema_field(OutcomeSerializer(allow_null=True))
    def get_outcome(self, drill: Drill) -> dict[str, Any] | None:
        return drill.outcome


CIRCUIT_PARAMETER = OpenApiParameter(
    "circuit_pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="the circuit's id"
)


@extend_schema(parameters=[CIRCUIT_PARAMETER])
class DrillViewSet(TeamScopedMixin, ReadOnlyViewSet):
    """A circuit's drills, newest first; operators start one and end it early."""

    serializer_class = DrillSerializer
    filterset_class = None
    team_path = "circuit__service__team"
    view_perm = VIEW
    action_permissions = {
        "list": (VIEW, None),
        "retrieve": (VIEW, None),
        "create": (None, RUN),
        "end": (None, RUN),
    }

    def _circuit(self) -> Circuit:
        if getattr(self, "swagger_fake_view", False):
            return Circuit()
        circuits = access.restrict(
            Circuit.objects.select_related("service"),
            self.request.user,
            "circuits.view_circuit",
            "service__team",
        )
        return get_object_or_404(circuits, pk=self.kwargs["circuit_pk"])

    def get_queryset(self) -> QuerySet[Drill]:
        if getattr(self, "swagger_fake_view", False):  # the schema: no request user
            return Drill.objects.none()
        drills = Drill.objects.filter(circuit=self._circuit())
        return drills.select_related("circuit__service", "created_by", "ended_by")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "now": timezone.now()}

    @extend_schema(
        request=NewDrillSerializer,
        responses={
            201: DrillSerializer,
            400: core_schema.error("a bad share, instances, duration or reason; `field` names it"),
            409: core_schema.error("a drill is running on the circuit, or an override in force"),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Start a drill: force the circuit open on the chosen instances until its end."""
        circuit = self._circuit()
        if not access.may(request.user, RUN, circuit.service.team_id):
            raise PermissionDenied("starting a drill on this circuit takes an operator")
        body = NewDrillSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            drill = start_drill(
                circuit,
                reason=data["reason"],
                duration=data["duration"],
                share=data.get("share"),
                instances=data.get("instances"),
                user=acting_user(request),
            )
        except DrillInvalidError as exc:
            raise ValidationError({exc.field: [exc.reason]}) from None
        except DrillConflictError as exc:
            raise Conflict(exc.field, exc.reason, **exc.extra) from None
        answer = DrillSerializer(drill, context=self.get_serializer_context())
        return Response(answer.data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=EndDrillSerializer,
        responses={200: DrillSerializer, 409: core_schema.error("the drill is not running")},
    )
    @action(detail=True, methods=["post"])
    def end(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """End a running drill early: its agents release the circuit at once."""
        drill = self.get_object()
        body = EndDrillSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            drill = end_drill(
                drill, user=acting_user(request), reason=body.validated_data["reason"]
            )
        except DrillInvalidError as exc:
            raise ValidationError({exc.field: [exc.reason]}) from None
        except NotRunningError as exc:
            raise Conflict("drill", str(exc)) from None
        return Response(DrillSerializer(drill, context=self.get_serializer_context()).data)


#: The route prefix under /api/v1/ (circuits/<id>/drills/).
PREFIX = rf"circuits/(?P<circuit_pk>{ID_PATTERN})/drills"
