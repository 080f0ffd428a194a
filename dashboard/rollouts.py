"""The canary rollout section of the circuit page: both groups side by side, start,
promote and roll back (controlplane/circuits/rollouts.py does the work, as for the API).

The page includes ``dashboard/_rollout.html``; ``rollout.js`` refreshes the groups'
figures from :func:`rollout_groups` (server-rendered, so the figures are formatted once).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from breakers.canary import MAX_PERCENT, MIN_PERCENT
from controlplane.circuits import access, rollouts
from controlplane.circuits.choices import RolloutState
from controlplane.circuits.models import Circuit, Rollout
from controlplane.core.audit import MAX_REASON_LENGTH
from controlplane.core.permissions import acting_user
from dashboard.forms import config_rows, parse_config
from dashboard.guards import perm_required

VIEW = "circuits.view_circuit"
EDIT_CONFIG = "circuits.edit_circuit_config"
RECENT = 5  # ended rollouts listed under the active one


def _selector_text(select: dict[str, Any]) -> str:
    if "instances" in select:
        names = select["instances"]
        return f"{len(names)} named instance{'s' if len(names) != 1 else ''}: " + ", ".join(names)
    return f"{select['percent']}% of instances"


def _active_context(rollout: Rollout) -> dict[str, Any]:
    groups = rollouts.figures(rollout)
    return {
        "rollout": rollout,
        "selector": _selector_text(rollout.select),
        "canary": groups["canary"],
        "baseline": groups["baseline"],
        "members": rollouts.members(rollout),
    }


def panel(
    circuit: Circuit,
    user: Any,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    posted: Any = None,
) -> dict[str, Any]:
    """The section's context: the active rollout with its groups, the last ended ones,
    whether the user may act, and the start form (with typed values and errors)."""
    rows = list(
        Rollout.objects.filter(circuit=circuit)
        .select_related("from_version", "to_version", "created_by", "ended_by")
        .order_by("-started_at", "-id")[: RECENT + 1]
    )
    active = next((r for r in rows if r.state == RolloutState.ACTIVE), None)
    current = circuit.current_config
    errors = errors or {}
    identities = sorted({identity for _, identity, _ in rollouts.live_instances(circuit.pk)})
    return {
        "active": _active_context(active) if active is not None else None,
        "recent": [r for r in rows if r is not active][:RECENT],
        "can_rollout": access.may(user, EDIT_CONFIG, circuit.service.team_id),
        "fields": config_rows(current.config if current else None, values, errors),
        "errors": errors,
        "identities": identities,
        "posted": posted or {},
        "min_percent": MIN_PERCENT,
        "max_percent": MAX_PERCENT,
        "reason_max_length": MAX_REASON_LENGTH,
    }


def _circuit(request: HttpRequest, circuit_id: int, perm: str) -> Circuit:
    visible = access.restrict(
        Circuit.objects.select_related("service", "current_config"),
        request.user,
        VIEW,
        "service__team",
    )
    circuit: Circuit = get_object_or_404(visible, pk=circuit_id)
    if not access.may(request.user, perm, circuit.service.team_id):
        raise PermissionDenied
    return circuit


def _back(circuit: Circuit) -> HttpResponse:
    return redirect(reverse("dashboard:circuit", args=[circuit.pk]) + "#rollout")


def _number(raw: str, errors: dict[str, str], field: str, kind: type) -> Any:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        errors[field] = f"must be {'an integer' if kind is int else 'a number'}, got {raw!r}"
        return None


@require_POST
@perm_required(EDIT_CONFIG)
def rollout_start(request: HttpRequest, circuit_id: int) -> HttpResponse:
    """Start a canary of the typed thresholds on a percentage or on named instances; bad
    input answers the form again with the errors beside their fields."""
    if not request.user.is_authenticated:
        return redirect(f"{reverse('dashboard:login')}?next={request.path}")
    circuit = _circuit(request, circuit_id, EDIT_CONFIG)
    values, errors = parse_config(request.POST)
    percent = _number(str(request.POST.get("percent", "")), errors, "percent", int)
    margin = _number(
        str(request.POST.get("auto_rollback_margin", "")), errors, "auto_rollback_margin", float
    )
    named = [str(n) for n in request.POST.getlist("instances") if str(n)]
    if not errors:
        try:
            rollouts.start_rollout(
                circuit,
                user=acting_user(request),
                config=values,
                percent=percent,
                instances=named or None,
                auto_rollback_margin=margin,
                reason=str(request.POST.get("reason", "")),
            )
        except rollouts.RolloutInvalidError as exc:
            errors = {k.removeprefix("config."): v for k, v in exc.errors.items()}
        except rollouts.RolloutConflictError as exc:
            errors = {"circuit": str(exc)}
        else:
            return _back(circuit)
    posted = {
        "percent": request.POST.get("percent", ""),
        "instances": named,
        "auto_rollback_margin": request.POST.get("auto_rollback_margin", ""),
        "reason": request.POST.get("reason", ""),
    }
    section = panel(circuit, request.user, values=values, errors=errors, posted=posted)
    return render(
        request,
        "dashboard/rollout_form.html",
        {"circuit": circuit, "p": section, "nav": "overview"},
        status=409 if "circuit" in errors else 400,
    )


def _end(request: HttpRequest, circuit_id: int, rollout_id: int, end: Any) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect(f"{reverse('dashboard:login')}?next={request.path}")
    circuit = _circuit(request, circuit_id, EDIT_CONFIG)
    rollout = get_object_or_404(Rollout, pk=rollout_id, circuit=circuit)
    reason = str(request.POST.get("reason", ""))[:MAX_REASON_LENGTH]
    try:
        end(rollout, user=acting_user(request), reason=reason)
    except rollouts.RolloutConflictError as exc:
        section = panel(circuit, request.user, errors={"state": str(exc)})
        return render(
            request,
            "dashboard/rollout_form.html",
            {"circuit": circuit, "p": section, "nav": "overview"},
            status=409,
        )
    return _back(circuit)


@require_POST
@perm_required(EDIT_CONFIG)
def rollout_promote(request: HttpRequest, circuit_id: int, rollout_id: int) -> HttpResponse:
    """Make the canary's version the circuit's config on every instance."""
    return _end(request, circuit_id, rollout_id, rollouts.promote_rollout)


@require_POST
@perm_required(EDIT_CONFIG)
def rollout_rollback(request: HttpRequest, circuit_id: int, rollout_id: int) -> HttpResponse:
    """Return every canary instance to the current config."""
    return _end(request, circuit_id, rollout_id, rollouts.rollback_rollout)


@require_GET
def rollout_groups(request: HttpRequest, circuit_id: int) -> HttpResponse:
    """The active rollout's groups table alone (rollout.js refreshes it); 204 without one."""
    if not request.user.is_authenticated:
        return HttpResponse(status=401)
    if not access.may_somewhere(request.user, VIEW):
        raise PermissionDenied
    circuit = _circuit(request, circuit_id, VIEW)
    active = Rollout.objects.filter(circuit=circuit, state=RolloutState.ACTIVE).first()
    if active is None:
        return HttpResponse(status=204)
    return render(request, "dashboard/_rollout_groups.html", {"a": _active_context(active)})
