"""Pages of the dashboard. Reads go through tiles.py and fleet.py; every write goes
through controlplane.circuits.operations, the same functions the API calls."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from breakers.config import CircuitBreakerConfig, config_errors
from controlplane.alerts.api.serializers import SilenceSerializer
from controlplane.alerts.api.views import silence_team
from controlplane.alerts.choices import OPEN_STATUSES, AlertAuditAction, Severity
from controlplane.alerts.models import Alert, Silence
from controlplane.alerts.operations import NotOpenError, acknowledge, end_silence, save_audited
from controlplane.circuits import access, shadow, tokens, whatif
from controlplane.circuits.api.filtersets import AuditEventFilterSet
from controlplane.circuits.choices import CircuitState, FleetState
from controlplane.circuits.drills import (
    DrillConflictError,
    DrillInvalidError,
    NotRunningError,
    end_drill,
    start_drill,
)
from controlplane.circuits.fleet import live_cutoff, live_window, rate, state_counts
from controlplane.circuits.models import (
    AuditEvent,
    Circuit,
    ConfigVersion,
    Drill,
    Instance,
    Service,
    Snapshot,
    Transition,
)
from controlplane.circuits.operations import (
    ConfigConflictError,
    ConfigInvalidError,
    NotForcedError,
    RolloutActiveError,
    create_config_version,
    force_circuit,
    next_version,
    release_circuit,
)
from controlplane.core.audit import MAX_REASON_LENGTH, action_choices
from controlplane.core.errors import error_response
from controlplane.core.permissions import acting_user
from dashboard import alerts as alert_reads
from dashboard import charts, formats, shadow_panel
from dashboard import drills as drill_reads
from dashboard import incidents as incident_reads
from dashboard import rollouts as rollout_reads
from dashboard import search as site_search
from dashboard.forms import (
    DrillForm,
    OverrideForm,
    TokenForm,
    config_diff,
    config_rows,
    input_value,
    parse_config,
)
from dashboard.guards import perm_required, require, teams, viewer_required
from dashboard.history import export_days, export_links, history_page
from dashboard.params import ParamError, parse_id, parse_ids
from dashboard.tiles import SORTS, Filters, annotated, overview_page, tiles_by_id, tiles_for

VIEW = "circuits.view_circuit"
OVERRIDE = "circuits.override_circuit"
EDIT_CONFIG = "circuits.edit_circuit_config"
ALERTS_VIEW = "alerts.view_alert"
ACKNOWLEDGE = "alerts.acknowledge_alert"
ADD_SILENCE = "alerts.add_silence"
END_SILENCE = "alerts.delete_silence"  # the API's DELETE ends a silence too
# An instance not seen for this many live windows is gone rather than stale.
GONE_AFTER_WINDOWS = 12


def _visible_circuits(request: HttpRequest) -> Any:
    return Circuit.objects.filter(access.team_q(teams(request), "service__team"))


def _service_names(request: HttpRequest, perm: str = VIEW) -> Any:
    return (
        Service.objects.filter(access.team_q(teams(request, perm), "team"))
        .order_by("name")
        .values_list("name", flat=True)
    )


@require_GET
@viewer_required
def overview(request: HttpRequest) -> HttpResponse:
    """The fleet overview: tiles grouped by service; ``?format=json`` for the live resync."""
    if request.GET.get("format") == "json" and "ids" in request.GET:
        # The circuit page's resync: the tiles it shows, by id.
        try:
            ids = parse_ids(request.GET["ids"], "ids")
        except ParamError as exc:
            return error_response(400, {exc.field: exc.reason})
        return JsonResponse({"tiles": tiles_by_id(ids, teams=teams(request))})
    filters = Filters.from_query(request.GET)
    page, tiles = overview_page(filters, teams=teams(request))
    if request.GET.get("format") == "json":
        return JsonResponse({"tiles": tiles, "count": page.paginator.count})
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in tiles:
        groups.setdefault(t["service"], []).append(t)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboard/overview.html",
        {
            "filters": filters,
            "groups": groups,
            "page": page,
            # The page shows every circuit: live.js adds the tiles of new ones.
            "live_add": not (filters.service or filters.state or filters.name)
            and not page.has_other_pages(),
            "sorts": SORTS,
            "states": FleetState.choices,
            "services": _service_names(request),
            "query": query.urlencode(),
            "nav": "overview",
        },
    )


def _circuit_context(request: HttpRequest, circuit_id: int) -> dict[str, Any]:
    now = timezone.now()
    circuit = get_object_or_404(annotated(_visible_circuits(request).filter(pk=circuit_id), now))
    team_id = circuit.service.team_id
    user = request.user
    (tile,) = tiles_for([circuit], now)
    current = circuit.current_config
    snapshots = list(
        Snapshot.objects.filter(circuit=circuit)
        .select_related("instance")
        .order_by("instance__instance_id")
    )
    cutoff = live_cutoff(now)
    transitions = charts.marks(circuit.pk)
    table = history_page(
        Transition.objects.filter(circuit=circuit).select_related("instance"), request.GET
    )
    return {
        "circuit": circuit,
        "tile": tile,
        "counts": state_counts(circuit),
        "override": circuit.active_override_list[0] if circuit.active_override_list else None,
        "current": current,
        "config_fields": config_rows(current.config if current else None),
        "snapshots": [
            {
                "s": s,
                "live": s.instance.last_seen >= cutoff,
                "call_rate": rate(s.calls_delta, s.delta_seconds),
                "rejected_rate": rate(s.rejected_delta, s.delta_seconds),
                "drift": s.config_version != (current.version if current else 0),
            }
            for s in snapshots
        ],
        "traffic": {
            **charts.traffic_view(request.GET, now),
            "series_url": reverse("circuit-detail", args=[circuit.pk]) + "series/",
        },
        "timeline": charts.timeline(transitions, snapshots, now),
        "rate_chart": charts.failure_rate_chart(transitions, now),
        "transitions": table,
        "export_links": export_links("transition-export", {"circuit": circuit.pk}, now),
        "export_days": export_days(),
        "versions": ConfigVersion.objects.filter(circuit=circuit)
        .select_related("created_by")
        .order_by("-version")[:50],
        "audit": AuditEvent.objects.filter(target_type="circuit", target_id=str(circuit.pk))[:50],
        "can_override": access.may(user, OVERRIDE, team_id),
        "can_edit": access.may(user, EDIT_CONFIG, team_id),
        "override_form": OverrideForm(),
        "reason_max_length": MAX_REASON_LENGTH,
        "open_alerts": alert_reads.alerts_queryset().filter(
            circuit=circuit, status__in=OPEN_STATUSES
        )[:50],
        "can_ack": access.may(user, ACKNOWLEDGE, team_id),
        "can_silence": access.may(user, ADD_SILENCE, team_id),
        "drills": drill_reads.context(circuit, user, now),
        "shadow": shadow_panel.panel(circuit, now),
        "shadow_url": reverse("circuit-detail", args=[circuit.pk]) + "shadow/",
        "rollout_panel": rollout_reads.panel(circuit, user),
        # A rolled-back canary's version keeps its number: the next one is above it.
        "next_version": next_version(circuit),
        "nav": "overview",
    }


@require_GET
@viewer_required
def circuit_detail(request: HttpRequest, circuit_id: int) -> HttpResponse:
    """One circuit: timeline, failure rate, instances, config and its history, controls, audit."""
    return render(request, "dashboard/circuit.html", _circuit_context(request, circuit_id))


@require_POST
@perm_required(OVERRIDE)
def circuit_override(request: HttpRequest, circuit_id: int) -> HttpResponse:
    """Force or release, after a confirmation page that repeats what will happen."""
    circuit = get_object_or_404(_visible_circuits(request).select_related("service"), pk=circuit_id)
    require(request, OVERRIDE, circuit.service.team_id)
    form = OverrideForm(request.POST)
    if form.is_valid() and not form.cleaned_data["confirm"]:
        return render(
            request,
            "dashboard/confirm.html",
            {
                "circuit": circuit,
                "form": form,
                "action_label": OverrideForm.ACTIONS[form.cleaned_data["action"]],
                "nav": "overview",
            },
        )
    if form.is_valid():
        data = form.cleaned_data
        minutes = data.get("expires_in_minutes")
        try:
            if data["action"] == "release":
                release_circuit(circuit, user=acting_user(request), reason=data["reason"] or "")
            else:
                force_circuit(
                    circuit,
                    data["action"],
                    reason=data["reason"],
                    user=acting_user(request),
                    expires_in=minutes * 60 if minutes else None,
                )
        except NotForcedError as exc:
            form.add_error(None, str(exc))
        except ValueError as exc:
            field = str(exc).split(" ", 1)[0]
            form.add_error("reason" if field == "reason" else None, str(exc))
        else:
            return redirect(reverse("dashboard:circuit", args=[circuit.pk]))
    context = _circuit_context(request, circuit_id)
    context["override_form"] = form
    return render(request, "dashboard/circuit.html", context, status=400)


@require_POST
@perm_required(drill_reads.RUN)
def circuit_drill(request: HttpRequest, circuit_id: int) -> HttpResponse:
    """Start a drill (docs/drills.md); errors beside their fields, 409 when one runs."""
    circuit = get_object_or_404(_visible_circuits(request).select_related("service"), pk=circuit_id)
    require(request, drill_reads.RUN, circuit.service.team_id)
    context = _circuit_context(request, circuit_id)
    drills = context["drills"]
    form = DrillForm(request.POST, live=drills["live"], max_seconds=drills["max_seconds"])
    status = 400
    if form.is_valid():
        data = form.cleaned_data
        try:
            start_drill(
                circuit,
                reason=data["reason"],
                duration=data["duration"],
                share=None if data["instances"] else data["share"],
                instances=data["instances"] or None,
                user=acting_user(request),
            )
        except DrillInvalidError as exc:
            field = exc.field.split("[", 1)[0]
            form.add_error(field if field in form.fields else None, exc.reason)
        except DrillConflictError as exc:
            form.add_error(None, exc.reason)
            status = 409
        else:
            return redirect(reverse("dashboard:circuit", args=[circuit.pk]) + "#drills")
    drills["form"] = form
    return render(request, "dashboard/circuit.html", context, status=status)


@require_POST
@perm_required(drill_reads.RUN)
def circuit_drill_end(request: HttpRequest, circuit_id: int, drill_id: int) -> HttpResponse:
    """End a running drill early: its agents release the circuit at once."""
    drill = get_object_or_404(
        Drill.objects.filter(
            circuit__in=_visible_circuits(request), circuit_id=circuit_id
        ).select_related("circuit__service"),
        pk=drill_id,
    )
    require(request, drill_reads.RUN, drill.circuit.service.team_id)
    # Ended meanwhile: the page shows how.
    with contextlib.suppress(NotRunningError, DrillInvalidError):
        end_drill(drill, user=acting_user(request), reason=request.POST.get("reason", ""))
    return redirect(reverse("dashboard:circuit", args=[circuit_id]) + "#drills")


def _config_form_page(
    request: HttpRequest,
    circuit_id: int,
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    status: int,
    conflict: ConfigConflictError | None = None,
    notice: str = "",
) -> HttpResponse:
    """The circuit page with the config form holding the typed values, errors beside them."""
    context = _circuit_context(request, circuit_id)
    current = context["current"]
    rows = config_rows(current.config if current else None, values, errors)
    # The keyboard's place after the POST: the first field with an error, else the first.
    (next((r for r in rows if r["error"]), None) or rows[0])["autofocus"] = True
    context.update(
        config_fields=rows,
        config_errors=errors,
        config_notice=notice,
        conflict=conflict,
        submitted_reason=request.POST.get("reason", ""),
    )
    return render(request, "dashboard/circuit.html", context, status=status)


def _estimate_text(estimate: whatif.Estimate) -> dict[str, str]:
    """The estimate's sentences: the new config's opens beside the current one's."""

    def times(n: int) -> str:
        return f"{n} time{'' if n == 1 else 's'}"

    if not estimate.has_traffic:
        return {
            "summary": "No traffic was reported for this circuit in the last hour, "
            "so there is nothing to estimate from."
        }
    new, current = estimate.new, estimate.current
    return {
        "summary": f"With these thresholds the circuit would have opened {times(new.opens)} "
        f"in the last hour (current: {current.opens}).",
        "detail": f"Open for about {formats.duration(new.open_seconds)} "
        f"(current: {formats.duration(current.open_seconds)}), replaying {new.calls:,} "
        f"calls in {new.buckets} ten-second buckets with traffic.",
    }


