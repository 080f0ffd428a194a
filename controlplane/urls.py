"""URL routes of the control plane."""

from csp.decorators import csp_update
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from controlplane.alerts.metrics import metrics_view
from controlplane.circuits import views as circuit_views
from controlplane.circuits.sync import route as sync_route
from controlplane.circuits.watch import agent_watch
from controlplane.core.health import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("health/circuits", circuit_views.circuit_health, name="circuit-health"),
    path("metrics", metrics_view, name="metrics"),
    # Agent protocol, routed here alone: under ASGI, controlplane.circuits.sync.route's
    # AgentFastPath serves whatever resolves to these two views ahead of the middleware.
    path("api/v1/agent/sync", sync_route.agent_sync, name="agent-sync"),
    path("api/v1/agent/watch", agent_watch, name="agent-watch"),
    # Operator API.
    path("api/v1/", include("controlplane.circuits.api.urls")),
    path("api/v1/", include("controlplane.alerts.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI with its script served apart (/api/docs/?script), as the
    # Content-Security-Policy allows no inline script; its stylesheet draws its icons
    # from data: URLs, allowed on this page alone.
    path(
        "api/docs/",
        csp_update({"img-src": ["data:"]}, REPORT_ONLY=settings.SWITCHYARD_CSP_REPORT_ONLY)(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema")
        ),
        name="api-docs",
    ),
    # The browser dashboard (overview at "/").
    path("", include("dashboard.urls")),
]

# Unknown URLs and crashes under /api/ answer in the API's error shape too.
handler404 = "controlplane.core.errors.page_not_found"
handler500 = "controlplane.core.errors.server_error"
