"""URL routes of the control plane."""

from django.contrib import admin
from django.urls import path

from controlplane.circuits import views as circuit_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", circuit_views.healthz, name="healthz"),
]