@require_POST
@perm_required(EDIT_CONFIG)
def circuit_config(request: HttpRequest, circuit_id: int) -> HttpResponse:
    """A new config version, in two steps: the first POST checks the values (errors
    beside their fields) and answers a confirmation page with the diff and an estimate;
    only a POST with ``confirm`` creates the version. ``back`` returns to the form with
    the typed values. A stale edit answers 409 at either step."""
    circuit = get_object_or_404(
        _visible_circuits(request).select_related("current_config", "service"), pk=circuit_id
    )
    require(request, EDIT_CONFIG, circuit.service.team_id)
    values, errors = parse_config(request.POST)
    reason = str(request.POST.get("reason", ""))
    try:
        expected = int(request.POST.get("expected_version", ""))
    except ValueError:
        errors["expected_version"] = "must be an integer"
        expected = -1
    if "back" in request.POST:
        return _config_form_page(request, circuit_id, values, {}, status=200)
    if errors:
        return _config_form_page(request, circuit_id, values, errors, status=400)
    current = circuit.current_config
    current_version = current.version if current else 0
    if expected != current_version:
        conflict = ConfigConflictError(expected, current_version)
        return _config_form_page(request, circuit_id, values, {}, status=409, conflict=conflict)
    base = CircuitBreakerConfig.from_dict(current.config) if current else None
    errors = config_errors(values, base=base)
    if len(reason.strip()) > MAX_REASON_LENGTH:
        errors["reason"] = f"must be at most {MAX_REASON_LENGTH} characters"
    if errors:
        return _config_form_page(request, circuit_id, values, errors, status=400)
    old = current.config if current else CircuitBreakerConfig().to_dict()
    new = CircuitBreakerConfig.from_dict(values, base=base).to_dict()
    diff = config_diff(old, new)
    if not diff:
        notice = f"No change: these are the values of v{current_version}. Nothing to save."
        return _config_form_page(request, circuit_id, values, {}, status=400, notice=notice)
    if request.POST.get("confirm") != "1":
        estimate = whatif.estimate(circuit.pk, current.config if current else None, new)
        return render(
            request,
            "dashboard/config_confirm.html",
            {
                "circuit": circuit,
                "current_version": current_version,
                "new_version": next_version(circuit),
                "diff": diff,
                "hidden": [(name, input_value(value)) for name, value in new.items()],
                "reason": reason.strip(),
                "estimate": estimate,
                "estimate_text": _estimate_text(estimate),
                "nav": "overview",
            },
        )
    try:
        create_config_version(
            circuit, values, expected_version=expected, user=acting_user(request), reason=reason
        )
    except ConfigConflictError as exc:
        return _config_form_page(request, circuit_id, values, {}, status=409, conflict=exc)
    except RolloutActiveError as exc:
        return _config_form_page(request, circuit_id, values, {}, status=409, notice=str(exc))
    except ConfigInvalidError as exc:
        return _config_form_page(request, circuit_id, values, exc.errors, status=400)
    except ValueError as exc:
        return _config_form_page(request, circuit_id, values, {"reason": str(exc)}, status=400)
    return redirect(reverse("dashboard:circuit", args=[circuit.pk]) + "#config")


