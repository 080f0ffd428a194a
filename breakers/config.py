"""Circuit breaker configuration: immutable, validated, serialisable.

The control plane imports this module to validate thresholds it stores, so the rules
here are the single source of truth for what a valid configuration is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "WIRE_FIELDS",
    "CircuitBreakerConfig",
    "FieldSpec",
    "config_errors",
    "field_specs",
    "wire_schema",
]

#: Hard limits. Every numeric field has an explicit upper bound so a typo in a
#: central edit cannot produce a breaker that never closes or allocates huge windows.
MAX_COUNT = 1_000_000
MAX_WINDOW_SIZE = 100_000
MAX_HALF_OPEN_CALLS = 10_000
MAX_SECONDS = 86_400.0  # one day
MAX_OPEN_SECONDS = 604_800.0  # one week: the cap of a growing open timeout
MAX_MULTIPLIER = 100.0
#: max_timeout when none is given: this, or timeout when timeout is longer.
DEFAULT_MAX_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class _Rule:
    """Validation rule for one wire field."""

    kind: str  # "int", "float", "choice"
    low: float = 0.0
    high: float = 0.0
    low_open: bool = False  # True: the low bound itself is not allowed
    nullable: bool = False
    choices: tuple[str, ...] = ()

    def reason(self, value: Any) -> str | None:
        """Return why `value` is invalid, or None when it is valid."""
        if value is None and self.nullable:
            return None
        if self.kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return None
            allowed = " or ".join(repr(c) for c in self.choices)
            return f"must be {allowed}, got {value!r}"
        if self.kind == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
            ok = ok and self.low <= value <= self.high
            if ok:
                return None
            return f"must be an integer between {int(self.low)} and {int(self.high)}, got {value!r}"
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and value <= self.high
        ok = ok and (value > self.low if self.low_open else value >= self.low)
        if ok:
            return None
        low = f"greater than {self.low:g}" if self.low_open else f"at least {self.low:g}"
        what = "a number or null" if self.nullable else "a number"
        return f"must be {what} {low} and at most {self.high:g}, got {value!r}"


_RULES: dict[str, _Rule] = {
    "failure_threshold": _Rule("int", 1, MAX_COUNT),
    "success_threshold": _Rule("int", 1, MAX_COUNT),
    "timeout": _Rule("float", 0.0, MAX_SECONDS, low_open=True),
    "half_open_max_calls": _Rule("int", 1, MAX_HALF_OPEN_CALLS),
    "failure_rate_threshold": _Rule("float", 0.0, 1.0, low_open=True),
    "sliding_window_size": _Rule("int", 1, MAX_WINDOW_SIZE),
    "minimum_calls": _Rule("int", 1, MAX_WINDOW_SIZE),
    "window_type": _Rule("choice", choices=("count", "time")),
    "window_duration": _Rule("float", 0.0, MAX_SECONDS, low_open=True),
    "slow_call_duration": _Rule("float", 0.0, MAX_SECONDS, low_open=True, nullable=True),
    "slow_call_rate_threshold": _Rule("float", 0.0, 1.0, low_open=True),
    "timeout_multiplier": _Rule("float", 1.0, MAX_MULTIPLIER),
    "max_timeout": _Rule("float", 0.0, MAX_OPEN_SECONDS, low_open=True),
    "timeout_jitter": _Rule("float", 0.0, 1.0),
}

#: Fields that travel as JSON between agents and the control plane, in a stable order.
WIRE_FIELDS: tuple[str, ...] = tuple(_RULES)

_FLOAT_FIELDS = frozenset(n for n, r in _RULES.items() if r.kind == "float")

#: Per wire field: (label, unit, one-line explanation). The unit names what the wire
#: value counts; "fraction" fields are shares from 0 to 1 (0.5 is half the calls).
_TEXTS: dict[str, tuple[str, str, str]] = {
    "failure_threshold": (
        "Consecutive failures",
        "failures",
        "Failures in a row, while closed, that open the circuit; a success resets the streak.",
    ),
    "success_threshold": (
        "Probe successes to close",
        "successes",
        "Successful probes, while half open, that close the circuit; a failure re-opens it.",
    ),
    "timeout": (
        "Open timeout",
        "seconds",
        "How long the circuit stays open before the next call is let through as a probe.",
    ),
    "half_open_max_calls": (
        "Probes at once",
        "calls",
        "Calls let through at the same time while half open; the others are rejected.",
    ),
    "failure_rate_threshold": (
        "Failure rate to open",
        "fraction",
        "Share of failed calls in the window that opens the circuit (0.5 is half the calls).",
    ),
    "sliding_window_size": (
        "Window size",
        "calls",
        "Outcomes a count window keeps: the rates are taken over the last this many calls.",
    ),
    "minimum_calls": (
        "Minimum calls",
        "calls",
        "Outcomes the window must hold before its rates can open the circuit.",
    ),
    "window_type": (
        "Window type",
        "",
        "count: the last N calls (window size); time: the calls of the last window duration.",
    ),
    "window_duration": (
        "Window duration",
        "seconds",
        "Span of a time window (used when the window type is time).",
    ),
    "slow_call_duration": (
        "Slow call duration",
        "seconds",
        "Calls at least this long count as slow; empty turns slow-call detection off.",
    ),
    "slow_call_rate_threshold": (
        "Slow call rate to open",
        "fraction",
        "Share of slow calls in the window that opens the circuit (1 is every call).",
    ),
    "timeout_multiplier": (
        "Timeout growth",
        "times",
        "The open timeout is multiplied by this after each further trip without a close.",
    ),
    "max_timeout": (
        "Longest open timeout",
        "seconds",
        "Cap of the grown open timeout; at least the open timeout.",
    ),
    "timeout_jitter": (
        "Timeout jitter",
        "fraction",
        "The open timeout varies by plus or minus this share (0.1 is 10 %).",
    ),
}


def _number(value: float, kind: str) -> str:
    if kind == "int":
        return f"{int(value):,}"
    return f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What one wire field is, for people and forms: its label, unit, one-line
    explanation, kind (``"int"``, ``"float"`` or ``"choice"``), default and the allowed
    values (the same rule :func:`config_errors` applies).

    ``low``/``high`` bound a number (``low_open``: ``low`` itself is not allowed);
    ``choices`` are the values of a choice; ``nullable``: None (empty) is allowed.
    """

    name: str
    label: str
    unit: str
    help: str
    kind: str
    default: Any
    low: float | None
    high: float | None
    low_open: bool
    nullable: bool
    choices: tuple[str, ...]

    @property
    def allowed(self) -> str:
        """The allowed values in words: ``"1 to 1,000,000"``, ``"more than 0, up to
        86,400"``, ``"count or time"``, with ``", or empty for none"`` when nullable."""
        if self.kind == "choice":
            text = " or ".join(self.choices)
        else:
            assert self.low is not None and self.high is not None
            low, high = _number(self.low, self.kind), _number(self.high, self.kind)
            text = f"more than {low}, up to {high}" if self.low_open else f"{low} to {high}"
        return f"{text}, or empty for none" if self.nullable else text

    @property
    def step(self) -> str:
        """The ``step`` of a number input: ``"1"`` for integers, ``"any"`` otherwise."""
        return "1" if self.kind == "int" else "any"

    def format(self, value: Any) -> str:
        """``value`` as an operator reads it: with its unit (``"30 seconds"``), a
        fraction also as a percentage (``"0.5 (50 %)"``), None as ``"none"``."""
        if value is None:
            return "none"
        if self.kind == "choice" or isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        number = float(value)
        text = f"{int(number):,}" if number.is_integer() else repr(number)
        if self.unit == "fraction":
            return f"{text} ({number * 100:.4g} %)"
        if not self.unit:
            return text
        return f"{text} {_singular(self.unit) if number == 1 else self.unit}"


