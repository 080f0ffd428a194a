"""The difference between two config versions of a circuit: the one diff the API
(``GET /api/v1/circuits/{id}/config/diff/``), the dashboard's diff page and the config
form's confirmation page read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from breakers.config import field_specs
from controlplane.circuits.models import Circuit, ConfigVersion

#: Wire fields in the library's order; fields a version holds beyond them come last.
FIELD_ORDER = tuple(spec.name for spec in field_specs())
# The largest version number a query may name (ConfigVersion.version is a positive int).
MAX_VERSION = 2**31 - 1


@dataclass(frozen=True)
class FieldChange:
    """One wire field whose value differs: its name and both values (None: absent)."""

    field: str
    old: Any
    new: Any


class VersionParamError(ValueError):
    """A ``from``/``to`` parameter that is missing, not a version number, or names no
    version of the circuit; ``param`` names it."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f"{param}: {reason}")
        self.param = param
        self.reason = reason


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldChange]:
    """The fields whose value differs between two wire configs, in the library's order."""
    extra = sorted((set(old) | set(new)) - set(FIELD_ORDER))
    return [
        FieldChange(name, old.get(name), new.get(name))
        for name in (*FIELD_ORDER, *extra)
        if old.get(name) != new.get(name)
    ]


def _version_number(raw: str | None, param: str) -> int:
    text = (raw or "").strip()
    if not text:
        raise VersionParamError(param, "required: a version number of this circuit")
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_VERSION:
        raise VersionParamError(param, f"must be a version number (1 to {MAX_VERSION})")
    return int(text)


def version_pair(
    circuit: Circuit, raw_from: str | None, raw_to: str | None
) -> tuple[ConfigVersion, ConfigVersion]:
    """The versions ``from`` and ``to`` of ``circuit`` (one query); VersionParamError
    naming the first parameter at fault."""
    numbers = {"from": _version_number(raw_from, "from"), "to": _version_number(raw_to, "to")}
    found = {
        v.version: v
        for v in ConfigVersion.objects.filter(
            circuit=circuit, version__in=set(numbers.values())
        ).select_related("created_by")
    }
    for param, number in numbers.items():
        if number not in found:
            raise VersionParamError(param, f"this circuit has no version {number}")
    return found[numbers["from"]], found[numbers["to"]]