def _search_wants_json(request: HttpRequest) -> bool:
    """JSON for ``?format=json`` (the header box) or an Accept that prefers it to HTML."""
    if request.GET.get("format") == "json":
        return True
    return request.accepts("application/json") and not request.accepts("text/html")


@require_POST
@perm_required(EDIT_CONFIG)
def circuit_shadow(request: HttpRequest, circuit_id: int) -> HttpResponse:
    """Evaluate the config form's values in shadow (``shadow=start``), or stop the
    evaluation running (``shadow=stop``); errors go beside the form's fields."""
    circuit = get_object_or_404(
        _visible_circuits(request).select_related("current_config", "service"), pk=circuit_id
    )
    require(request, EDIT_CONFIG, circuit.service.team_id)
    reason = str(request.POST.get("reason", ""))
    back = redirect(reverse("dashboard:circuit", args=[circuit.pk]) + "#shadow")
    if request.POST.get("shadow") == "stop":
        with contextlib.suppress(shadow.NotRunningError):  # stopped already
            shadow.stop_shadow(circuit, user=acting_user(request), reason=reason)
        return back
    values, errors = parse_config(request.POST)
    if errors:
        return _config_form_page(request, circuit_id, values, errors, status=400)
    try:
        shadow.start_shadow(circuit, config=values, user=acting_user(request), reason=reason)
    except shadow.ShadowInvalidError as exc:
        fields = exc.errors.get("config")
        errors = fields if isinstance(fields, dict) else {"reason": str(exc)}
        return _config_form_page(request, circuit_id, values, errors, status=400)
    except ValueError as exc:
        return _config_form_page(request, circuit_id, values, {"reason": str(exc)}, status=400)
    return back