def _singular(unit: str) -> str:
    """One of a plural unit: "1 second", "1 success", "1 failure" (units are plurals)."""
    return unit[:-2] if unit.endswith("sses") else unit.removesuffix("s")


def _spec(name: str, rule: _Rule, default: Any) -> FieldSpec:
    label, unit, help_text = _TEXTS[name]
    number = rule.kind != "choice"
    return FieldSpec(
        name=name,
        label=label,
        unit=unit,
        help=help_text,
        kind=rule.kind,
        default=default,
        low=rule.low if number else None,
        high=rule.high if number else None,
        low_open=rule.low_open,
        nullable=rule.nullable,
        choices=rule.choices,
    )


def field_specs() -> tuple[FieldSpec, ...]:
    """Every wire field's :class:`FieldSpec`, in :data:`WIRE_FIELDS` order.

    ``max_timeout``'s default is None: left out, it follows ``timeout``.
    """
    return _SPECS


def wire_schema() -> dict[str, Any]:
    """An OpenAPI 3.0 schema object of the wire mapping: each field's type, bounds and
    description (none required; ``exclusiveMinimum`` and ``nullable`` as OpenAPI 3.0
    spells them).

    The cross-field rule (``max_timeout`` at least ``timeout``) is not expressed.
    """
    properties: dict[str, Any] = {}
    for name, rule in _RULES.items():
        prop: dict[str, Any]
        if rule.kind == "choice":
            prop = {"type": "string", "enum": list(rule.choices)}
        else:
            prop = {"type": "integer" if rule.kind == "int" else "number"}
            prop["minimum"] = int(rule.low) if rule.kind == "int" else rule.low
            if rule.low_open:
                prop["exclusiveMinimum"] = True
            prop["maximum"] = int(rule.high) if rule.kind == "int" else rule.high
        if rule.nullable:
            prop["nullable"] = True
        label, unit, help_text = _TEXTS[name]
        prop["description"] = f"{label}" + (f" ({unit})" if unit else "") + f". {help_text}"
        properties[name] = prop
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _cross_field_errors(values: Mapping[str, Any]) -> dict[str, str]:
    """Errors that involve more than one field (only checked when each is valid alone)."""
    timeout, cap = values["timeout"], values["max_timeout"]
    if cap < timeout:
        return {"max_timeout": f"must be at least timeout ({timeout:g}), got {cap!r}"}
    return {}


