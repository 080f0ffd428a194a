"""Formatting filters shared by the dashboard templates (live.js formats the same way)."""

from typing import Any

from django import template

register = template.Library()


@register.filter
def pct(value: float | None) -> str:
    """A failure rate in [0, 1] as "12.5%", or "-" when unknown."""
    if value is None:
        return "-"
    return f"{value * 100:.1f}%"


@register.filter
def per_second(value: float | None) -> str:
    """A call rate as "3.2/s"."""
    if value is None:
        return "-"
    return f"{value:.1f}/s"


@register.filter
def state_label(value: str) -> str:
    """closed, half open, open, forced open, forced closed (the text beside the colour)."""
    return str(value).replace("_", " ")


@register.filter
def get(mapping: dict[str, Any], key: str) -> Any:
    """mapping[key] in a template."""
    return mapping.get(key)


@register.simple_tag(takes_context=True)
def firing_alerts(context: template.Context) -> int | None:
    """Alerts firing now for the navigation badge; None when the user may not see alerts."""
    from dashboard.alerts import firing_count

    user = context.get("user")
    if user is None or not user.is_authenticated or not user.has_perm("alerts.view_alert"):
        return None
    return firing_count()
