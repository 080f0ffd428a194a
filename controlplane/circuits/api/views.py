"""Operator API ViewSets: declarations over the models, operations and serializers."""

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Q, QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.circuits import access, series, shadow, tokens
from controlplane.circuits.api import exports, filtersets
from controlplane.circuits.api import serializers as s
from controlplane.circuits.api.permissions import TeamScopedMixin
from controlplane.circuits.choices import CircuitState
from controlplane.circuits.config_diff import VersionParamError, config_changes, version_pair
from controlplane.circuits.desired import override_wire
from controlplane.circuits.fleet import live_cutoff
from controlplane.circuits.models import (
    APIToken,
    AuditEvent,
    Circuit,
    Instance,
    Service,
    Team,
    Transition,
)
from controlplane.circuits.operations import (
    ConfigConflictError,
    ConfigInvalidError,
    NotForcedError,
    RolloutActiveError,
    create_config_version,
    delete_team,
    force_circuit,
    issue_agent_token,
    release_circuit,
    remove_membership,
    revoke_agent_token,
    save_team,
    set_membership,
)
from controlplane.core import schema as core_schema
from controlplane.core.errors import Conflict
from controlplane.core.pagination import KeysetPagination, PageNumberPagination
from controlplane.core.permissions import acting_user
from controlplane.core.viewsets import ID_PATTERN, ReadOnlyViewSet, ReadWriteViewSet


