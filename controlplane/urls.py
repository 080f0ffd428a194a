"""URL routes of the control plane."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from controlplane.circuits import views as circuit_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", circuit_views.healthz, name="healthz"),
    path("health/circuits", circuit_views.circuit_health, name="circuit-health"),
    # Agent protocol (the long-poll watch endpoint sits next to the sync).
    path("api/v1/agent/sync", circuit_views.agent_sync, name="agent-sync"),
    path("api/v1/agent/", include("controlplane.circuits.watch")),
    # Operator API.
    path("api/v1/", include("controlplane.circuits.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # The browser dashboard (overview at "/").
    path("", include("dashboard.urls")),
]
