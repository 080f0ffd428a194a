"""WSGI entry point (the ASGI one, controlplane.asgi, is the one to deploy)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

application = get_wsgi_application()
