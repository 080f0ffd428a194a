"""Per-action permissions answered per team (controlplane/circuits/access.py).

A ViewSet with ``TeamScopedMixin`` names ``team_path``, the lookup from its model to the
team of the service a row belongs to. An action is allowed when the user holds its
permission globally or in some team; the rows it reads are cut to the teams where the
user may view them (another team's row is a 404, as if it did not exist); a write is
checked once more against the team of the row it touches (403).
"""

from typing import Any

from django.db.models import QuerySet
from rest_framework import permissions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from controlplane.circuits import access
from controlplane.core.permissions import ActionPermissionsMixin, HasPerms


def team_of(obj: Any, path: str) -> int | None:
    """The team id at the end of ``path`` (``circuit__service__team``) from ``obj``."""
    *hops, last = path.split("__")
    for hop in hops:
        obj = getattr(obj, hop)
        if obj is None:
            return None
    team_id: int | None = getattr(obj, f"{last}_id")
    return team_id


class GlobalPerms(HasPerms):
    """``HasPerms`` answered by access.py: a global role, cut by the request's API token."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = self.read if request.method in permissions.SAFE_METHODS else self.write
        return needed is not None and access.has_global(user, needed)


class TeamPerms(permissions.BasePermission):
    """``read`` for safe methods and ``write`` for the others, globally or in a team."""

    read: str | None = None
    write: str | None = None

    @classmethod
    def of(cls, *, read: str | None = None, write: str | None = None) -> type["TeamPerms"]:
        """A permission class requiring these Django permissions."""
        return type("TeamPerms", (cls,), {"read": read, "write": write})

    def _needed(self, request: Request) -> str | None:
        return self.read if request.method in permissions.SAFE_METHODS else self.write

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = self._needed(request)
        return needed is not None and access.may_somewhere(user, needed)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        needed = self._needed(request)
        return needed is not None and access.may(request.user, needed, view.team_of(obj))


class TeamScopedMixin(ActionPermissionsMixin):
    """Per-action permissions per team, and querysets cut to the visible teams."""

    #: Lookup from the model to its service's team (``circuit__service__team``).
    team_path: str
    #: The permission whose teams bound the rows a user sees.
    view_perm: str
    request: Any

    def get_permissions(self) -> list[BasePermission]:
        action: str | None = getattr(self, "action", None)
        if action is None:
            return [permissions.IsAuthenticated()]
        read, write = self.action_permissions.get(action, (None, None))
        return [TeamPerms.of(read=read, write=write)()]

    def scoped(self, qs: QuerySet[Any], path: str | None = None) -> QuerySet[Any]:
        """``qs`` cut to the services the user may view (``path``: its lookup to the team)."""
        return access.restrict(qs, self.request.user, self.view_perm, path or self.team_path)

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return super().filter_queryset(self.scoped(queryset))  # type: ignore[misc]

    def team_of(self, obj: Any) -> int | None:
        """The team of the service ``obj`` belongs to."""
        return team_of(obj, self.team_path)
