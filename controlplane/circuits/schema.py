"""OpenAPI descriptions of the routes served by plain Django views.

The agent sync (:func:`controlplane.circuits.views.agent_sync`, served under ASGI by
:mod:`.sync`), the watch (:mod:`.watch`) and ``/healthz`` are not DRF views, so
drf-spectacular does not see them; the stand-in views below carry their descriptions
(they are never routed) and :func:`add_plain_views` (a drf-spectacular preprocessing
hook) adds them to the schema at the paths the real views are routed at.
"""

from typing import Any

from django.urls import reverse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import authentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from breakers.config import wire_schema
from breakers.wire import PROTOCOL_VERSION
from controlplane.circuits.choices import (
    HOSTNAME_MAX_LENGTH,
    LIBRARY_VERSION_MAX_LENGTH,
    MAX_COUNTER,
    MAX_PID,
    MAX_RETRY_AFTER,
    NAME_MAX_LENGTH,
    NAME_SCHEMA_PATTERN,
    CircuitState,
    OverrideState,
    TransitionReason,
)
from controlplane.circuits.sync.wire import MAX_CLOCK, MAX_DROPPED_PER_SYNC
from controlplane.circuits.watch import MAX_SINCE
from controlplane.core import schema as core_schema

NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": NAME_MAX_LENGTH,
    "pattern": NAME_SCHEMA_PATTERN,
}
TIMESTAMP = {"type": "string", "format": "date-time", "maxLength": 64}
COUNTER = {"type": "integer", "minimum": 0, "maximum": MAX_COUNTER}
SMALL_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_PID, "nullable": True}
RATE = {"type": "number", "minimum": 0, "maximum": 1, "nullable": True}
STATES = {"type": "string", "enum": list(CircuitState.values)}


def _text(max_length: int) -> dict[str, Any]:
    """Free text of an agent: any characters but NUL, null for none."""
    return {
        "type": "string",
        "maxLength": max_length,
        "pattern": core_schema.NO_NUL,
        "nullable": True,
    }


BREAKER_CONFIG = wire_schema()

BREAKER_REPORT = {
    "type": "object",
    "required": ["name", "state"],
    "properties": {
        "name": NAME,
        "state": STATES,
        "config_version": {"type": "integer", "minimum": 0, "maximum": MAX_PID},
        "config": {**BREAKER_CONFIG, "nullable": True},
        "calls": COUNTER,
        "successes": COUNTER,
        "failures": COUNTER,
        "slow_calls": COUNTER,
        "rejected": COUNTER,
        "trip_count": COUNTER,
        "failure_rate": RATE,
        "state_since": {**TIMESTAMP, "nullable": True},
        "retry_after": {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_RETRY_AFTER,
            "nullable": True,
        },
    },
}

TRANSITION_REPORT = {
    "type": "object",
    "required": ["id", "breaker", "from", "to", "at", "reason"],
    "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": MAX_COUNTER},
        "breaker": NAME,
        "from": STATES,
        "to": STATES,
        "at": TIMESTAMP,
        "reason": {"type": "string", "enum": list(TransitionReason.values)},
        "failure_rate": RATE,
        "calls": SMALL_COUNT,
        "failures": SMALL_COUNT,
        "config_version": SMALL_COUNT,
    },
}

SYNC_REQUEST = {
    "type": "object",
    "required": ["instance"],
    "properties": {
        "protocol": {"type": "integer", "enum": [PROTOCOL_VERSION]},
        "service": NAME,
        "instance": {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": NAME,
                "hostname": _text(HOSTNAME_MAX_LENGTH),
                "pid": {"type": "integer", "minimum": 0, "maximum": MAX_PID, "nullable": True},
                "started_at": {**TIMESTAMP, "nullable": True},
                "library_version": _text(LIBRARY_VERSION_MAX_LENGTH),
            },
        },
        "clock": {"type": "number", "minimum": 0, "maximum": MAX_CLOCK, "nullable": True},
        "breakers": {"type": "array", "items": BREAKER_REPORT},
        "transitions": {"type": "array", "items": TRANSITION_REPORT},
        "dropped_transitions": {"type": "integer", "minimum": 0, "maximum": MAX_DROPPED_PER_SYNC},
    },
}

OVERRIDE_WIRE = {
    "type": "object",
    "nullable": True,
    "required": ["state", "until", "reason", "by"],
    "properties": {
        "state": {"type": "string", "enum": list(OverrideState.values)},
        "until": {"type": "string", "format": "date-time", "nullable": True},
        "reason": {"type": "string"},
        "by": {"type": "string"},
    },
}

