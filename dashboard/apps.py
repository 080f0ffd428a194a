from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """Server-rendered pages and the live socket at /ws/dashboard/."""

    name = "dashboard"
    verbose_name = "Dashboard"
