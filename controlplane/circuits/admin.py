"""Django admin for every circuits model.

History (transitions, config versions, overrides, audit events) and the rows the system
writes (instances, circuits, snapshots) are read-only here: no add, change or delete,
so the audit trail cannot be erased from the browser (nor through a cascade from the
service or circuit it belongs to: the admin refuses a delete whose cascade reaches a
model it may not delete).
"""

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from controlplane.circuits.choices import AuditAction
from controlplane.circuits.models import (
    AgentToken,
    APIToken,
    AuditEvent,
    Circuit,
    ConfigVersion,
    Instance,
    Membership,
    Override,
    Service,
    Snapshot,
    SSOIdentity,
    Team,
    Transition,
)
from controlplane.core.audit import record_audit
from controlplane.core.permissions import acting_user


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the system (history, snapshots) are viewed, never edited or deleted."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Also removes the bulk "delete selected" action. Retention alone removes history.
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]
    # Who keeps it: single sign-on's are synced at each sign-in (docs/sso.md).
    readonly_fields = ["source"]


@admin.register(SSOIdentity)
class SSOIdentityAdmin(ReadOnlyAdmin):
    """Who signs in as whom through single sign-on (rows written at sign-in)."""

    list_display = ["subject", "issuer", "user", "global_roles", "last_login_at"]
    search_fields = ["subject", "user__username"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "desired_version", "created_at"]
    list_filter = ["team"]
    search_fields = ["name"]
    readonly_fields = ["desired_version", "created_at"]


def _revoke(request: HttpRequest, tokens: QuerySet, action: str) -> int:
    now = timezone.now()
    revoked = 0
    with transaction.atomic():
        for token in tokens.filter(revoked_at__isnull=True):
            token.revoked_at = now
            token.save(update_fields=["revoked_at"])
            record_audit(
                actor=acting_user(request),
                action=action,
                target=token,
                service_id=getattr(token, "service_id", None),
                before={"prefix": token.prefix, "revoked_at": None},
                after={"prefix": token.prefix, "revoked_at": now.isoformat()},
                now=now,
            )
            revoked += 1
    return revoked


@admin.action(description="Revoke selected tokens")
def revoke_agent_tokens(modeladmin: admin.ModelAdmin, request: HttpRequest, qs: QuerySet) -> None:
    n = _revoke(request, qs, AuditAction.AGENT_TOKEN_REVOKE)
    modeladmin.message_user(request, f"Revoked {n} agent token(s).")


@admin.action(description="Revoke selected tokens")
def revoke_api_tokens(modeladmin: admin.ModelAdmin, request: HttpRequest, qs: QuerySet) -> None:
    n = _revoke(request, qs, AuditAction.API_TOKEN_REVOKE)
    modeladmin.message_user(request, f"Revoked {n} API token(s).")


@admin.register(AgentToken)
class AgentTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "service", "label", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["service"]
    search_fields = ["prefix", "label", "service__name"]
    actions = [revoke_agent_tokens]
    # Tokens are created with `manage.py create_agent_token` (the secret is shown once).
    readonly_fields = [
        "prefix",
        "token_hash",
        "service",
        "created_by",
        "created_at",
        "last_used_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "label", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["prefix", "label", "user__username"]
    actions = [revoke_api_tokens]
    readonly_fields = ["prefix", "token_hash", "user", "created_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = ["instance_id", "service", "hostname", "pid", "library_version", "last_seen"]
    list_filter = ["service"]
    search_fields = ["instance_id", "hostname"]


@admin.register(Circuit)
class CircuitAdmin(ReadOnlyAdmin):
    list_display = ["name", "service", "current_config", "created_at"]
    list_filter = ["service"]
    search_fields = ["name"]
    list_select_related = ["service", "current_config"]


@admin.register(ConfigVersion)
class ConfigVersionAdmin(ReadOnlyAdmin):
    list_display = ["circuit", "version", "source", "created_by", "created_at"]
    list_filter = ["source"]
    search_fields = ["circuit__name"]
    list_select_related = ["circuit__service", "created_by"]


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    list_display = [
        "circuit",
        "instance",
        "state",
        "config_version",
        "calls",
        "failures",
        "updated_at",
    ]
    list_filter = ["state"]
    list_select_related = ["circuit__service", "instance__service"]


@admin.register(Transition)
class TransitionAdmin(ReadOnlyAdmin):
    list_display = ["circuit", "instance", "seq", "from_state", "to_state", "reason", "at"]
    list_filter = ["to_state", "reason"]
    search_fields = ["circuit__name", "instance__instance_id"]
    list_select_related = ["circuit__service", "instance__service"]
    date_hierarchy = "at"


@admin.register(Override)
class OverrideAdmin(ReadOnlyAdmin):
    list_display = [
        "circuit",
        "state",
        "reason",
        "created_by",
        "created_at",
        "expires_at",
        "ended_at",
    ]
    list_filter = ["state", "end_reason"]
    list_select_related = ["circuit__service", "created_by"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor_name", "action", "team", "target_repr"]
    list_filter = ["action"]
    search_fields = ["actor_name", "target_repr", "reason"]
    date_hierarchy = "at"