class ServiceViewSet(TeamScopedMixin, ReadOnlyViewSet):
    """Services with their team, circuit and live instance counts; their agent tokens."""

    serializer_class = s.ServiceSerializer
    filterset_class = filtersets.ServiceFilterSet
    team_path = "team"
    view_perm = "circuits.view_service"
    action_permissions = {
        "list": ("circuits.view_service", None),
        "retrieve": ("circuits.view_service", None),
        "series": ("circuits.view_circuit", None),
        "tokens": ("circuits.view_agenttoken", "circuits.add_agenttoken"),
        "revoke_token": (None, "circuits.change_agenttoken"),
    }

    def get_queryset(self) -> QuerySet[Service]:
        return (
            Service.objects.select_related("team")
            .annotate(
                circuit_count=Count("circuits", distinct=True),
                instances_live=Count(
                    "instances", filter=Q(instances__last_seen__gte=live_cutoff()), distinct=True
                ),
            )
            .order_by("name")
        )

    @extend_schema(
        parameters=[s.SeriesQuerySerializer],
        responses={200: s.SeriesSerializer, 400: core_schema.error("a bad parameter")},
        filters=False,
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def series(self, request: Request, pk: str | None = None) -> Response:
        """Traffic of all this service's circuits together, per step (docs/traffic.md)."""
        service = self._service()
        ids = list(Circuit.objects.filter(service=service).values_list("pk", flat=True))
        return Response({"service": service.pk, **_series(request, ids, None)})

    def _service(self) -> Service:
        service = get_object_or_404(self.scoped(Service.objects.all()), pk=self.kwargs["pk"])
        self.check_object_permissions(self.request, service)
        return service

    @extend_schema(methods=["GET"], responses=s.AgentTokenSerializer(many=True), filters=False)
    @extend_schema(
        methods=["POST"],
        request=s.NewAgentTokenSerializer,
        responses={201: s.NewAgentTokenSerializer},
    )
    @action(detail=True, methods=["get", "post"], filterset_class=None, pagination_class=None)
    def tokens(self, request: Request, pk: str | None = None) -> Response:
        """GET: this service's agent tokens (never their secret). POST: a new token; its
        secret is in this answer only. Team admins of the service's team, or admins."""
        service = self._service()
        if request.method == "GET":
            rows = service.agent_tokens.order_by("-created_at", "-id")
            return Response(s.AgentTokenSerializer(rows, many=True).data)
        body = s.NewAgentTokenSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, raw = issue_agent_token(
            service, label=body.validated_data["label"], user=acting_user(request)
        )
        return Response(
            {**s.AgentTokenSerializer(token).data, "token": raw}, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        request=None,
        responses={204: None, 404: core_schema.error("no such service or active token")},
    )
    @action(
        detail=True,
        methods=["delete"],
        url_path=r"tokens/(?P<token_id>[0-9]{1,18})",
        filterset_class=None,
    )
    def revoke_token(self, request: Request, pk: str | None = None, token_id: str = "") -> Response:
        """Revoke one of this service's agent tokens: its agents' syncs stop."""
        service = self._service()
        if not revoke_agent_token(service, int(token_id), user=acting_user(request)):
            raise NotFound("no active agent token with this id for this service")
        return Response(status=status.HTTP_204_NO_CONTENT)


def _series(request: Request, circuit_ids: list[int], circuit_id: int | None) -> dict[str, Any]:
    """The series answer for ``circuit_ids`` (bands of ``circuit_id`` when given)."""
    query = s.SeriesQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    data = query.validated_data
    try:
        w = series.window(data.get("from"), data.get("to"), data.get("step"))
    except series.RangeError as exc:
        raise ValidationError({exc.field: [exc.reason]}) from None
    answer = series.read(circuit_ids, data["metric"], w)
    return {
        "from": w.start,
        "to": w.end,
        "step": w.step,
        **answer,
        "bands": series.bands(circuit_id, w) if circuit_id is not None else [],
    }


class CircuitViewSet(TeamScopedMixin, ReadOnlyViewSet):
    """Circuits with their fleet state; history, config versions and overrides below each."""

    filterset_class = filtersets.CircuitFilterSet
    team_path = "service__team"
    view_perm = "circuits.view_circuit"
    action_permissions = {
        "list": ("circuits.view_circuit", None),
        "retrieve": ("circuits.view_circuit", None),
        "transitions": ("circuits.view_transition", None),
        "config": ("circuits.view_configversion", "circuits.edit_circuit_config"),
        "config_diff": ("circuits.view_configversion", None),
        "override": ("circuits.view_override", "circuits.override_circuit"),
        "series": ("circuits.view_circuit", None),
        "shadow": ("circuits.view_configversion", "circuits.edit_circuit_config"),
    }

    def get_queryset(self) -> QuerySet[Circuit]:
        circuits = Circuit.objects.select_related("service", "current_config")
        return circuits.with_fleet_state().with_rates().order_by("service__name", "name")

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return s.CircuitDetailSerializer if self.action == "retrieve" else s.CircuitSerializer

    def _circuit(self) -> Circuit:
        circuit = get_object_or_404(
            self.scoped(Circuit.objects.select_related("service", "current_config")),
            pk=self.kwargs["pk"],
        )
        self.check_object_permissions(self.request, circuit)
        return circuit

    def _page(self, queryset: QuerySet, serializer: type[serializers.BaseSerializer]) -> Response:
        page = self.paginate_queryset(queryset)
        data = serializer(page, many=True, context=self.get_serializer_context()).data
        return self.get_paginated_response(data)

    @extend_schema(
        responses=s.TransitionSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "instance",
                {"type": "string", "maxLength": 200, "pattern": core_schema.NO_NUL},
                description="agent instance id",
            ),
            OpenApiParameter(
                "to",
                {"type": "string", "enum": list(CircuitState.values)},
                description="state entered",
            ),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="at or after"),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="before"),
        ],
    )
    @action(
        detail=True,
        methods=["get"],
        filterset_class=None,
        pagination_class=KeysetPagination,
    )
    def transitions(self, request: Request, pk: str | None = None) -> Response:
        """This circuit's transitions, newest first (keyset pages: `next` is older)."""
        circuit = self._circuit()
        history = Transition.objects.filter(circuit=circuit).select_related("instance", "circuit")
        filterset = filtersets.TransitionFilterSet(request.query_params, queryset=history)
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        return self._page(filterset.qs, s.TransitionSerializer)

    @extend_schema(
        parameters=[s.SeriesQuerySerializer],
        responses={200: s.SeriesSerializer, 400: core_schema.error("a bad parameter")},
        filters=False,
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def series(self, request: Request, pk: str | None = None) -> Response:
        """This circuit's traffic per step, with the periods it was not closed
        (docs/traffic.md)."""
        circuit = self._circuit()
        return Response({"circuit": circuit.pk, **_series(request, [circuit.pk], circuit.pk)})

    @extend_schema(methods=["GET"], responses=s.ConfigVersionSerializer(many=True), filters=False)
    @extend_schema(
        methods=["POST"],
        request=s.NewConfigVersionSerializer,
        responses={
            201: s.ConfigVersionSerializer,
            400: core_schema.error("invalid config fields (every one in `errors`)"),
            409: core_schema.CONFLICT,
        },
    )
    @action(detail=True, methods=["get", "post"], filterset_class=None)
    def config(self, request: Request, pk: str | None = None) -> Response:
        """GET: config versions, newest first. POST: a new version based on the current one."""
        circuit = self._circuit()
        if request.method == "GET":
            versions = circuit.config_versions.select_related("created_by").order_by("-version")
            return self._page(versions, s.ConfigVersionSerializer)
        body = s.NewConfigVersionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            version = create_config_version(
                circuit,
                body.validated_data["config"],
                expected_version=body.validated_data["expected_version"],
                user=acting_user(request),
                reason=body.validated_data["reason"],
            )
        except ConfigConflictError as exc:
            raise Conflict(
                "expected_version",
                str(exc),
                expected_version=exc.expected,
                current_version=exc.current,
            ) from None
        except RolloutActiveError as exc:
            raise Conflict("rollout", str(exc)) from None
        except ConfigInvalidError as exc:
            raise ValidationError({"config": exc.errors}) from None
        return Response(s.ConfigVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.INT, required=True, description="a version"),
            OpenApiParameter("to", OpenApiTypes.INT, required=True, description="a version"),
        ],
        responses={
            200: s.ConfigDiffSerializer,
            400: core_schema.error("`from` or `to` missing, not a number, or no such version"),
        },
        filters=False,
    )
    @action(detail=True, methods=["get"], url_path="config/diff", filterset_class=None)
    def config_diff(self, request: Request, pk: str | None = None) -> Response:
        """The fields that differ between two config versions (any two, either order),
        with both values, and who made each version, when and why."""
        circuit = self._circuit()
        try:
            old, new = version_pair(
                circuit, request.query_params.get("from"), request.query_params.get("to")
            )
        except VersionParamError as exc:
            raise ValidationError({exc.param: exc.reason}) from None
        changes = config_changes(old.config, new.config)
        return Response(s.ConfigDiffSerializer({"from": old, "to": new, "changes": changes}).data)

    @extend_schema(methods=["GET"], responses=s.OverrideStatusSerializer)
    @extend_schema(
        methods=["POST"], request=s.ForceSerializer, responses={201: s.OverrideSerializer}
    )
    @extend_schema(
        methods=["DELETE"],
        request=s.ReleaseSerializer,
        responses={204: None, 404: core_schema.error("no such circuit, or no override in force")},
    )
    @action(detail=True, methods=["get", "post", "delete"], filterset_class=None)
    def override(self, request: Request, pk: str | None = None) -> Response:
        """GET: {"override": the override in force, or null}. POST: force. DELETE: release."""
        circuit = self._circuit()
        if request.method == "GET":
            current = Circuit.objects.filter(pk=circuit.pk).with_fleet_state().get()
            active = current.active_override_list
            return Response({"override": override_wire(active[0]) if active else None})
        if request.method == "POST":
            body = s.ForceSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            try:
                override = force_circuit(
                    circuit,
                    body.validated_data["state"],
                    reason=body.validated_data["reason"],
                    user=acting_user(request),
                    expires_in=body.validated_data.get("expires_in"),
                )
            except ValueError as exc:
                # force_circuit's ValueErrors start with the parameter they are about.
                name = str(exc).split(" ", 1)[0]
                raise ValidationError(
                    {name if name in body.fields else "detail": str(exc)}
                ) from None
            return Response(s.OverrideSerializer(override).data, status=status.HTTP_201_CREATED)
        release = s.ReleaseSerializer(data=request.data)
        release.is_valid(raise_exception=True)
        try:
            release_circuit(
                circuit, user=acting_user(request), reason=release.validated_data["reason"]
            )
        except NotForcedError as exc:
            raise NotFound(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        methods=["GET"],
        parameters=[s.SeriesQuerySerializer],
        filters=False,
        responses={200: s.ShadowStatusSerializer, 400: core_schema.error("a bad parameter")},
    )
    @extend_schema(
        methods=["POST"],
        request=s.StartShadowSerializer,
        responses={
            201: s.ShadowSummarySerializer,
            400: core_schema.error("invalid config fields (every one in `errors`)"),
        },
    )
    @extend_schema(
        methods=["DELETE"],
        request=s.StopShadowSerializer,
        responses={204: None, 404: core_schema.error("no such circuit, or no shadow running")},
    )
    @action(detail=True, methods=["get", "post", "delete"], filterset_class=None)
    def shadow(self, request: Request, pk: str | None = None) -> Response:
        """GET: the shadow evaluation running (or null) with live and candidate side by
        side over `from`..`to` by `step`. POST: start one. DELETE: stop it."""
        circuit = self._circuit()
        if request.method == "GET":
            return Response(_shadow_status(request, circuit))
        if request.method == "POST":
            body = s.StartShadowSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            try:
                evaluation = shadow.start_shadow(
                    circuit,
                    config=body.validated_data.get("config"),
                    config_version=body.validated_data.get("config_version"),
                    user=acting_user(request),
                    reason=body.validated_data["reason"],
                )
            except shadow.ShadowInvalidError as exc:
                raise ValidationError(exc.errors) from None
            return Response(shadow.summary(evaluation), status=status.HTTP_201_CREATED)
        stop = s.StopShadowSerializer(data=request.data)
        stop.is_valid(raise_exception=True)
        try:
            shadow.stop_shadow(
                circuit, user=acting_user(request), reason=stop.validated_data["reason"]
            )
        except shadow.NotRunningError as exc:
            raise NotFound(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


def _shadow_status(request: Request, circuit: Circuit) -> dict[str, Any]:
    """The GET answer of a circuit's shadow: its summary and side-by-side series."""
    evaluation = shadow.running_shadow(circuit)
    if evaluation is None:
        return {"shadow": None, "series": None}
    query = s.SeriesQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    data = query.validated_data
    try:
        w = series.window(data.get("from"), data.get("to"), data.get("step"))
    except series.RangeError as exc:
        raise ValidationError({exc.field: [exc.reason]}) from None
    return {
        "shadow": shadow.summary(evaluation),
        "series": {
            "from": w.start,
            "to": w.end,
            "step": w.step,
            **shadow.side_by_side(circuit, evaluation, w),
        },
    }


class InstanceViewSet(TeamScopedMixin, ReadOnlyViewSet):
    """Agent processes, most recently seen first."""

    team_path = "service__team"
    view_perm = "circuits.view_instance"
    serializer_class = s.InstanceSerializer
    filterset_class = filtersets.InstanceFilterSet
    queryset = Instance.objects.select_related("service").order_by("-last_seen", "id")
    action_permissions = {
        "list": ("circuits.view_instance", None),
        "retrieve": ("circuits.view_instance", None),
    }

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "live_cutoff": live_cutoff()}


