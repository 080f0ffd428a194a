"""Permissions per action: reads need one Django permission, writes another."""

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from rest_framework import exceptions, permissions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request


def acting_user(request: Request | HttpRequest) -> User:
    """The signed-in user behind a request that passed its permission checks."""
    user = request.user
    if not isinstance(user, User) or not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    return user


class HasPerms(permissions.BasePermission):
    """Authenticated, with ``read`` for safe methods and ``write`` for the others.

    Use ``HasPerms.of(read="circuits.view_circuit", write="circuits.override_circuit")``.
    """

    read: str | None = None
    write: str | None = None

    @classmethod
    def of(cls, *, read: str | None = None, write: str | None = None) -> type["HasPerms"]:
        """A permission class requiring these Django permissions."""
        return type("HasPerms", (cls,), {"read": read, "write": write})

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        needed = self.read if request.method in permissions.SAFE_METHODS else self.write
        return needed is not None and user.has_perm(needed)


class ActionPermissionsMixin:
    """Maps each action to (read permission, write permission); unknown actions are denied.

    A method the ViewSet does not route (DELETE on a read-only one) has no action: it
    only needs a signed-in user, so the answer is the 405 that says what is wrong.
    """

    action_permissions: dict[str, tuple[str | None, str | None]] = {}
    #: The class answering them (an app may answer with its own rules).
    perms_class: type[HasPerms] = HasPerms

    def get_permissions(self) -> list[BasePermission]:
        action: str | None = getattr(self, "action", None)
        if action is None:
            return [permissions.IsAuthenticated()]
        read, write = self.action_permissions.get(action, (None, None))
        return [self.perms_class.of(read=read, write=write)()]