@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """Circuits and services by name (dashboard/search.py): JSON for the header box, a
    page of results for the plain GET form. Anonymous JSON requests get a 401 and JSON
    requests without the view permission a 403, in the error shape; pages redirect to
    the login page or answer 403 like the other pages. The answer varies with Accept."""
    response = _search_json(request) if _search_wants_json(request) else _search_page(request)
    patch_vary_headers(response, ["Accept"])
    return response


def _search_json(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return error_response(401, {"authorization": "log in to search"})
    if not access.may_somewhere(request.user, VIEW):
        return error_response(403, {"detail": "you may not view circuits"})
    try:
        q = site_search.parse_query(request.GET.get("q", ""))
        limit = site_search.parse_limit(request.GET.get("limit"))
    except ParamError as exc:
        return error_response(400, {exc.field: exc.reason})
    results, more = site_search.search(q, limit, teams=teams(request))
    return JsonResponse(
        {
            "q": q,
            "results": [r.as_json() for r in results],
            "count": len(results),
            "more": more,
            "limit": limit,
        }
    )


@viewer_required
def _search_page(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {"q": request.GET.get("q", ""), "results": [], "more": False}
    try:
        q = site_search.parse_query(request.GET.get("q", ""))
        limit = site_search.parse_limit(request.GET.get("limit"), site_search.MAX_LIMIT)
    except ParamError as exc:
        context.update(error=f"{exc.field}: {exc.reason}")
        return render(request, "dashboard/search.html", context, status=400)
    results, more = site_search.search(q, limit, teams=teams(request))
    context.update(q=q, results=results, more=more, limit=limit)
    return render(request, "dashboard/search.html", context)


@require_GET
@viewer_required
def services(request: HttpRequest) -> HttpResponse:
    """Services with their circuit and live instance counts."""
    cutoff = live_cutoff()
    rows = (
        Service.objects.filter(access.team_q(teams(request), "team"))
        .select_related("team")
        .annotate(
            n_circuits=Count("circuits", distinct=True),
            n_live=Count("instances", filter=Q(instances__last_seen__gte=cutoff), distinct=True),
            n_instances=Count("instances", distinct=True),
            last_seen=Max("instances__last_seen"),
        )
        .order_by("name")
    )
    return render(request, "dashboard/services.html", {"services": rows, "nav": "services"})


def instance_status(last_seen: Any, now: Any) -> str:
    """online (within the live window), stale (within 12 windows) or gone."""
    age = now - last_seen
    if age <= live_window():
        return "online"
    if age <= live_window() * GONE_AFTER_WINDOWS:
        return "stale"
    return "gone"


@require_GET
@viewer_required
def instances(request: HttpRequest) -> HttpResponse:
    """Agent processes, newest first, each online, stale or gone."""
    now = timezone.now()
    qs = (
        Instance.objects.filter(access.team_q(teams(request), "service__team"))
        .select_related("service")
        .order_by("-last_seen", "id")
    )
    service = request.GET.get("service", "").strip()
    if service:
        qs = qs.filter(service__name=service)
    page = Paginator(qs, 200).get_page(request.GET.get("page"))
    rows = [{"i": i, "status": instance_status(i.last_seen, now)} for i in page.object_list]
    return render(
        request,
        "dashboard/instances.html",
        {"rows": rows, "page": page, "service": service, "nav": "instances"},
    )


@require_GET
@viewer_required
def audit(request: HttpRequest) -> HttpResponse:
    """The audit log, newest first, in keyset pages; filters ``action``, ``actor``,
    ``service`` (the API's), with links to export what it shows."""
    visible = AuditEvent.objects.filter(
        access.team_q(teams(request, "circuits.view_auditevent"), "service__team")
    )
    filters = AuditEventFilterSet(request.GET, queryset=visible)
    errors = []
    if filters.is_valid():
        events = filters.qs
        chosen = {
            k: v
            for k, v in filters.form.cleaned_data.items()
            if v not in (None, "", []) and k not in ("since", "until")
        }
    else:
        errors = [f"{field}: {' '.join(e)}" for field, e in filters.errors.items()]
        events, chosen = visible, {}
    page = history_page(events.select_related("service"), request.GET)
    if page.error:
        errors.append(page.error)
    context = {
        "page": page,
        "errors": errors,
        "chosen": chosen,
        "actions": action_choices(),
        "services": _service_names(request),
        "export_links": export_links("audit-export", chosen, timezone.now()),
        "export_days": export_days(),
        "nav": "audit",
    }
    return render(request, "dashboard/audit.html", context)


def _incident_context(request: HttpRequest) -> tuple[dict[str, Any], ParamError | None]:
    """The incident view's context; the error of a filter or cursor that does not parse
    (then no event is read) or of a window that could not be shown (then the preset)."""
    now = timezone.now()
    window = incident_reads.incident_window(request.GET, now)
    context: dict[str, Any] = {
        "window": window,
        "states": CircuitState.choices,
        "services": _service_names(request),
        "raw": {
            "service": request.GET.get("service", ""),
            "circuit": request.GET.get("circuit", ""),
            "instance": request.GET.get("instance", ""),
            "states": request.GET.getlist("state"),
            "from": request.GET.get("from", ""),
            "to": request.GET.get("to", ""),
        },
        "limit": incident_reads.TIMELINE_LIMIT,
        "page_size": incident_reads.PAGE_SIZE,
        "max_days": incident_reads.MAX_WINDOW.days,
        "nav": "incidents",
    }
    try:
        filters = replace(
            incident_reads.IncidentFilters.from_query(request.GET), teams=teams(request)
        )
        cursor = incident_reads.Cursor.from_query(request.GET)
    except ParamError as exc:
        return context, exc
    data = incident_reads.timeline(window, filters)
    rows, older = incident_reads.table_page(window, filters, cursor)
    # Older pages keep the first page's window fixed, so "1 h" does not move on.
    fixed = [
        ("from", incident_reads.precise(window.start)),
        ("to", incident_reads.precise(window.end)),
    ]
    circuit = None
    if filters.circuit is not None:
        circuit = (
            _visible_circuits(request).select_related("service").filter(pk=filters.circuit).first()
        )
    context.update(
        filters=filters,
        circuit=circuit,
        timeline=data,
        rows=rows,
        cursor=cursor,
        older=older,
        older_query=incident_reads.query_string([*fixed, *filters.items(), *older.items])
        if older
        else "",
        newest_query=incident_reads.query_string([*window.items, *filters.items()]),
        filter_items=filters.items(),
        exports=incident_reads.export_links(window, filters),
        totals={
            kind: sum(lane[kind] for lane in data["lanes"])
            for kind in ("transitions", "actions", "alerts")
        },
    )
    return context, window.error


@require_GET
@viewer_required
def incidents(request: HttpRequest) -> HttpResponse:
    """Every transition, operator action and alert of the fleet in a time window: a
    timeline (one lane per service) and a table, newest first, keyset-paged.
    ``?format=json`` answers the same data, and 400 naming the field of a bad value."""
    context, error = _incident_context(request)
    if request.GET.get("format") == "json":
        if error is not None:
            return error_response(400, {error.field: error.reason})
        return JsonResponse(
            {
                "from": incident_reads.precise(context["window"].start),
                "to": incident_reads.precise(context["window"].end),
                "timeline": context["timeline"],
                "rows": [
                    {**row, "at": incident_reads.precise(row["at"])} for row in context["rows"]
                ],
                "older": f"?{context['older_query']}" if context["older"] else None,
            }
        )
    if error is not None and "timeline" not in context:
        context.update(error=f"{error.field}: {error.reason}", error_field=error.field)
        return render(request, "dashboard/incidents.html", context, status=400)
    return render(request, "dashboard/incidents.html", context)


alerts_viewer_required = perm_required(ALERTS_VIEW)


def _alerts_context(request: HttpRequest) -> dict[str, Any]:
    scope = teams(request, ALERTS_VIEW)
    filters = replace(alert_reads.AlertFilters.from_query(request.GET), teams=scope)
    page = Paginator(alert_reads.filtered_alerts(filters), 100).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("format", None)
    return {
        "filters": filters,
        "page": page,
        "query": query.urlencode(),
        "statuses": alert_reads.STATUSES,
        "severities": Severity.values,
        "services": _service_names(request, ALERTS_VIEW),
        "silences": alert_reads.active_silences(teams(request, "alerts.view_silence")),
        # Shown to whoever may somewhere; the write checks the row's team (403).
        "can_ack": access.may_somewhere(request.user, ACKNOWLEDGE),
        "can_silence": access.may_somewhere(request.user, ADD_SILENCE),
        "can_end_silence": access.may_somewhere(request.user, END_SILENCE),
        # Rules and channels belong to no team: global roles only, as in the API.
        "can_see_setup": access.has_global(request.user, "alerts.view_alertrule"),
        "can_edit_setup": access.has_global(request.user, "alerts.change_alertrule"),
        "nav": "alerts",
    }


@require_GET
@alerts_viewer_required
def alerts(request: HttpRequest) -> HttpResponse:
    """Alerts with their filters in the URL; ``?format=json`` is the live refresh."""
    if request.GET.get("format") == "json" and request.GET.get("only") == "count":
        return JsonResponse({"firing": alert_reads.firing_count(teams(request, ALERTS_VIEW))})
    context = _alerts_context(request)
    if request.GET.get("format") == "json":
        # The rows as the page renders them (controls and CSRF token included), so a
        # live refresh and a reload show the same thing.
        html = render_to_string("dashboard/_alert_rows.html", context, request=request)
        return JsonResponse(
            {
                "rows": html,
                "count": context["page"].paginator.count,
                "firing": alert_reads.firing_count(context["filters"].teams),
            }
        )
    return render(request, "dashboard/alerts.html", context)


def _visible_alerts(request: HttpRequest) -> Any:
    scope = teams(request, ALERTS_VIEW)
    return Alert.objects.filter(access.team_q(scope, "circuit__service__team"))


@require_POST
@perm_required(ACKNOWLEDGE)
def alert_ack(request: HttpRequest, alert_id: int) -> HttpResponse:
    """Acknowledge an open alert through the alerts app (audited, published)."""
    alert = get_object_or_404(
        _visible_alerts(request).select_related("circuit__service"), pk=alert_id
    )
    require(request, ACKNOWLEDGE, alert.circuit.service.team_id)
    try:
        acknowledge(alert, user=acting_user(request))
    except NotOpenError as exc:
        context = _alerts_context(request)
        context["error"] = str(exc).split(": ", 1)[-1]
        return render(request, "dashboard/alerts.html", context, status=400)
    return redirect(_back_to_alerts(request))


def _back_to_alerts(request: HttpRequest) -> str:
    """Back where the form was posted from: ``next`` (a path of this site, e.g. the
    circuit page) or the alerts page with its filters."""
    target = str(request.POST.get("next", ""))
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    query = str(request.POST.get("next_query", ""))
    return reverse("dashboard:alerts") + (f"?{query}" if query else "")


def _silence_form_page(
    request: HttpRequest, form: alert_reads.SilenceForm, alert: Alert, status: int = 200
) -> HttpResponse:
    return render(
        request,
        "dashboard/silence.html",
        {"form": form, "alert": alert, "matches": alert_reads.SilenceForm.MATCHES, "nav": "alerts"},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@perm_required(ADD_SILENCE)
def silence_create(request: HttpRequest) -> HttpResponse:
    """Silence an alert's circuit, service or rule: form, confirmation, then the write."""
    source = request.POST if request.method == "POST" else request.GET
    try:
        alert_id = parse_id(source.get("alert", ""), "alert")
    except ParamError as exc:
        return HttpResponseBadRequest(str(exc))
    alert = get_object_or_404(
        _visible_alerts(request).select_related("rule", "circuit__service"), pk=alert_id
    )
    if request.method == "GET":
        return _silence_form_page(
            request, alert_reads.SilenceForm(initial={"alert": alert.pk}), alert
        )
    form = alert_reads.SilenceForm(request.POST)
    if not form.is_valid():
        return _silence_form_page(request, form, alert, status=400)
    data = form.cleaned_data
    if data["match"] == "rule":
        require(request, ADD_SILENCE, None)  # a rule's alerts span teams: global roles only
    else:
        require(request, ADD_SILENCE, alert.circuit.service.team_id)
    if not data["confirm"]:
        return render(
            request,
            "dashboard/silence_confirm.html",
            {
                "form": form,
                "alert": alert,
                "target": alert_reads.target_label(alert, data["match"]),
                "nav": "alerts",
            },
        )
    now = timezone.now()
    # The alerts API's own serializer checks the silence (matchers, expiry bounds).
    serializer = SilenceSerializer(
        data={
            **alert_reads.silence_matcher(alert, data["match"]),
            "starts_at": now,
            "expires_at": now + timedelta(minutes=data["expires_in_minutes"]),
            "reason": data["reason"],
        }
    )
    if not serializer.is_valid():
        for field, messages in serializer.errors.items():
            target = field if field in form.fields else None
            form.add_error(target, f"{field}: {' '.join(str(m) for m in messages)}")
        return _silence_form_page(request, form, alert, status=400)
    user = acting_user(request)
    save_audited(serializer, user, AlertAuditAction.SILENCE_CREATE, created_by=user)
    return redirect(reverse("dashboard:alerts"))


@require_POST
@perm_required(END_SILENCE)
def silence_end(request: HttpRequest, silence_id: int) -> HttpResponse:
    """End a silence now through the alerts app (audited; it stays in the history)."""
    visible = Silence.objects.filter(alert_reads.silence_q(teams(request, "alerts.view_silence")))
    silence = get_object_or_404(
        visible.select_related("service", "circuit__service"), pk=silence_id
    )
    require(request, END_SILENCE, silence_team(silence.service, silence.circuit))
    end_silence(silence, user=acting_user(request))
    return redirect(_back_to_alerts(request))


def _tokens_page(request: HttpRequest, form: TokenForm, status: int = 200) -> HttpResponse:
    user = acting_user(request)
    return render(
        request,
        "dashboard/tokens.html",
        {
            "form": form,
            "tokens": tokens.visible_to(user).filter(user=user),
            "teams": user.memberships.select_related("team").order_by("team__name"),
            "max_days": tokens.max_token_days(),
            "now": timezone.now(),
            "nav": "tokens",
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@login_required
def api_tokens(request: HttpRequest) -> HttpResponse:
    """Your personal API tokens: the list, a form creating one (its secret shown once)."""
    if request.method == "GET":
        return _tokens_page(request, TokenForm(initial={"expires_in_days": 30}))
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _tokens_page(request, form, status=400)
    user = acting_user(request)
    data = form.cleaned_data
    wanted = tokens.TokenRequest(
        scope=data["scope"], team=data["team"].strip(), days=data["expires_in_days"],
        label=data["label"],
    )  # fmt: skip
    errors, _ = tokens.check(user, wanted)
    if errors:
        for field, reason in errors.items():
            form.add_error(field, reason)
        return _tokens_page(request, form, status=400)
    token, raw = tokens.create(user, wanted, actor=user)
    return render(
        request, "dashboard/token_created.html", {"token": token, "secret": raw, "nav": "tokens"}
    )


@require_POST
@login_required
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of your personal API tokens (audited)."""
    user = acting_user(request)
    token = get_object_or_404(tokens.visible_to(user).filter(user=user), pk=token_id)
    tokens.revoke(token, actor=user)
    return redirect("dashboard:tokens")
