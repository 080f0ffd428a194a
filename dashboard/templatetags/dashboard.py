"""Template filters of the dashboard: the formatters of ``dashboard/formats.py``
(the one place figures are formatted) and small template helpers."""

from typing import Any

from django import template

from dashboard import formats

register = template.Library()

register.filter("pct", formats.pct)
register.filter("per_second", formats.per_second)
register.filter("seconds", formats.seconds)
register.filter("state_label", formats.state_label)


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
