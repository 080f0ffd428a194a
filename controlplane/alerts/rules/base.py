"""The base of rule kinds: params with defaults and validation, and the match query.

A rule kind adds the circuits a rule matches *now* to the temporary table
``alert_match`` (rule_id, circuit_id, started_at, value, forced) with set-based SQL
over every circuit in the rule's scope; evaluation does the rest (lifecycle, dedup,
notifications) for all kinds at once.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

from django.db.backends.utils import CursorWrapper


class ScopedRule(Protocol):
    """What a rule kind reads of its rule (an ``AlertRule`` row): its id and its scope.

    Declared here so that the rule kinds need not import the models, which validate
    a rule's params through them.
    """

    @property
    def pk(self) -> Any: ...

    @property
    def service_id(self) -> int | None: ...

    @property
    def circuit_id(self) -> int | None: ...


@dataclass(frozen=True)
class Param:
    """One parameter of a rule kind: its type, default and inclusive bounds (``integer``:
    whole numbers only)."""

    default: float | bool
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    integer: bool = False

    def error(self, value: Any) -> str | None:
        if isinstance(self.default, bool):
            return None if isinstance(value, bool) else "must be true or false"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if self.integer and isinstance(value, float) and not value.is_integer():
            return "must be a whole number"
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}"
        return None


class RuleKind:
    """A kind of rule; subclasses set ``kind`` and ``params`` and write ``collect``."""

    kind: ClassVar[str]
    params: ClassVar[dict[str, Param]]
    # Seconds a match must last before the alert fires; "for" in params overrides.
    default_pending: ClassVar[float] = 0

    @classmethod
    def params_errors(cls, given: Any) -> dict[str, str]:
        """Reasons per param name; empty when ``given`` is valid."""
        if not isinstance(given, dict):
            return {"params": "must be an object"}
        errors: dict[str, str] = {}
        for name, value in given.items():
            spec = cls.params.get(name)
            if spec is None:
                errors[name] = f"unknown parameter; {cls.kind} takes {', '.join(cls.params)}"
                continue
            reason = spec.error(value)
            if reason:
                errors[name] = reason
        return errors

    @classmethod
    def with_defaults(cls, given: dict[str, Any]) -> dict[str, Any]:
        """Every param, the given value or its default."""
        return {name: given.get(name, spec.default) for name, spec in cls.params.items()}

    @classmethod
    def pending_for(cls, params: dict[str, Any]) -> float:
        """Seconds the condition must hold before the alert fires."""
        return float(params.get("for", cls.default_pending))

    @classmethod
    def collect(
        cls, cursor: CursorWrapper, rule: ScopedRule, params: dict[str, Any], now: datetime
    ) -> None:
        """Insert the rule's current matches into ``alert_match``."""
        raise NotImplementedError


def scope_sql(rule: ScopedRule, circuit_column: str = "c.id") -> tuple[str, dict[str, Any]]:
    """The SQL condition (and params) limiting circuits ``c`` to the rule's scope."""
    if rule.circuit_id:
        return f" AND {circuit_column} = %(scope_circuit)s", {"scope_circuit": rule.circuit_id}
    if rule.service_id:
        return " AND c.service_id = %(scope_service)s", {"scope_service": rule.service_id}
    return "", {}