def _field_errors(values: Mapping[str, Any]) -> dict[str, str]:
    errors = {
        name: reason
        for name in WIRE_FIELDS
        if (reason := _RULES[name].reason(values[name])) is not None
    }
    if "timeout" not in errors and "max_timeout" not in errors:
        errors.update(_cross_field_errors(values))
    return errors


def _exception_types_error(name: str, value: Any, *, allow_empty: bool) -> str | None:
    if not isinstance(value, tuple):
        return f"{name} must be a tuple of exception types, got {value!r}"
    if not value and not allow_empty:
        return f"{name} must name at least one exception type"
    for item in value:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            return f"{name} must contain exception types only, got {item!r}"
    return None


@dataclass(frozen=True, slots=True)
class CircuitBreakerConfig:
    """Immutable, validated settings of one circuit breaker.

    Counting: the breaker opens after `failure_threshold` consecutive failures, or when
    the sliding window holds at least `minimum_calls` outcomes (at most the window size
    for a count window) and the share of failures reaches `failure_rate_threshold`, or
    the share of calls slower than `slow_call_duration` reaches
    `slow_call_rate_threshold`. Open lasts `timeout` seconds, multiplied by
    `timeout_multiplier` after every further trip without a successful close, capped at
    `max_timeout`, spread by +/- `timeout_jitter` (a fraction). Left out (None),
    `max_timeout` is max(DEFAULT_MAX_TIMEOUT, timeout), so a long `timeout` alone is
    valid; given explicitly (or inherited by `replace`), it must be at least `timeout`.
    Half-open admits `half_open_max_calls` concurrent probes; `success_threshold`
    successes close it.

    An exception is a failure when it is an instance of `failure_exceptions`, not of
    `ignore_exceptions`, and `failure_predicate` (if set) returns True for it. Ignored
    exceptions count as neither success nor failure; other exceptions count as success.

    Raises ValueError naming the field and its allowed range for any bad value.
    """

    failure_threshold: int = 5
    success_threshold: int = 3
    timeout: float = 30.0
    half_open_max_calls: int = 3
    failure_rate_threshold: float = 0.5
    sliding_window_size: int = 10
    minimum_calls: int = 10
    window_type: str = "count"
    window_duration: float = 60.0
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float = 1.0
    timeout_multiplier: float = 1.0
    max_timeout: float | None = None  # always a number once constructed
    timeout_jitter: float = 0.0
    failure_exceptions: tuple[type[BaseException], ...] = (Exception,)
    ignore_exceptions: tuple[type[BaseException], ...] = ()
    failure_predicate: Callable[[BaseException], bool] | None = field(default=None)
    # True when max_timeout was left out: copies made by replace() keep following timeout.
    _max_timeout_follows: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = {name: getattr(self, name) for name in WIRE_FIELDS}
        if values["max_timeout"] is None:
            values["max_timeout"] = _default_max_timeout(values["timeout"])
            object.__setattr__(self, "_max_timeout_follows", True)
            object.__setattr__(self, "max_timeout", values["max_timeout"])
        errors = _field_errors(values)
        if errors:
            raise ValueError("; ".join(f"{name} {reason}" for name, reason in errors.items()))
        # Store floats as floats so equality, hashing and to_dict() do not depend on
        # whether a caller wrote 30 or 30.0.
        for name in _FLOAT_FIELDS:
            value = values[name]
            if value is not None and not isinstance(value, float):
                object.__setattr__(self, name, float(value))
        for name, allow_empty in (("failure_exceptions", False), ("ignore_exceptions", True)):
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            elif isinstance(value, type):
                value = (value,)
                object.__setattr__(self, name, value)
            message = _exception_types_error(name, value, allow_empty=allow_empty)
            if message:
                raise ValueError(message)
        if self.failure_predicate is not None and not callable(self.failure_predicate):
            raise ValueError(
                f"failure_predicate must be a callable or None, got {self.failure_predicate!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The wire fields as a JSON-ready dict (code-only fields are left out)."""
        return {name: getattr(self, name) for name in WIRE_FIELDS}

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base: CircuitBreakerConfig | None = None
    ) -> CircuitBreakerConfig:
        """Build a config from wire fields; missing keys come from `base` (or defaults).

        Code-only fields (exception classification) are kept from `base`. An unknown
        key or a bad value raises ValueError naming the field.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"config must be a mapping of wire fields, got {data!r}")
        unknown = [key for key in data if key not in _RULES]
        if unknown:
            raise ValueError(f"{unknown[0]} is not a known field (known: {', '.join(WIRE_FIELDS)})")
        if base is None:
            return cls(**data)
        return base.replace(**data)

    def replace(self, **changes: Any) -> CircuitBreakerConfig:
        """Return a copy with `changes` applied (validated like the constructor).

        A max_timeout that was left out keeps following timeout in the copy.
        """
        if self._max_timeout_follows and "max_timeout" not in changes:
            changes["max_timeout"] = None
        return dataclasses.replace(self, **changes)


def _default_max_timeout(timeout: Any) -> Any:
    """max_timeout when none is given (a bad timeout is left for its own error)."""
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        return max(DEFAULT_MAX_TIMEOUT, float(timeout))
    return DEFAULT_MAX_TIMEOUT


_DEFAULTS = CircuitBreakerConfig().to_dict()
_SPECS: tuple[FieldSpec, ...] = tuple(
    _spec(name, _RULES[name], None if name == "max_timeout" else _DEFAULTS[name])
    for name in WIRE_FIELDS
)


def config_errors(
    data: Mapping[str, Any], *, base: CircuitBreakerConfig | None = None
) -> dict[str, str]:
    """Every problem of a wire mapping as {field: reason}; empty when it is valid.

    Missing fields take their value from `base` (or the defaults), so partial updates
    can be checked. Lets a server report all bad fields of a request at once.
    """
    if not isinstance(data, Mapping):
        return {"config": f"must be an object of wire fields, got {type(data).__name__}"}
    errors = {str(key): "is not a known field" for key in data if key not in _RULES}
    values = dict(base.to_dict() if base is not None else _DEFAULTS)
    values.update((k, v) for k, v in data.items() if k in _RULES)
    if "max_timeout" not in data and (base is None or base._max_timeout_follows):
        values["max_timeout"] = _default_max_timeout(values["timeout"])
    errors.update(_field_errors(values))
    return errors
