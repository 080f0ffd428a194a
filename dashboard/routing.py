"""Websocket routes of the dashboard (mounted by controlplane/asgi.py)."""

from django.urls import path

from dashboard.consumers import FleetConsumer

websocket_urlpatterns = [path("ws/dashboard/", FleetConsumer.as_asgi())]
