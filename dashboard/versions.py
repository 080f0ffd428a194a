"""The config diff page: two versions of a circuit chosen in its version history, the
fields that differ (controlplane.circuits.config_diff, as the API answers them) and who
made each version, when and why."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from controlplane.circuits import access
from controlplane.circuits.config_diff import FIELD_ORDER, VersionParamError, version_pair
from controlplane.circuits.models import Circuit, ConfigVersion
from dashboard.forms import config_diff
from dashboard.views import perm_required, teams

VIEW_VERSIONS = "circuits.view_configversion"


@require_GET
@perm_required(VIEW_VERSIONS)
def config_diff_page(request: HttpRequest, circuit_id: int) -> HttpResponse:
    """``?from=<v>&to=<v>``: the diff of two versions; 400 naming a bad parameter."""
    visible = Circuit.objects.filter(access.team_q(teams(request, VIEW_VERSIONS), "service__team"))
    circuit = get_object_or_404(visible.select_related("service"), pk=circuit_id)
    context = {
        "circuit": circuit,
        "versions": ConfigVersion.objects.filter(circuit=circuit)
        .order_by("-version")
        .values_list("version", flat=True)[:200],
        "chosen": {"from": request.GET.get("from", ""), "to": request.GET.get("to", "")},
        "nav": "overview",
    }
    try:
        old, new = version_pair(circuit, request.GET.get("from"), request.GET.get("to"))
    except VersionParamError as exc:
        context.update(error=str(exc), error_field=exc.param)
        return render(request, "dashboard/config_diff.html", context, status=400)
    diff = config_diff(old.config, new.config)
    fields = set(FIELD_ORDER) | set(old.config) | set(new.config)
    context.update(
        old=old,
        new=new,
        pair=[old] if old.pk == new.pk else [old, new],
        diff=diff,
        unchanged=len(fields) - len(diff),
    )
    return render(request, "dashboard/config_diff.html", context)