class ExportFormatNegotiation(BaseContentNegotiation):
    """An export's ``format`` names the file it streams (checked by the action), not a
    renderer: errors are JSON whatever it says."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self,
        request: Request,
        renderers: Iterable[BaseRenderer],
        format_suffix: str | None = None,
    ) -> tuple[BaseRenderer, str]:
        renderer = JSONRenderer()
        return renderer, renderer.media_type


class TransitionViewSet(TeamScopedMixin, ReadOnlyViewSet):
    """Every circuit's transitions, newest first, in keyset pages; and their export."""

    team_path = "circuit__service__team"
    view_perm = "circuits.view_transition"
    serializer_class = s.TransitionSerializer
    filterset_class = filtersets.FleetTransitionFilterSet
    pagination_class = KeysetPagination
    queryset = Transition.objects.select_related("instance", "circuit").order_by("-at", "-id")
    action_permissions = {
        "list": ("circuits.view_transition", None),
        "retrieve": ("circuits.view_transition", None),
        "export": ("circuits.view_transition", None),
    }

    @extend_schema(
        parameters=exports.schema_parameters(),
        responses={**exports.SCHEMA_RESPONSES, 400: core_schema.error("a bad parameter")},
        filters=True,
    )
    @action(
        detail=False,
        methods=["get"],
        pagination_class=None,
        content_negotiation_class=ExportFormatNegotiation,
    )
    def export(self, request: Request) -> StreamingHttpResponse:
        """The filtered transitions, newest first, streamed as CSV or JSON Lines; `since`
        and `until` are required (docs/api.md, "Exports")."""
        return exports.export_response(
            request,
            filtersets.FleetTransitionFilterSet,
            self.scoped(Transition.objects.all()),
            exports.TRANSITION_COLUMNS,
            "transitions",
        )


