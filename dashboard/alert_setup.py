"""Alert rules and notification channels in the dashboard: the lists, a create/edit form
for each, delete after a confirmation page, and a channel's "Send test".

A form's inputs are turned into the alerts API's request body and checked by the API's
own serializers (``AlertRuleSerializer``, ``ChannelSerializer``), so the page shows the
API's errors, with the API's field paths (``params.threshold``, ``config.url``), beside
the inputs they are about. Writes go through controlplane.alerts.operations and are
audited as the API's are; who may do what is the API's rule too: rules and channels
belong to no team, so reading and writing them takes a global role (access.has_global).
A channel's secrets are shown only as the API shows them (masked).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from controlplane.alerts.api.serializers import (
    REDACTED,
    AlertRuleSerializer,
    ChannelSerializer,
)
from controlplane.alerts.choices import AlertAuditAction, ChannelKind, RuleKind, Severity
from controlplane.alerts.models import AlertRule, Channel
from controlplane.alerts.operations import delete_audited, save_audited, send_test_notification
from controlplane.alerts.rules import RULE_KINDS
from controlplane.circuits import access
from controlplane.circuits.models import Circuit, Service
from controlplane.core.errors import flatten_errors
from controlplane.core.permissions import acting_user

VIEW_RULES = "alerts.view_alertrule"
VIEW_CHANNELS = "alerts.view_channel"


def global_perm_required(
    *perms: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Login (else the login page) and one of ``perms`` as a global role (else 403), as
    the API's GlobalPerms asks."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not any(access.has_global(request.user, perm) for perm in perms):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return login_required(checked)

    return decorate


def rights(request: HttpRequest) -> dict[str, bool]:
    """What the user may do to rules and channels (each a global permission)."""
    user = request.user
    return {
        f"{verb}_{model}": access.has_global(user, f"alerts.{verb}_{model}")
        for verb in ("view", "add", "change", "delete")
        for model in ("alertrule", "channel")
    }


# ------------------------------------------------------------------ inputs -> API body


def _number(raw: str) -> Any:
    """A typed number as JSON carries it (int if whole), else the text itself: the
    serializer then answers what the API answers for a string ("must be a number")."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        number = float(raw)
    except ValueError:
        return raw
    return number if math.isfinite(number) else raw


def _lines(raw: str) -> list[str]:
    """One item per line (or comma), blanks dropped."""
    return [item.strip() for item in raw.replace(",", "\n").splitlines() if item.strip()]


def param_input(kind: str, name: str) -> str:
    """The input name of a rule kind's param (each kind has its own fieldset)."""
    return f"param_{kind}_{name}"


def rule_body(post: QueryDict) -> dict[str, Any]:
    """The API's request body for a rule from the form: only the chosen kind's params,
    blank ones left out (the kind's default applies)."""
    kind = str(post.get("kind", ""))
    params: dict[str, Any] = {}
    for name, spec in getattr(RULE_KINDS.get(kind), "params", {}).items():
        field = param_input(kind, name)
        if isinstance(spec.default, bool):
            params[name] = post.get(field) == "on"
        elif raw := str(post.get(field, "")).strip():
            params[name] = _number(raw)
    body: dict[str, Any] = {
        "name": str(post.get("name", "")).strip(),
        "kind": kind,
        "params": params,
        "severity": post.get("severity", ""),
        "service": post.get("service") or None,
        "circuit": post.get("circuit") or None,
        "channels": post.getlist("channels"),
        "enabled": post.get("enabled") == "on",
    }
    if repeat := str(post.get("repeat_interval", "")).strip():
        body["repeat_interval"] = repeat
    return body


def channel_body(post: QueryDict, editing: bool) -> dict[str, Any]:
    """The API's request body for a channel from the form. On an edit, an empty secret
    input sends ``********`` (the API then keeps the stored secret), as does a webhook
    URL left as shown masked."""
    kind = str(post.get("kind", ""))
    config: dict[str, Any] = {}
    if kind == ChannelKind.WEBHOOK:
        config["url"] = str(post.get("webhook_url", "")).strip()
        secret = str(post.get("webhook_secret", ""))
        config["secret"] = REDACTED if editing and not secret else secret
        if timeout := str(post.get("webhook_timeout", "")).strip():
            config["timeout"] = _number(timeout)
    elif kind == ChannelKind.EMAIL:
        config["to"] = _lines(str(post.get("email_to", "")))
    elif kind == ChannelKind.APPRISE:
        urls = _lines(str(post.get("apprise_urls", "")))
        config["urls"] = REDACTED if editing and not urls else urls
    return {
        "name": str(post.get("name", "")).strip(),
        "kind": kind,
        "config": config,
        "enabled": post.get("enabled") == "on",
    }