DESIRED_STATE: dict[str, Any] = {
    "type": "object",
    "required": ["desired_version", "poll_interval", "breakers"],
    "properties": {
        "desired_version": {"type": "integer", "minimum": 0},
        "poll_interval": {"type": "integer", "minimum": 1},
        "breakers": {
            "type": "object",
            "description": "every circuit of the service, by name",
            "additionalProperties": {
                "type": "object",
                "required": ["config_version", "config", "override"],
                "properties": {
                    "config_version": {"type": "integer", "minimum": 0},
                    "config": {**BREAKER_CONFIG, "nullable": True},
                    "override": OVERRIDE_WIRE,
                },
            },
        },
    },
}

SYNC_ANSWER = {
    **DESIRED_STATE,
    "required": [*DESIRED_STATE["required"], "acked_through", "limits"],
    "properties": {
        **DESIRED_STATE["properties"],
        "acked_through": {
            "type": "integer",
            "minimum": 0,
            "description": "the highest transition id of this instance now stored",
        },
        "limits": {
            "type": "object",
            "description": "the limits of one sync: split a larger process over several",
            "required": ["breakers", "transitions", "body_bytes"],
            "properties": {
                "breakers": {"type": "integer", "minimum": 1},
                "transitions": {"type": "integer", "minimum": 1},
                "body_bytes": {"type": "integer", "minimum": 1},
            },
        },
    },
}


class AgentTokenAuthentication(authentication.BaseAuthentication):
    """Agent tokens (``Authorization: Bearer sya_...``), as the agent views check them
    (:func:`controlplane.circuits.auth.authenticate_agent`); for the schema only."""

    def authenticate(self, request: Request) -> None:
        return None


class AgentTokenScheme(OpenApiAuthenticationExtension):
    """Documents agent tokens in the OpenAPI schema."""

    target_class = "controlplane.circuits.schema.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "sya_<random>"}


class _StandIn(APIView):
    # Describes a plain agent view; never routed.

    authentication_classes = [AgentTokenAuthentication]
    permission_classes: list[Any] = []


class AgentSyncDescription(_StandIn):
    """An agent's batch (instance, breakers, transitions) is stored in one transaction;
    the answer is the service's desired state with ``acked_through``. See docs/api.md."""

    @extend_schema(
        operation_id="agent_sync",
        tags=["agent"],
        summary="Store an agent's batch, answer its service's desired state",
        request={"application/json": SYNC_REQUEST},
        responses={
            200: OpenApiResponse(SYNC_ANSWER, description="stored; the desired state"),
            400: core_schema.BAD_REQUEST,
            403: core_schema.error("`service` is not the token's service"),
            413: core_schema.TOO_LARGE,
            429: core_schema.TOO_MANY,
            503: core_schema.error("not stored (the database is away); send it again"),
        },
    )
    def post(self, request: Request) -> Response:
        raise NotImplementedError


class AgentWatchDescription(_StandIn):
    """Held until the service's desired version moves past ``since`` (200 with the
    desired state), else 204 after ``SWITCHYARD_WATCH_HOLD`` seconds."""

    @extend_schema(
        operation_id="agent_watch",
        tags=["agent"],
        summary="Long poll: the desired state once its version moves past `since`",
        parameters=[
            OpenApiParameter(
                "since",
                {"type": "integer", "minimum": 0, "maximum": MAX_SINCE},
                required=True,
                description="the desired_version the agent runs",
            )
        ],
        responses={
            200: OpenApiResponse(DESIRED_STATE, description="the desired state moved"),
            204: OpenApiResponse(description="no change within SWITCHYARD_WATCH_HOLD seconds"),
            400: core_schema.BAD_REQUEST,
            429: core_schema.TOO_MANY,
        },
    )
    def get(self, request: Request) -> Response:
        raise NotImplementedError


HEALTH = {
    "type": "object",
    "required": ["status", "database"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "error"]},
        "database": {"type": "string", "enum": ["ok", "unreachable"]},
    },
}


class HealthzDescription(APIView):
    """For load balancers: answers without a credential and names nothing."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    @extend_schema(
        operation_id="healthz",
        tags=["health"],
        summary="Liveness: the process and its database answer (no authentication)",
        responses={
            200: OpenApiResponse(HEALTH, description="ready"),
            503: OpenApiResponse(HEALTH, description="the database is unreachable"),
        },
    )
    def get(self, request: Request) -> Response:
        raise NotImplementedError


def plain_view_endpoints() -> list[tuple[str, str, str, Any]]:
    """(path, path_regex, method, view) of each plain view, at its routed path."""
    rows = [
        ("agent-sync", "POST", AgentSyncDescription),
        ("agent-watch", "GET", AgentWatchDescription),
        ("healthz", "GET", HealthzDescription),
    ]
    endpoints = []
    for name, method, view in rows:
        path = reverse(name)
        endpoints.append((path, f"^{path.lstrip('/')}$", method, view.as_view()))
    return endpoints


def add_plain_views(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """PREPROCESSING_HOOKS: the routes of plain Django views, described by stand-ins."""
    return [*endpoints, *plain_view_endpoints()]
