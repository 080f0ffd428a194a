"""A sync body to a :class:`~.wire.Sync`, or a :class:`SyncError` naming what is wrong.

One pass: the nesting is measured on the raw bytes (``SWITCHYARD_JSON_MAX_DEPTH``),
msgspec decodes and checks types and ranges, then the rules msgspec cannot express are
checked here, every problem collected so that a client sees them all (up to
``MAX_ERRORS_REPORTED``). A list over its limit is a 413, anything else a 400.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from django.conf import settings
from django.utils import timezone

from breakers.config import config_errors
from breakers.latency import BUCKET_COUNT
from breakers.wire import format_timestamp
from controlplane.circuits.choices import NAME_MAX_LENGTH, NAME_RE, CircuitState, TransitionReason
from controlplane.circuits.sync.wire import (
    FIELDS,
    PROTOCOL_VERSION,
    REPORT_SECONDS,
    Breaker,
    ShadowGrowth,
    Sync,
    decoder,
)
from controlplane.core.errors import ApiError
from controlplane.core.jsonlimits import depth_error

MAX_ERRORS_REPORTED = 50
# Control characters (NUL among them: PostgreSQL refuses it in text) and lone surrogates
# (not encodable as UTF-8) are refused in every free-text field of a sync.
UNPRINTABLE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
STATES = frozenset(CircuitState.values)
REASONS = frozenset(TransitionReason.values)
_STATE_LIST = ", ".join(CircuitState.values)
_REASON_LIST = ", ".join(TransitionReason.values)
# "... - at `$.breakers[0].calls`" in msgspec's messages.
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")


class SyncError(ApiError):
    """A sync that cannot be accepted (400, or 413 for a list over its limit)."""


class _Errors:
    """Collects {field: reason}; raises once at the end."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        if len(self.items) < MAX_ERRORS_REPORTED:
            self.items.setdefault(path, reason[:300])

    def raise_if_any(self) -> None:
        if self.items:
            raise SyncError(400, self.items)


# Names repeat from sync to sync: checked once each (bounded; cleared when full).
NAMES_MAX = 8192
_good_names: set[str] = set()
# Configs repeat too: by their JSON text, the object and the verdict of config_errors
# on it. Bounded.
CONFIGS_MAX = 4096
_configs: dict[bytes, tuple[Any, dict[str, str]]] = {}


def _name_ok(value: str) -> bool:
    if value in _good_names:
        return True
    if len(value) > NAME_MAX_LENGTH or not NAME_RE.match(value):
        return False
    if len(_good_names) >= NAMES_MAX:
        _good_names.clear()
    _good_names.add(value)
    return True


def _check_name(errors: _Errors, path: str, value: str) -> None:
    if _name_ok(value):
        return
    if len(value) > NAME_MAX_LENGTH:
        errors.add(path, f"must be at most {NAME_MAX_LENGTH} characters, got {len(value)}")
    else:
        errors.add(path, f"must match {NAME_RE.pattern}")


def _check_text(errors: _Errors, path: str, value: str | None) -> None:
    if value is not None and UNPRINTABLE_RE.search(value):
        errors.add(path, f"must not contain control characters, got {value!r}")


def _config(raw: msgspec.Raw) -> tuple[Any, dict[str, str]]:
    """A breaker's config (JSON text) decoded, with its problems {field: reason}."""
    text = bytes(raw)
    known = _configs.get(text)
    if known is None:
        value = msgspec.json.decode(text) if text else None
        if value is None:
            verdict: dict[str, str] = {}
        elif not isinstance(value, dict):
            verdict = {"": f"must be an object or null, got {type(value).__name__}"}
        else:
            verdict = config_errors(value)
        if len(_configs) >= CONFIGS_MAX:
            _configs.clear()
        _configs[text] = known = (value, verdict)
    return known


def config_of(breaker: Breaker) -> dict[str, Any] | None:
    """The config object a breaker reported (None when left out or null)."""
    value = _config(breaker.config)[0]
    return value if isinstance(value, dict) else None