# The inputs of each form named like the API's field they fill.
RULE_FIELDS = ("name", "kind", "severity", "service", "circuit", "channels", "repeat_interval")
CHANNEL_FIELDS = ("name", "kind")


def rule_error_inputs(kind: str) -> dict[str, str]:
    """The input beside which an error of the API's path is shown, on the rule form."""
    params = getattr(RULE_KINDS.get(kind), "params", {})
    return {f"params.{name}": param_input(kind, name) for name in params} | {
        field: field for field in RULE_FIELDS
    }


CHANNEL_ERROR_INPUTS = {
    "config.url": "webhook_url",
    "config.secret": "webhook_secret",
    "config.timeout": "webhook_timeout",
    "config.to": "email_to",
    "config.urls": "apprise_urls",
} | {field: field for field in CHANNEL_FIELDS}


def placed_errors(errors: dict[str, str], inputs: dict[str, str]) -> dict[str, str]:
    """The API's errors (``{path: reason}``) as "path: reason" keyed by the input each
    is shown beside; one about no input of the form goes under "form", above it."""
    placed: dict[str, str] = {}
    for path, reason in errors.items():
        target = inputs.get(path, "form")
        text = reason if path == "detail" else f"{path}: {reason}"
        placed[target] = f"{placed[target]} {text}" if target in placed else text
    return placed


# ------------------------------------------------------------------ page data


