"""Template filters of the dashboard: the formatters of ``dashboard/formats.py``
(the one place figures are formatted) and small template helpers."""

from datetime import datetime
from typing import Any

import orjson
from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from dashboard import formats

register = template.Library()

register.filter("pct", formats.pct)
register.filter("per_second", formats.per_second)
register.filter("seconds", formats.seconds)
register.filter("latency", formats.latency)
register.filter("state_label", formats.state_label)
register.filter("duration", formats.duration)

# What json_script escapes, so that the data cannot close its <script> element.
_JSON_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


@register.filter
def json_data(value: Any, element_id: str) -> SafeString:
    """Django's ``json_script``, encoded by orjson: the incident view embeds tens of
    thousands of events, which the standard library's encoder takes ten times longer
    to write."""
    text = orjson.dumps(value).decode().translate(_JSON_ESCAPES)
    return format_html(
        '<script id="{}" type="application/json">{}</script>', element_id, mark_safe(text)
    )


@register.filter
def when(moment: datetime | None, empty: str = "-") -> SafeString | str:
    """A moment as "3 min ago", exact on hover: ``<time datetime title data-when>``
    (``times.js`` moves the words on and puts the title in the viewer's time zone)."""
    if moment is None:
        return empty
    return format_html(
        '<time datetime="{}" title="{}" data-when>{}</time>',
        formats.iso(moment),
        formats.exact(moment),
        formats.relative((timezone.now() - moment).total_seconds()),
    )


@register.filter
def at(moment: datetime | None, empty: str = "-") -> SafeString | str:
    """A moment as its exact time, in the viewer's time zone once ``times.js`` ran
    (UTC before): ``<time datetime data-at>``."""
    if moment is None:
        return empty
    return format_html(
        '<time datetime="{}" data-at>{}</time>', formats.iso(moment), formats.exact(moment)
    )


@register.simple_tag(takes_context=True)
def firing_alerts(context: template.Context) -> int | None:
    """Alerts firing now for the navigation badge; None when the user may not see alerts."""
    from controlplane.circuits import access
    from dashboard.alerts import firing_count

    user = context.get("user")
    if user is None or not user.is_authenticated:
        return None
    teams = access.scope(user, "alerts.view_alert")
    if teams is not None and not teams:
        return None
    return firing_count(teams)
