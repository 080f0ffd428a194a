"""Forms of the circuit page; the rules themselves live in operations.py and breakers.config."""

from __future__ import annotations

import math
from typing import Any

from django import forms

from breakers.config import WIRE_FIELDS, CircuitBreakerConfig
from controlplane.circuits.operations import MAX_EXPIRES_IN_SECONDS
from controlplane.core.audit import MAX_REASON_LENGTH

_DEFAULTS = CircuitBreakerConfig().to_dict()
# Fields whose empty input means null (the library accepts None for them).
NULLABLE = frozenset(name for name, value in _DEFAULTS.items() if value is None)


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


def parse_config(post: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Typed wire values from the edit form's text inputs, and parse errors per field.

    Only the syntax is checked here (a number where a number goes); whether the values
    are allowed is decided by the library's ``config_errors`` in create_config_version.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in WIRE_FIELDS:
        raw = str(post.get(name, "")).strip()
        default = _DEFAULTS[name]
        if raw == "" and name in NULLABLE:
            values[name] = None
            continue
        if isinstance(default, str):
            values[name] = raw
            continue
        try:
            if isinstance(default, int) and not isinstance(default, bool):
                values[name] = int(raw)
            else:
                number = float(raw)
                if not math.isfinite(number):
                    raise ValueError(raw)
                values[name] = number
        except ValueError:
            kind = "an integer" if isinstance(default, int) else "a number"
            errors[name] = f"must be {kind}, got {raw!r}"
    return values, errors
