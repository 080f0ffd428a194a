"""The Switchyard control plane: a Django project holding the circuits app."""

# Load the Celery app with Django so that @shared_task binds to it.
from controlplane.celery import app as celery_app

__all__ = ("celery_app",)
