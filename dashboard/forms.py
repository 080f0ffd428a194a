"""Forms of the circuit page; the rules themselves live in operations.py and breakers.config."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.validators import MaxValueValidator

from breakers.config import CircuitBreakerConfig, field_specs
from controlplane.circuits.choices import NAME_MAX_LENGTH, TokenScope
from controlplane.circuits.config_diff import config_changes
from controlplane.circuits.operations import MAX_EXPIRES_IN_SECONDS
from controlplane.core.audit import MAX_REASON_LENGTH

_DEFAULTS = CircuitBreakerConfig().to_dict()
#: Every wire field's label, unit, explanation and allowed values (breakers.config).
SPECS = field_specs()


class OverrideForm(forms.Form):
    """Force open, force closed or release, with a reason, an optional expiry and a confirmation."""

    ACTIONS = {
        "forced_open": "Force open",
        "forced_closed": "Force closed",
        "release": "Release",
    }

    action = forms.ChoiceField(choices=list(ACTIONS.items()))
    reason = forms.CharField(required=False, max_length=MAX_REASON_LENGTH, widget=forms.TextInput)
    expires_in_minutes = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_EXPIRES_IN_SECONDS // 60
    )
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (
            data.get("action") in ("forced_open", "forced_closed")
            and not (data.get("reason") or "").strip()
        ):
            self.add_error("reason", "A reason is required to force a circuit.")
        return data


class DrillForm(forms.Form):
    """A drill: a share of the live instances or named ones, how long, why. The rules
    (bounds, live instances, one at a time) are checked by controlplane.circuits.drills."""

    share = forms.IntegerField(required=False, min_value=1, max_value=100)
    instances = forms.MultipleChoiceField(required=False)
    duration = forms.IntegerField(min_value=1)
    reason = forms.CharField(max_length=MAX_REASON_LENGTH, widget=forms.TextInput)

    def __init__(self, *args: Any, live: list[str], max_seconds: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instances = self.fields["instances"]
        assert isinstance(instances, forms.MultipleChoiceField)
        instances.choices = [(name, name) for name in live]
        duration = self.fields["duration"]
        assert isinstance(duration, forms.IntegerField)
        duration.max_value = max_seconds
        duration.validators.append(MaxValueValidator(max_seconds))


def parse_config(post: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Typed wire values from the edit form's inputs, and parse errors per field.

    Only the syntax is checked here (a number where a number goes); whether the values
    are allowed is decided by the library's ``config_errors``.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for spec in SPECS:
        name = spec.name
        raw = str(post.get(name, "")).strip()
        if raw == "" and spec.nullable:
            values[name] = None
            continue
        if spec.kind == "choice":
            values[name] = raw
            continue
        try:
            if spec.kind == "int":
                values[name] = int(raw)
            else:
                number = float(raw)
                if not math.isfinite(number):
                    raise ValueError(raw)
                values[name] = number
        except ValueError:
            kind = "an integer" if spec.kind == "int" else "a number"
            errors[name] = f"must be {kind}, got {raw!r}" if raw else f"must be {kind}"
    return values, errors


def input_value(value: Any) -> str:
    """A wire value as an input shows it (None: empty)."""
    return "" if value is None else str(value)


def _attribute(bound: float | None) -> str:
    """A bound as a number input's min/max attribute ("1", "86400", "0.5")."""
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))


def config_rows(
    config: Mapping[str, Any] | None,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One row per wire field for the config form: its spec (label, unit, explanation,
    range, choices), the value shown (typed ``values`` first, else ``config``, else the
    library default), the value of ``config`` and the error beside it."""
    base = _DEFAULTS | dict(config or {})
    rows = []
    for spec in SPECS:
        shown = values[spec.name] if values is not None and spec.name in values else base[spec.name]
        rows.append(
            {
                "spec": spec,
                "name": spec.name,
                "value": input_value(shown),
                "min": _attribute(spec.low),
                "max": _attribute(spec.high),
                "current": spec.format(base[spec.name]),
                "error": (errors or {}).get(spec.name),
            }
        )
    return rows


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The fields whose value changes (circuits.config_diff), each with its name, label
    and both values with units."""
    specs = {spec.name: spec for spec in SPECS}
    rows = []
    for change in config_changes(old, new):
        spec = specs.get(change.field)
        rows.append(
            {
                "name": change.field,
                "label": spec.label if spec else change.field,
                "old": spec.format(change.old) if spec else input_value(change.old),
                "new": spec.format(change.new) if spec else input_value(change.new),
            }
        )
    return rows


class TokenForm(forms.Form):
    """A personal API token for the signed-in user (checked by circuits/tokens.py)."""

    scope = forms.ChoiceField(choices=TokenScope.choices, initial=TokenScope.READ)
    team = forms.CharField(required=False, max_length=NAME_MAX_LENGTH)
    expires_in_days = forms.IntegerField(min_value=1)
    label = forms.CharField(required=False, max_length=100)
