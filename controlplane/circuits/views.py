"""Plain Django views: fleet health (``/healthz`` is in core)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.circuits.api.permissions import GlobalPerms
from controlplane.circuits.choices import CircuitState, FleetState
from controlplane.circuits.fleet import summary
from controlplane.circuits.models import Circuit

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


@extend_schema(
    operation_id="circuit_health",
    tags=["health"],
    summary="The fleet's health: healthy, open circuits, all circuits",
    responses={200: OpenApiResponse(FLEET_HEALTH, description="the fleet's health")},
)
@api_view(["GET"])
@permission_classes([GlobalPerms.of(read="circuits.view_circuit")])
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