def timestamp_bounds(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The moments a sync's timestamps may name: from January 1st of
    SWITCHYARD_SYNC_EARLIEST_YEAR (UTC) to now plus SWITCHYARD_SYNC_MAX_CLOCK_SKEW."""
    now = now or timezone.now()
    earliest = datetime(settings.SWITCHYARD_SYNC_EARLIEST_YEAR, 1, 1, tzinfo=UTC)
    return earliest, now + timedelta(seconds=settings.SWITCHYARD_SYNC_MAX_CLOCK_SKEW)


def _check_moment(
    errors: _Errors, path: str, value: datetime | None, bounds: tuple[datetime, datetime]
) -> None:
    if value is None or bounds[0] <= value <= bounds[1]:
        return
    errors.add(
        path,
        f"must be between {format_timestamp(bounds[0])} and now plus "
        f"{settings.SWITCHYARD_SYNC_MAX_CLOCK_SKEW} s ({format_timestamp(bounds[1])}), "
        f"got {value.isoformat()!r}",
    )


def _decode(body: bytes) -> Sync:
    """The body as a Sync. A body the strict structs take is shallow by their shape; any
    other is measured for nesting first, then read again without the fields this server
    does not know."""
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        pass
    nested = depth_error(body)
    if nested is not None:
        raise SyncError(400, {"body": nested})
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise SyncError(400, {"body": f"malformed JSON: {exc}"[:300]}) from None
    _check_limits(data)  # too many items is a 413 before a 400
    try:
        return decoder.decode(msgspec.json.encode(_known_fields(data)))
    except msgspec.ValidationError as exc:
        raise SyncError(400, dict([_field_reason(str(exc))])) from None


def _known_fields(data: Any) -> Any:
    """The decoded body without the fields no struct of the sync knows."""
    if not isinstance(data, dict):
        return data
    known = _without(data, "Sync")
    instance = known.get("instance")
    if isinstance(instance, dict):
        known["instance"] = _without(instance, "Instance")
    for name, kind in (("breakers", "Breaker"), ("transitions", "Transition")):
        items = known.get(name)
        if isinstance(items, list):
            known[name] = [_without(i, kind) if isinstance(i, dict) else i for i in items]
    reports = known.get("telemetry")
    if isinstance(reports, list):
        known["telemetry"] = [_report_fields(r) if isinstance(r, dict) else r for r in reports]
    return known


def _report_fields(report: dict[str, Any]) -> dict[str, Any]:
    known = _without(report, "Report")
    growths = known.get("breakers")
    if isinstance(growths, list):
        known["breakers"] = [_growth_fields(g) if isinstance(g, dict) else g for g in growths]
    return known


def _growth_fields(growth: dict[str, Any]) -> dict[str, Any]:
    known = _without(growth, "Growth")
    shadow = known.get("shadow")
    if isinstance(shadow, dict):
        shadow = known["shadow"] = _without(shadow, "ShadowGrowth")
        moves = shadow.get("transitions")
        if isinstance(moves, list):
            shadow["transitions"] = [
                _without(t, "ShadowTransition") if isinstance(t, dict) else t for t in moves
            ]
    return known


def _without(data: dict[str, Any], kind: str) -> dict[str, Any]:
    fields = FIELDS[kind]
    return {key: value for key, value in data.items() if key in fields}


def _field_reason(message: str) -> tuple[str, str]:
    """msgspec's "Expected `int`, got `str` - at `$.breakers[0].calls`" in the words of
    the rest of the API: ("breakers[0].calls", "must be an integer, got str")."""
    match = _AT.match(message)
    assert match is not None  # the pattern matches any text
    reason, path = match.group("reason"), (match.group("path") or "").lstrip(".")
    path = path.replace(".from_state", ".from").replace(".to_state", ".to")
    missing = _MISSING.match(reason)
    if missing is not None:
        field_name = missing.group("field")
        return (f"{path}.{field_name}" if path else field_name), "is required"
    return path or "body", _reason(reason, top=not path)


_EXPECTED = re.compile(r"^Expected `(?P<kind>[^`|]+)(?: \| null)?`(?P<rest>.*)$", re.S)
_KINDS = {
    "object": "an object",
    "int": "an integer",
    "str": "a string",
    "array": "a list",
    "float": "a number",
    "bool": "a boolean",
    "datetime": "an ISO-8601 date-time with a time zone",
}


def _reason(text: str, *, top: bool) -> str:
    if "RFC3339" in text or "timezone component" in text:
        return "must be an ISO-8601 date-time with a time zone (RFC 3339)"
    match = _EXPECTED.match(text)
    if match is None:
        return text[:1].lower() + text[1:]
    kind = match.group("kind")
    word = "a JSON object" if top and kind == "object" else _KINDS.get(kind, f"`{kind}`")
    rest = match.group("rest").replace("`", "")
    return f"must be {word}{rest}"


def _check_limits(data: Any) -> None:
    """SyncError(413) for a list over its limit (``data``: the decoded body)."""
    if not isinstance(data, dict):
        return
    limits = (
        ("breakers", settings.SWITCHYARD_SYNC_MAX_BREAKERS),
        ("transitions", settings.SWITCHYARD_SYNC_MAX_TRANSITIONS),
        ("telemetry", settings.SWITCHYARD_SYNC_MAX_REPORTS),
    )
    for field_name, limit in limits:
        items = data.get(field_name)
        if isinstance(items, list) and len(items) > limit:
            raise SyncError(413, {field_name: f"at most {limit} items per sync, got {len(items)}"})
    reports = data.get("telemetry")
    if isinstance(reports, list):
        limit = settings.SWITCHYARD_SYNC_MAX_BREAKERS
        for index, report in enumerate(reports):
            growths = (
                report.get("breakers")
                if isinstance(report, dict)
                else getattr(report, "breakers", None)
            )
            if isinstance(growths, list) and len(growths) > limit:
                raise SyncError(
                    413,
                    {
                        f"telemetry[{index}].breakers": (
                            f"at most {limit} items per report, got {len(growths)}"
                        )
                    },
                )


def parse(body: bytes, *, now: datetime | None = None) -> Sync:
    """The sync in ``body``; SyncError(413) for a list over its limit, SyncError(400)
    naming the bad fields otherwise (a value of the wrong type or range: the first one;
    names, states, reasons, timestamps' range and configs: every one)."""
    sync = _decode(body)
    _check_limits(
        {"breakers": sync.breakers, "transitions": sync.transitions, "telemetry": sync.telemetry}
    )
    errors = _Errors()
    if sync.protocol != PROTOCOL_VERSION:
        errors.add("protocol", f"must be {PROTOCOL_VERSION}, got {sync.protocol!r}")
    if sync.service is not None:
        _check_name(errors, "service", sync.service)
    bounds = timestamp_bounds(now)
    instance = sync.instance
    _check_name(errors, "instance.id", instance.id)
    _check_text(errors, "instance.hostname", instance.hostname)
    _check_text(errors, "instance.library_version", instance.library_version)
    _check_moment(errors, "instance.started_at", instance.started_at, bounds)
    seen: set[str] = set()
    for index, breaker in enumerate(sync.breakers):
        name = breaker.name
        if not _name_ok(name):
            _check_name(errors, f"breakers[{index}].name", name)
        elif name in seen:
            errors.add(f"breakers[{index}].name", f"duplicate breaker {name!r}")
        seen.add(name)
        if breaker.state not in STATES:
            errors.add(
                f"breakers[{index}].state", f"must be one of {_STATE_LIST}, got {breaker.state!r}"
            )
        if breaker.config:
            for key, reason in _config(breaker.config)[1].items():
                errors.add(f"breakers[{index}].config{'.' if key else ''}{key}", reason)
        since = breaker.state_since
        if since is not None and not bounds[0] <= since <= bounds[1]:
            _check_moment(errors, f"breakers[{index}].state_since", since, bounds)
    for index, transition in enumerate(sync.transitions):
        path = f"transitions[{index}]"
        if not _name_ok(transition.breaker):
            _check_name(errors, f"{path}.breaker", transition.breaker)
        for key, value in (("from", transition.from_state), ("to", transition.to_state)):
            if value not in STATES:
                errors.add(f"{path}.{key}", f"must be one of {_STATE_LIST}, got {value!r}")
        if transition.reason not in REASONS:
            errors.add(
                f"{path}.reason", f"must be one of {_REASON_LIST}, got {transition.reason!r}"
            )
        _check_moment(errors, f"{path}.at", transition.at, bounds)
    _check_reports(errors, sync, bounds)
    errors.raise_if_any()
    return sync


def _check_reports(errors: _Errors, sync: Sync, bounds: tuple[datetime, datetime]) -> None:
    """Telemetry reports: buckets on the 10-second grid within the timestamps' bounds,
    one report per seq, each breaker once per report, latency indexes of the library's
    buckets."""
    seqs: set[int] = set()
    earliest, latest = bounds[0].timestamp(), bounds[1].timestamp()
    for index, report in enumerate(sync.telemetry):
        path = f"telemetry[{index}]"
        if report.seq in seqs:
            errors.add(f"{path}.seq", f"duplicate report {report.seq}")
        seqs.add(report.seq)
        if report.bucket % REPORT_SECONDS:
            errors.add(
                f"{path}.bucket", f"must be a multiple of {REPORT_SECONDS}, got {report.bucket}"
            )
        elif not earliest <= report.bucket <= latest:
            errors.add(
                f"{path}.bucket",
                f"must be between {int(earliest)} and now plus "
                f"{settings.SWITCHYARD_SYNC_MAX_CLOCK_SKEW} s ({int(latest)}), "
                f"got {report.bucket}",
            )
        names: set[str] = set()
        for position, growth in enumerate(report.breakers):
            where = f"{path}.breakers[{position}]"
            if not _name_ok(growth.name):
                _check_name(errors, f"{where}.name", growth.name)
            elif growth.name in names:
                errors.add(f"{where}.name", f"duplicate breaker {growth.name!r}")
            names.add(growth.name)
            for pair, (bucket, _count) in enumerate(growth.latency):
                if bucket >= BUCKET_COUNT:
                    errors.add(
                        f"{where}.latency[{pair}]",
                        f"bucket index must be below {BUCKET_COUNT}, got {bucket}",
                    )
            if growth.shadow is not None:
                _check_shadow(errors, f"{where}.shadow", growth.shadow, bounds)


def _check_shadow(
    errors: _Errors, path: str, shadow: ShadowGrowth, bounds: tuple[datetime, datetime]
) -> None:
    """A shadow candidate's would-be transitions: states, reasons and times as for a
    breaker's own."""
    for index, transition in enumerate(shadow.transitions):
        where = f"{path}.transitions[{index}]"
        for key, value in (("from", transition.from_state), ("to", transition.to_state)):
            if value not in STATES:
                errors.add(f"{where}.{key}", f"must be one of {_STATE_LIST}, got {value!r}")
        if transition.reason not in REASONS:
            errors.add(
                f"{where}.reason", f"must be one of {_REASON_LIST}, got {transition.reason!r}"
            )
        _check_moment(errors, f"{where}.at", transition.at, bounds)
