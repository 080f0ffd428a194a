"""Who may open a dashboard page: sign-in, a permission somewhere, then the team of the
object the view touches (controlplane/circuits/access.py, the one decision point)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from controlplane.circuits import access

VIEW = "circuits.view_circuit"


def perm_required(
    perm: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Login (else the login page) and ``perm`` globally or in some team (else 403);
    the view then checks the team of the object it touches (controlplane/circuits/access.py)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not access.may_somewhere(request.user, perm):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return login_required(checked)

    return decorate


viewer_required = perm_required(VIEW)


def teams(request: HttpRequest, perm: str = VIEW) -> access.Scope:
    """The teams whose services the user may ``perm`` (None: every service)."""
    return access.scope(request.user, perm)


def require(request: HttpRequest, perm: str, team_id: int | None) -> None:
    """403 unless the user has ``perm`` on the services of ``team_id``."""
    if not access.may(request.user, perm, team_id):
        raise PermissionDenied
