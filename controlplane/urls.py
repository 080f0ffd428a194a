"""URL routes of the control plane."""

from django.contrib import admin
from django.urls import path

from controlplane.circuits import views as circuit_views
from controlplane.circuits.watch import agent_watch

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", circuit_views.healthz, name="healthz"),
    path("api/v1/agent/sync", circuit_views.agent_sync, name="agent-sync"),
    path("api/v1/agent/watch", agent_watch, name="agent-watch"),
]
