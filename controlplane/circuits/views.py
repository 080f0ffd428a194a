"""Plain Django views: the agent sync and fleet health (``/healthz`` is in core)."""

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.circuits import ratelimit
from controlplane.circuits.auth import authenticate_agent, bearer_token
from controlplane.circuits.choices import CircuitState, FleetState
from controlplane.circuits.fleet import summary
from controlplane.circuits.ingest import SyncError, ingest_sync, parse_sync
from controlplane.circuits.models import Circuit
from controlplane.core.errors import CREDENTIALS_FIELD, NON_FIELD, error_response
from controlplane.core.jsonlimits import depth_error
from controlplane.core.permissions import HasPerms

UNHEALTHY_STATES = frozenset({CircuitState.OPEN, CircuitState.FORCED_OPEN})

_HEALTH_CIRCUIT = {
    "type": "object",
    "required": ["id", "name", "service", "state", "summary", "instances"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "service": {"type": "string"},
        "state": {"type": "string", "enum": list(FleetState.values)},
        "summary": {"type": "string"},
        "instances": {"type": "integer", "minimum": 0},
    },
}
FLEET_HEALTH = {
    "type": "object",
    "required": ["healthy", "open_circuits", "all_circuits"],
    "properties": {
        "healthy": {"type": "boolean"},
        "open_circuits": {"type": "array", "items": _HEALTH_CIRCUIT},
        "all_circuits": {"type": "array", "items": _HEALTH_CIRCUIT},
    },
}


def _error(status: int, field: str, reason: str) -> JsonResponse:
    return error_response(status, {field: reason})


@csrf_exempt
def agent_sync(request: HttpRequest) -> HttpResponse:
    """POST /api/v1/agent/sync: store an agent's batch, answer its service's desired state."""
    if request.method != "POST":
        response = _error(405, NON_FIELD, f'Method "{request.method}" not allowed.')
        response["Allow"] = "POST"
        return response
    raw_token = bearer_token(request.headers.get("Authorization"))
    if raw_token is None:
        response = _error(
            401, CREDENTIALS_FIELD, "send an agent token as 'Authorization: Bearer sya_...'"
        )
        response["WWW-Authenticate"] = 'Bearer realm="agent"'
        return response
    token = authenticate_agent(raw_token)
    if token is None:
        response = _error(401, CREDENTIALS_FIELD, "invalid or revoked agent token")
        response["WWW-Authenticate"] = 'Bearer realm="agent", error="invalid_token"'
        return response
    wait = ratelimit.limiter("sync").take(token.token_hash)
    if wait:
        return ratelimit.too_many_response(wait, "with this agent token")

    limit = settings.SWITCHYARD_SYNC_MAX_BODY_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return _error(400, "body", "Content-Length is not an integer")
    if declared > limit:
        return _error(413, "body", f"at most {limit} bytes per sync, got {declared}")
    try:
        body = request.body
    except RequestDataTooBig:
        return _error(413, "body", f"at most {limit} bytes per sync")
    if len(body) > limit:
        return _error(413, "body", f"at most {limit} bytes per sync, got {len(body)}")
    nested = depth_error(body)
    if nested is not None:
        return _error(400, "body", nested)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, "body", f"malformed JSON: {exc}"[:300])

    try:
        batch = parse_sync(payload)
    except SyncError as exc:
        return JsonResponse(exc.as_json(), status=exc.status)
    service = token.service
    if batch.service is not None and batch.service != service.name:
        return _error(
            403, "service", f"this token belongs to service {service.name!r}, not {batch.service!r}"
        )
    try:
        answer = ingest_sync(service, batch)
    except SyncError as exc:
        return JsonResponse(exc.as_json(), status=exc.status)
    return JsonResponse(answer)


@extend_schema(
    operation_id="circuit_health",
    tags=["health"],
    summary="The fleet's health: healthy, open circuits, all circuits",
    responses={200: OpenApiResponse(FLEET_HEALTH, description="the fleet's health")},
)
@api_view(["GET"])
@permission_classes([HasPerms.of(read="circuits.view_circuit")])
def circuit_health(request: Request) -> Response:
    """GET /health/circuits: the fleet's health in the seed's shape.

    healthy is false while any circuit's fleet state is open or forced_open. It names
    every service and circuit, so unlike /healthz it needs a signed-in viewer or a
    personal API token.
    """
    circuits = (
        Circuit.objects.select_related("service")
        .with_fleet_state()
        .order_by("service__name", "name")
    )
    everything = [
        {
            "id": c.pk,
            "name": c.name,
            "service": c.service.name,
            "state": c.fleet_state,
            "summary": summary(c),
            "instances": c.instances_live,
        }
        for c in circuits
    ]
    unhealthy = [c for c in everything if c["state"] in UNHEALTHY_STATES]
    return Response(
        {"healthy": not unhealthy, "open_circuits": unhealthy, "all_circuits": everything}
    )