class AuditEventViewSet(TeamScopedMixin, ReadOnlyViewSet):
    """The audit log, newest first, in keyset pages; and its export. Team roles see the
    events of their teams' services (by the service's team now)."""

    team_path = "service__team"
    view_perm = "circuits.view_auditevent"
    serializer_class = s.AuditEventSerializer
    filterset_class = filtersets.AuditEventFilterSet
    pagination_class = KeysetPagination
    queryset = AuditEvent.objects.select_related("service").order_by("-at", "-id")
    action_permissions = {
        "list": ("circuits.view_auditevent", None),
        "retrieve": ("circuits.view_auditevent", None),
        "export": ("circuits.view_auditevent", None),
    }

    @extend_schema(
        parameters=exports.schema_parameters(),
        responses={**exports.SCHEMA_RESPONSES, 400: core_schema.error("a bad parameter")},
        filters=True,
    )
    @action(
        detail=False,
        methods=["get"],
        pagination_class=None,
        content_negotiation_class=ExportFormatNegotiation,
    )
    def export(self, request: Request) -> StreamingHttpResponse:
        """The filtered audit events, newest first, streamed as CSV or JSON Lines;
        `since` and `until` are required (docs/api.md, "Exports")."""
        return exports.export_response(
            request,
            filtersets.AuditEventFilterSet,
            self.scoped(AuditEvent.objects.all()),
            exports.AUDIT_COLUMNS,
            "audit",
        )


