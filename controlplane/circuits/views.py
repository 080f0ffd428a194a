"""Plain Django views: the agent sync, liveness and fleet health."""

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.circuits.api.permissions import HasPerms
from controlplane.circuits.auth import authenticate_agent, bearer_token
from controlplane.circuits.choices import CircuitState
from controlplane.circuits.errors import error_body
from controlplane.circuits.fleet import summary, with_fleet_state
from controlplane.circuits.ingest import SyncError, ingest_sync, parse_sync
from controlplane.circuits.models import Circuit

UNHEALTHY_STATES = frozenset({CircuitState.OPEN, CircuitState.FORCED_OPEN})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any database failure means not ready
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


def _error(status: int, field: str, reason: str) -> JsonResponse:
    return JsonResponse(error_body({field: reason}), status=status)


@csrf_exempt
@require_POST
def agent_sync(request: HttpRequest) -> HttpResponse:
    """POST /api/v1/agent/sync: store an agent's batch, answer its service's desired state."""
    raw_token = bearer_token(request.headers.get("Authorization"))
    if raw_token is None:
        response = _error(
            401, "authorization", "send an agent token as 'Authorization: Bearer sya_...'"
        )
        response["WWW-Authenticate"] = 'Bearer realm="agent"'
        return response
    token = authenticate_agent(raw_token)
    if token is None:
        response = _error(401, "authorization", "invalid or revoked agent token")
        response["WWW-Authenticate"] = 'Bearer realm="agent", error="invalid_token"'
        return response

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


@extend_schema(exclude=True)
@api_view(["GET"])
@permission_classes([HasPerms.of(read="circuits.view_circuit")])
def circuit_health(request: Request) -> Response:
    """GET /health/circuits: the fleet's health in the seed's shape.

    healthy is false while any circuit's fleet state is open or forced_open. It names
    every service and circuit, so unlike /healthz it needs a signed-in viewer or a
    personal API token.
    """
    circuits = with_fleet_state(Circuit.objects.select_related("service")).order_by(
        "service__name", "name"
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
