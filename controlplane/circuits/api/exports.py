"""History exports of the operator API: transitions and audit events as CSV or JSON Lines.

The columns are the fields of the API's serializer for the row, in its order (CSV
writes ``before``/``after`` as JSON text). An export names a time window, ``since`` to
``until``, of at most ``SWITCHYARD_EXPORT_MAX_DAYS`` days: the bound on what one
request reads, stated where the request is refused.
"""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from controlplane.core import export
from controlplane.core.keyset import iso_utc

TRANSITION_COLUMNS = [
    export.Column("id", "id"),
    export.Column("circuit", "circuit_id"),
    export.Column("circuit_name", "circuit__name"),
    export.Column("instance", "instance__instance_id"),
    export.Column("seq", "seq"),
    export.Column("from", "from_state"),
    export.Column("to", "to_state"),
    export.Column("at", "at", "time"),
    export.Column("reason", "reason"),
    export.Column("failure_rate", "failure_rate", "float"),
    export.Column("calls", "calls"),
    export.Column("failures", "failures"),
    export.Column("config_version", "config_version"),
    export.Column("received_at", "received_at", "time"),
]
AUDIT_COLUMNS = [
    export.Column("id", "id"),
    export.Column("at", "at", "time"),
    export.Column("actor", "actor_name"),
    export.Column("action", "action"),
    export.Column("service", "service__name"),
    export.Column("team", "team"),
    export.Column("target_type", "target_type"),
    export.Column("target_id", "target_id"),
    export.Column("target", "target_repr"),
    export.Column("reason", "reason"),
    export.Column("before", "before", "json"),
    export.Column("after", "after", "json"),
]
FORMAT = "format"


def _window(since: datetime | None, until: datetime | None) -> dict[str, str]:
    """The errors of an export's window (none when it is fine)."""
    days = settings.SWITCHYARD_EXPORT_MAX_DAYS
    if since is None or until is None:
        missing = "since" if since is None else "until"
        return {missing: f"required for an export (a window of at most {days} days)"}
    if until <= since:
        return {"until": "must be after since"}
    if until - since > timedelta(days=days):
        span = (until - since) / timedelta(days=1)
        return {"until": f"the window from since to until is at most {days} days, got {span:g}"}
    return {}


def export_response(
    request: Request,
    filterset_class: type[filters.FilterSet],
    queryset: QuerySet[Any],
    columns: list[export.Column],
    name: str,
) -> StreamingHttpResponse:
    """The filtered rows of ``queryset``, newest first, streamed as the asked format;
    every bad parameter (``format``, a filter, the window) is one 400 naming each."""
    errors: dict[str, Any] = {}
    fmt = request.query_params.get(FORMAT)
    if fmt not in export.FORMATS:
        choices = ", ".join(export.FORMATS)
        errors[FORMAT] = [f"must be one of {choices}, got {fmt!r}"[:200]]
    filterset = filterset_class(request.query_params, queryset=queryset, request=request)
    if not filterset.is_valid():
        errors.update(filterset.errors)
    else:
        data = filterset.form.cleaned_data
        errors.update({k: [v] for k, v in _window(data.get("since"), data.get("until")).items()})
    if errors:
        raise ValidationError(errors)
    assert fmt is not None
    since, until = data["since"], data["until"]
    stamp = f"{iso_utc(since)}_{iso_utc(until)}".replace(":", "")
    rows = filterset.qs.order_by("-at", "-id")
    return export.response(rows, columns, fmt, f"{name}-{stamp}")


def schema_parameters() -> list[OpenApiParameter]:
    """An export's own parameters (the filters are the list's)."""
    days = settings.SWITCHYARD_EXPORT_MAX_DAYS
    return [
        OpenApiParameter(
            FORMAT,
            {"type": "string", "enum": list(export.FORMATS)},
            required=True,
            description="`csv` (header row first) or `jsonl` (one JSON object a line)",
        ),
        OpenApiParameter("since", OpenApiTypes.DATETIME, required=True, description="at or after"),
        OpenApiParameter(
            "until",
            OpenApiTypes.DATETIME,
            required=True,
            description=f"before; at most {days} days after since",
        ),
    ]


SCHEMA_RESPONSES = {
    (200, media.split(";")[0]): OpenApiResponse(OpenApiTypes.STR, description=f"the rows as {fmt}")
    for fmt, (media, _) in export.FORMATS.items()
}