def kinds_with_params(
    values: dict[str, Any] | None = None, errors: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Each rule kind with its label and params (default, bounds, help), the value the
    form shows for the chosen kind's params and the error beside each."""
    values = values or {}
    shown = values.get("params", {})
    rows = []
    for kind, cls in RULE_KINDS.items():
        chosen = kind == values.get("kind")
        params = []
        for name, spec in cls.params.items():
            value = shown.get(name, "") if chosen else ""
            params.append(
                {
                    "name": name,
                    "input": param_input(kind, name),
                    "spec": spec,
                    "boolean": isinstance(spec.default, bool),
                    "value": "" if value is None else str(value),
                    "checked": value in (True, "on") if chosen else bool(spec.default),
                    "error": (errors or {}).get(param_input(kind, name)),
                }
            )
        rows.append(
            {"kind": kind, "label": RuleKind(kind).label, "chosen": chosen, "params": params}
        )
    return rows


def _scope_label(rule: AlertRule) -> str:
    if rule.circuit_id:
        return f"circuit {rule.circuit}"
    return f"service {rule.service.name}" if rule.service else "every circuit"


def _rule_rows() -> list[dict[str, Any]]:
    rules = AlertRule.objects.select_related("service", "circuit__service").prefetch_related(
        "channels"
    )
    return [
        {
            "rule": rule,
            "kind_label": RuleKind(rule.kind).label,
            "params": {
                name: json.dumps(value)
                for name, value in RULE_KINDS[rule.kind].with_defaults(rule.params).items()
            },
            "scope": _scope_label(rule),
            "channels": [c.name for c in rule.channels.all()],
        }
        for rule in rules.order_by("name")
    ]


def _channel_rows() -> list[dict[str, Any]]:
    channels = Channel.objects.annotate(n_rules=Count("rules")).order_by("name")
    return [{"channel": channel, "shown": shown_config(channel)} for channel in channels]


def shown_config(channel: Channel) -> list[tuple[str, str]]:
    """The channel's settings as the API shows them (secrets masked), as text."""
    shown = ChannelSerializer(channel).data["config"]
    return [
        (key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
        for key, value in shown.items()
    ]


def setup_page(
    request: HttpRequest, *, status: int = 200, tested: dict[str, Any] | None = None
) -> HttpResponse:
    """The lists of rules and channels (each only to who may read it), with the outcome
    of a test notification when one was just sent."""
    can = rights(request)
    return render(
        request,
        "dashboard/alert_setup.html",
        {
            "rules": _rule_rows() if can["view_alertrule"] else None,
            "channels": _channel_rows() if can["view_channel"] else None,
            "can": can,
            "tested": tested,
            "nav": "alerts",
        },
        status=status,
    )


@require_http_methods(["GET"])
@global_perm_required(VIEW_RULES, VIEW_CHANNELS)
def alert_setup(request: HttpRequest) -> HttpResponse:
    """Alert rules and notification channels: read-only lists for viewers; links to
    the forms, delete and "Send test" for who may write them."""
    return setup_page(request)


# ------------------------------------------------------------------ rules


def _rule_form(
    request: HttpRequest,
    rule: AlertRule | None,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "dashboard/rule_form.html",
        {
            "rule": rule,
            "values": values,
            "errors": errors,
            "kinds": kinds_with_params(values, errors),
            "severities": Severity.choices,
            "services": Service.objects.order_by("name").values_list("pk", "name"),
            "circuits": Circuit.objects.select_related("service").order_by("service__name", "name"),
            "channels": Channel.objects.order_by("name").values_list("pk", "name"),
            "nav": "alerts",
        },
        status=status,
    )


def _rule_values(rule: AlertRule | None) -> dict[str, Any]:
    """What the form shows for a rule (a new one: the API's defaults)."""
    if rule is None:
        return {"kind": RuleKind.OPEN_TOO_LONG, "severity": Severity.WARNING, "enabled": True,
                "params": {}, "channels": [], "repeat_interval": 0}  # fmt: skip
    return {
        "name": rule.name,
        "kind": rule.kind,
        "params": dict(rule.params),
        "severity": rule.severity,
        "service": rule.service_id,
        "circuit": rule.circuit_id,
        "channels": list(rule.channels.values_list("pk", flat=True)),
        "enabled": rule.enabled,
        "repeat_interval": rule.repeat_interval,
    }


def _posted_rule_values(post: QueryDict, body: dict[str, Any]) -> dict[str, Any]:
    """What the form shows again after a refused POST: what was typed."""
    kind = body["kind"]
    names = getattr(RULE_KINDS.get(kind), "params", {})
    params = {name: post.get(param_input(kind, name), "") for name in names}
    return {
        **body,
        "params": params,
        "service": _int_or_none(body["service"]),
        "circuit": _int_or_none(body["circuit"]),
        "channels": [_int_or_none(c) for c in body["channels"]],
        "repeat_interval": post.get("repeat_interval", ""),
    }


def _int_or_none(raw: Any) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _save_rule(request: HttpRequest, rule: AlertRule | None) -> HttpResponse:
    body = rule_body(request.POST)
    serializer = AlertRuleSerializer(rule, data=body)
    if not serializer.is_valid():
        errors = placed_errors(flatten_errors(serializer.errors), rule_error_inputs(body["kind"]))
        values = _posted_rule_values(request.POST, body)
        return _rule_form(request, rule, values, errors, status=400)
    action = AlertAuditAction.RULE_UPDATE if rule else AlertAuditAction.RULE_CREATE
    save_audited(serializer, acting_user(request), action)
    return redirect(reverse("dashboard:alert_setup") + "#rules")


@require_http_methods(["GET", "POST"])
@global_perm_required("alerts.add_alertrule")
def rule_new(request: HttpRequest) -> HttpResponse:
    """A new alert rule."""
    if request.method == "POST":
        return _save_rule(request, None)
    return _rule_form(request, None, _rule_values(None), {})


@require_http_methods(["GET", "POST"])
@global_perm_required("alerts.change_alertrule")
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Edit an alert rule (a full update: the form holds every field)."""
    rule = get_object_or_404(AlertRule, pk=rule_id)
    if request.method == "POST":
        return _save_rule(request, rule)
    return _rule_form(request, rule, _rule_values(rule), {})


@require_http_methods(["GET", "POST"])
@global_perm_required("alerts.delete_alertrule")
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    """GET: what deleting the rule takes with it; POST: delete it (audited)."""
    rule = get_object_or_404(
        AlertRule.objects.annotate(
            n_alerts=Count("alerts"),
            n_open=Count("alerts", filter=Q(alerts__status__in=("pending", "firing"))),
        ),
        pk=rule_id,
    )
    if request.method == "POST":
        delete_audited(rule, acting_user(request), AlertAuditAction.RULE_DELETE)
        return redirect(reverse("dashboard:alert_setup") + "#rules")
    return render(
        request,
        "dashboard/setup_delete.html",
        {"rule": rule, "what": f"alert rule {rule.name}", "nav": "alerts"},
    )


# ------------------------------------------------------------------ channels


def _channel_form(
    request: HttpRequest,
    channel: Channel | None,
    values: dict[str, Any],
    errors: dict[str, str],
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "dashboard/channel_form.html",
        {
            "channel": channel,
            "shown": shown_config(channel) if channel else [],
            "values": values,
            "errors": errors,
            "kinds": ChannelKind.choices,
            "nav": "alerts",
        },
        status=status,
    )


def _channel_values(channel: Channel | None) -> dict[str, Any]:
    """What the form shows for a channel: secrets never (the URL as the API masks it)."""
    if channel is None:
        return {"kind": ChannelKind.WEBHOOK, "enabled": True}
    shown = ChannelSerializer(channel).data["config"]
    return {
        "name": channel.name,
        "kind": channel.kind,
        "enabled": channel.enabled,
        "webhook_url": shown.get("url", "") if channel.kind == ChannelKind.WEBHOOK else "",
        "webhook_timeout": shown.get("timeout", ""),
        "email_to": "\n".join(shown.get("to", [])) if channel.kind == ChannelKind.EMAIL else "",
    }


def _posted_channel_values(post: QueryDict) -> dict[str, Any]:
    """What the form shows again after a refused POST: what was typed, but secrets."""
    return {
        "name": post.get("name", ""),
        "kind": post.get("kind", ""),
        "enabled": post.get("enabled") == "on",
        "webhook_url": post.get("webhook_url", ""),
        "webhook_timeout": post.get("webhook_timeout", ""),
        "email_to": post.get("email_to", ""),
    }


def _save_channel(request: HttpRequest, channel: Channel | None) -> HttpResponse:
    body = channel_body(request.POST, editing=channel is not None)
    serializer = ChannelSerializer(channel, data=body)
    if not serializer.is_valid():
        errors = placed_errors(flatten_errors(serializer.errors), CHANNEL_ERROR_INPUTS)
        values = _posted_channel_values(request.POST)
        return _channel_form(request, channel, values, errors, status=400)
    action = AlertAuditAction.CHANNEL_UPDATE if channel else AlertAuditAction.CHANNEL_CREATE
    save_audited(serializer, acting_user(request), action)
    return redirect(reverse("dashboard:alert_setup") + "#channels")


@require_http_methods(["GET", "POST"])
@global_perm_required("alerts.add_channel")
def channel_new(request: HttpRequest) -> HttpResponse:
    """A new notification channel."""
    if request.method == "POST":
        return _save_channel(request, None)
    return _channel_form(request, None, _channel_values(None), {})


@require_http_methods(["GET", "POST"])
@global_perm_required("alerts.change_channel")
def channel_edit(request: HttpRequest, channel_id: int) -> HttpResponse:
    """Edit a channel; secrets left empty are kept."""
    channel = get_object_or_404(Channel, pk=channel_id)
    if request.method == "POST":
        return _save_channel(request, channel)
    return _channel_form(request, channel, _channel_values(channel), {})


@require_http_methods(["GET", "POST"])
@global_perm_required("alerts.delete_channel")
def channel_delete(request: HttpRequest, channel_id: int) -> HttpResponse:
    """GET: which rules lose the channel; POST: delete it (audited)."""
    channel = get_object_or_404(Channel, pk=channel_id)
    if request.method == "POST":
        delete_audited(channel, acting_user(request), AlertAuditAction.CHANNEL_DELETE)
        return redirect(reverse("dashboard:alert_setup") + "#channels")
    return render(
        request,
        "dashboard/setup_delete.html",
        {
            "channel": channel,
            "rules": channel.rules.order_by("name").values_list("name", flat=True),
            "what": f"channel {channel.name}",
            "nav": "alerts",
        },
    )


@require_POST
@global_perm_required("alerts.change_channel")
def channel_test(request: HttpRequest, channel_id: int) -> HttpResponse:
    """Send a test notification through the channel's transport now (audited); the
    list answers with the outcome: the far side's answer or the error (200 either way:
    the page did its work)."""
    channel = get_object_or_404(Channel, pk=channel_id)
    result = send_test_notification(channel, user=acting_user(request))
    tested = {"channel": channel, "result": result}
    return setup_page(request, tested=tested)
