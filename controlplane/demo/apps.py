"""App configuration for the demo fleet (it has no models; it brings demo_setup)."""

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Makes ``manage.py demo_setup`` available."""

    name = "controlplane.demo"
    label = "demo"
    verbose_name = "Demo fleet"
