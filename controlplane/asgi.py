"""ASGI entry point: HTTP through Django, websockets through Channels.

Run with ``uvicorn controlplane.asgi:application``.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

# Set up Django (apps, settings) before anything imports models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from controlplane.circuits.sync.route import AgentFastPath  # noqa: E402
from controlplane.requestguard import RequestGuard  # noqa: E402
from dashboard.routing import websocket_urlpatterns as dashboard_ws  # noqa: E402

# Websocket routes (the dashboard's consumers) are added here.
websocket_urlpatterns: list = [*dashboard_ws]

application = ProtocolTypeRouter(
    {
        # The agents' routes (sync and long poll, as routed in controlplane/urls.py) are
        # answered ahead of Django's middleware stack, security headers included, so a
        # fleet is not queued behind a dozen thread hops per request. Every other
        # request passes the guard (size limit, and the API's credentials before its
        # body is read) before Django reads the body; the fast path checks its own.
        "http": AgentFastPath(RequestGuard(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
