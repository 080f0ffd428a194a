"""Prometheus ``/metrics``: fleet and alert figures read from the database at scrape
time by a custom collector, so every web process answers the same.

Scraping needs a personal API token (``Authorization: Bearer syu_...``) or a session
of a user who may view circuits, unless SWITCHYARD_METRICS_PUBLIC=1.
"""

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.http import HttpResponse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from controlplane.alerts.choices import AlertStatus
from controlplane.alerts.models import Alert
from controlplane.alerts.rules.open_too_long import EPISODE_STARTS, FORCED_OPEN, episode_params
from controlplane.circuits.api.permissions import GlobalPerms
from controlplane.circuits.fleet import live_cutoff, with_fleet_state
from controlplane.circuits.models import Circuit, Instance, Service

# The seed's encoding: 0 closed, 1 half-open, 2 open; forced states carry forced="true".
STATE_VALUE = {
    "closed": (0, "false"),
    "half_open": (1, "false"),
    "open": (2, "false"),
    "forced_closed": (0, "true"),
    "forced_open": (2, "true"),
}

FAILURE_RATES = """
SELECT s.circuit_id, MAX(s.failure_rate) FROM circuits_snapshot s
JOIN circuits_instance i ON i.id = s.instance_id
WHERE i.last_seen >= %(live)s AND s.failure_rate IS NOT NULL GROUP BY s.circuit_id
"""

OPEN_SINCE = f"""
SELECT x.circuit_id, MIN(x.started_at) FROM (
    SELECT f.circuit_id, f.started_at FROM ({FORCED_OPEN.format(scope="")}) f
    UNION ALL
    SELECT e.circuit_id, e.started_at FROM ({EPISODE_STARTS.format(scope="")}) e
) x GROUP BY x.circuit_id
"""

TRANSITIONS = """
SELECT c.service_id, t.to_state, COUNT(*) FROM circuits_transition t
JOIN circuits_circuit c ON c.id = t.circuit_id GROUP BY c.service_id, t.to_state
"""


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else timezone.make_aware(value)
    return timezone.make_aware(datetime.fromisoformat(str(value)).replace(tzinfo=None))


class FleetCollector(Collector):
    """Yields every metric family from a handful of set-based queries."""

    def collect(self) -> Iterator[Any]:
        now = timezone.now()
        live = live_cutoff(now)
        services = dict(Service.objects.values_list("id", "name"))
        circuits = {
            row["id"]: row
            for row in with_fleet_state(Circuit.objects.all(), now)
            .prefetch_related(None)
            # fleet_state is an annotation the stubs cannot see.
            .values("id", "name", "service_id", "fleet_state")  # type: ignore[misc]
        }
        labels = ["service", "circuit"]

        def names(circuit_id: int) -> list[str]:
            row = circuits[circuit_id]
            return [services.get(row["service_id"], ""), row["name"]]

        state = GaugeMetricFamily(
            "switchyard_circuit_state",
            "Fleet state of a circuit: 0 closed, 1 half-open, 2 open (forced by an operator "
            'when forced="true"); circuits with no live instance are left out.',
            labels=[*labels, "forced"],
        )
        for circuit_id, row in circuits.items():
            if row["fleet_state"] in STATE_VALUE:
                value, forced = STATE_VALUE[row["fleet_state"]]
                state.add_metric([*names(circuit_id), forced], value)
        yield state

        params = {"live": live, **episode_params(now)}
        rate = GaugeMetricFamily(
            "switchyard_circuit_failure_rate",
            "Worst window failure rate (0-1) among a circuit's live instances.",
            labels=labels,
        )
        opened = GaugeMetricFamily(
            "switchyard_circuit_open_duration_seconds",
            "Seconds since the circuit's open episode began (half-open probes do not reset it).",
            labels=labels,
        )
        transitions = CounterMetricFamily(
            "switchyard_transitions",
            "Transitions reported by agents, by the state entered.",
            labels=["service", "to_state"],
        )
        with connection.cursor() as cursor:
            cursor.execute(FAILURE_RATES, params)
            for circuit_id, value in cursor.fetchall():
                if circuit_id in circuits:
                    rate.add_metric(names(circuit_id), float(value))
            cursor.execute(OPEN_SINCE, params)
            for circuit_id, since in cursor.fetchall():
                if circuit_id in circuits and since is not None:
                    seconds = (now - _as_datetime(since)).total_seconds()
                    opened.add_metric(names(circuit_id), max(0.0, seconds))
            cursor.execute(TRANSITIONS)
            for service_id, to_state, count in cursor.fetchall():
                transitions.add_metric([services.get(service_id, ""), to_state], count)
        yield rate
        yield opened
        yield transitions

        instances = GaugeMetricFamily(
            "switchyard_instances",
            "Agent instances by status: live (seen within the live window) or stale.",
            labels=["service", "status"],
        )
        live_counts = dict(
            Instance.objects.filter(last_seen__gte=live)
            .values_list("service_id")
            .annotate(n=Count("id"))
        )
        all_counts = dict(Instance.objects.values_list("service_id").annotate(n=Count("id")))
        for service_id, total in all_counts.items():
            name = services.get(service_id, "")
            instances.add_metric([name, "live"], live_counts.get(service_id, 0))
            instances.add_metric([name, "stale"], total - live_counts.get(service_id, 0))
        yield instances

        alerts = GaugeMetricFamily(
            "switchyard_alerts",
            "Open alerts by status (pending, firing), rule and severity.",
            labels=["status", "rule", "severity"],
        )
        open_alerts = (
            Alert.objects.filter(status__in=[AlertStatus.PENDING, AlertStatus.FIRING])
            .values_list("status", "rule__name", "rule__severity")
            .annotate(n=Count("id"))
        )
        for status, rule, severity, count in open_alerts:
            alerts.add_metric([status, rule, severity], count)
        yield alerts


class CanScrape(BasePermission):
    """Anyone when SWITCHYARD_METRICS_PUBLIC, else users who may view circuits."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if settings.SWITCHYARD_METRICS_PUBLIC:
            return True
        return GlobalPerms.of(read="circuits.view_circuit")().has_permission(request, view)


class AnyAccept(BaseContentNegotiation):
    """Never a 406: the metrics' format follows ``Accept`` in the view (as Prometheus
    negotiates), and an error body is JSON whatever was asked."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class MetricsView(APIView):
    """GET /metrics: OpenMetrics when ``Accept`` asks for ``application/openmetrics-text``,
    else the Prometheus text format (0.0.4; text/plain version 1.0.0 when asked for),
    chosen by prometheus_client's own ``choose_encoder``: an unknown type gets the text
    format, never a 406."""

    permission_classes = [CanScrape]
    renderer_classes = [JSONRenderer]  # for error bodies; metrics are returned as text
    content_negotiation_class = AnyAccept

    @extend_schema(
        operation_id="metrics",
        tags=["metrics"],
        summary="Fleet and alert metrics in the Prometheus text format or OpenMetrics",
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR),
            (200, "application/openmetrics-text"): OpenApiResponse(OpenApiTypes.STR),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FleetCollector())
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        response = HttpResponse(encoder(registry), content_type=content_type)
        patch_vary_headers(response, ["Accept"])
        return response


metrics_view = MetricsView.as_view()