class TeamViewSet(TeamScopedMixin, ReadWriteViewSet):
    """Teams with their services and members. Admins create, rename and delete teams;
    a team's admins (and admins) set and remove its members. Members see their teams."""

    serializer_class = s.TeamSerializer
    filterset_class = None
    team_path = "id"
    view_perm = "circuits.view_team"
    action_permissions = {
        "list": ("circuits.view_team", None),
        "retrieve": ("circuits.view_team", None),
        "create": (None, "circuits.add_team"),
        "update": (None, "circuits.change_team"),
        "partial_update": (None, "circuits.change_team"),
        "destroy": (None, "circuits.delete_team"),
        "members": (None, "circuits.change_membership"),
    }

    def get_queryset(self) -> QuerySet[Team]:
        return Team.objects.prefetch_related("services", "memberships__user").order_by("name")

    def team_of(self, obj: Any) -> int | None:
        team_id: int = obj.pk
        return team_id

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        serializer.instance = save_team(
            Team(**serializer.validated_data), user=acting_user(self.request)
        )

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        team = serializer.instance
        assert isinstance(team, Team)
        for name, value in serializer.validated_data.items():
            setattr(team, name, value)
        save_team(team, user=acting_user(self.request))

    def perform_destroy(self, instance: Team) -> None:
        delete_team(instance, user=acting_user(self.request))

    @extend_schema(
        methods=["POST"],
        request=s.MemberSerializer,
        responses={200: s.TeamSerializer, 400: core_schema.error("no such user, or a bad role")},
    )
    @extend_schema(
        methods=["DELETE"],
        request=s.MemberRemovalSerializer,
        responses={200: s.TeamSerializer, 404: core_schema.error("no such team or member")},
    )
    @action(detail=True, methods=["post", "delete"], filterset_class=None)
    def members(self, request: Request, pk: str | None = None) -> Response:
        """POST {user, role}: add a member or change their role. DELETE {user}: remove one."""
        team = self.get_object()
        body: serializers.Serializer = (
            s.MemberSerializer(data=request.data)
            if request.method == "POST"
            else s.MemberRemovalSerializer(data=request.data)
        )
        body.is_valid(raise_exception=True)
        member = User.objects.filter(username=body.validated_data["user"]).first()
        if member is None:
            raise ValidationError({"user": ["no user with this username"]})
        if request.method == "POST":
            set_membership(team, member, body.validated_data["role"], user=acting_user(request))
        elif not remove_membership(team, member, user=acting_user(request)):
            raise NotFound("this user is not a member of this team")
        return Response(self.get_serializer(self.get_queryset().get(pk=team.pk)).data)


class TokenViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Personal API tokens. Everyone lists, creates and revokes their own (an admin of
    users sees and revokes everyone's); a token carries at most its user's rights.

    Through an API token, only an admin-scope one creates or revokes tokens, and a new
    token never outlives the one that made it.
    """

    serializer_class = s.APITokenSerializer
    pagination_class = PageNumberPagination
    lookup_value_regex = ID_PATTERN
    filterset_class = None
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self) -> QuerySet[APIToken]:
        if getattr(self, "swagger_fake_view", False):  # the schema: no request user
            return APIToken.objects.none()
        return tokens.visible_to(acting_user(self.request))

    def _may_manage(self) -> None:
        if not tokens.may_manage(acting_user(self.request)):
            raise PermissionDenied("creating or revoking tokens takes an admin-scope token")

    @extend_schema(
        request=s.NewAPITokenSerializer,
        responses={
            201: s.CreatedAPITokenSerializer,
            400: core_schema.error("bad scope, team or expires_in_days; `field` names it"),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create a token for yourself; the answer's ``token`` is its secret, shown once."""
        self._may_manage()
        body = s.NewAPITokenSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        user = acting_user(request)
        wanted = tokens.TokenRequest(
            scope=body.validated_data["scope"],
            team=body.validated_data["team"],
            days=body.validated_data["expires_in_days"],
            label=body.validated_data["label"],
        )
        errors, _ = tokens.check(user, wanted)
        if errors:
            raise ValidationError({field: [reason] for field, reason in errors.items()})
        token, raw = tokens.create(user, wanted, actor=user)
        data = dict(s.APITokenSerializer(token).data)
        data["token"] = raw
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 404: core_schema.NOT_FOUND})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Revoke a token (audited); revoking a revoked token changes nothing."""
        self._may_manage()
        token = self.get_object()
        user = acting_user(request)
        if token.user_id != user.pk and not access.has_global(user, "circuits.delete_apitoken"):
            raise PermissionDenied("only an admin revokes another user's token")
        tokens.revoke(token, actor=user)
        return Response(status=status.HTTP_204_NO_CONTENT)
