"""The agent sync: validate a batch, store it in one transaction, answer the desired state.

``parse_sync`` turns a decoded JSON body into a ``SyncBatch`` or raises ``SyncError``
naming every bad field. ``ingest_sync`` stores the batch with set-based writes: the
number of queries is the same for 1 or 500 breakers. Snapshots (hot data) are written
by ``upsert_snapshots`` alone so that they can move to a faster store later.
"""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from breakers import wire
from breakers.config import CircuitBreakerConfig, config_errors
from controlplane.circuits import events
from controlplane.circuits.choices import (
    MAX_COUNTER,
    MAX_PID,
    NAME_MAX_LENGTH,
    NAME_RE,
    CircuitState,
    ConfigSource,
    TransitionReason,
)
from controlplane.circuits.desired import (
    desired_state_from,
    isoformat,
    open_overrides,
    service_circuits,
)
from controlplane.circuits.models import (
    Circuit,
    ConfigVersion,
    Instance,
    Service,
    Snapshot,
    Transition,
)
from controlplane.circuits.operations import expire_overrides
from controlplane.core.errors import error_body

PROTOCOL_VERSION = wire.PROTOCOL_VERSION
MAX_ERRORS_REPORTED = 50
# Transitions an agent may report dropped in one sync (the instance's total saturates).
MAX_DROPPED_PER_SYNC = 2**31 - 1
# Control characters (NUL among them: PostgreSQL refuses it in text) and lone surrogates
# (not encodable as UTF-8) are refused in every free-text field of a sync.
UNPRINTABLE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_STATES = tuple(CircuitState.values)
_STATE_SET = frozenset(_STATES)
_REASONS = tuple(TransitionReason.values)


class SyncError(Exception):
    """A sync request that cannot be accepted; ``errors`` maps fields to reasons."""

    def __init__(self, status: int, errors: dict[str, str]) -> None:
        self.status = status
        self.errors = errors
        field_name, reason = next(iter(errors.items()))
        super().__init__(f"{field_name}: {reason}")

    def as_json(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return error_body(self.errors)


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """The reporting process."""

    id: str
    hostname: str = ""
    pid: int | None = None
    started_at: datetime | None = None
    library_version: str = ""


@dataclass(slots=True)
class BreakerReport:
    """One breaker's current state and cumulative counters in the reporting process."""

    name: str
    state: str
    config_version: int = 0
    config: dict[str, Any] | None = None
    calls: int = 0
    successes: int = 0
    failures: int = 0
    slow_calls: int = 0
    rejected: int = 0
    trip_count: int = 0
    failure_count: int = 0
    success_count: int = 0
    failure_rate: float | None = None
    state_since: datetime | None = None
    last_failure: datetime | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class TransitionReport:
    """One state change with its agent-assigned id."""

    id: int
    breaker: str
    from_state: str
    to_state: str
    at: datetime
    reason: str
    failure_rate: float | None = None
    calls: int | None = None
    failures: int | None = None
    config_version: int | None = None


@dataclass(slots=True)
class SyncBatch:
    """A validated sync request."""

    instance: InstanceInfo
    service: str | None = None
    breakers: list[BreakerReport] = field(default_factory=list)
    transitions: list[TransitionReport] = field(default_factory=list)
    dropped_transitions: int = 0


# ---------------------------------------------------------------- validation


class _Errors:
    """Collects {field: reason}; raises once at the end so a client sees every problem."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        if len(self.items) < MAX_ERRORS_REPORTED:
            self.items.setdefault(path, reason)

    def raise_if_any(self, status: int = 400) -> None:
        if self.items:
            raise SyncError(status, self.items)


def _name(errors: _Errors, path: str, value: Any) -> str | None:
    if not isinstance(value, str):
        errors.add(path, f"must be a string, got {type(value).__name__}")
        return None
    if len(value) > NAME_MAX_LENGTH:
        errors.add(path, f"must be at most {NAME_MAX_LENGTH} characters, got {len(value)}")
        return None
    if not NAME_RE.match(value):
        errors.add(path, "must match ^[A-Za-z0-9_][A-Za-z0-9_.:/@+-]{0,199}$")
        return None
    return value


def _text(errors: _Errors, path: str, value: Any, max_length: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.add(path, f"must be a string, got {type(value).__name__}")
        return ""
    if len(value) > max_length:
        errors.add(path, f"must be at most {max_length} characters, got {len(value)}")
        return ""
    if UNPRINTABLE_RE.search(value):
        errors.add(path, f"must not contain control characters, got {value!r}"[:300])
        return ""
    return value


def _int(
    errors: _Errors, path: str, value: Any, *, low: int, high: int, nullable: bool = False
) -> int | None:
    if value is None and nullable:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        errors.add(path, f"must be an integer between {low} and {high}, got {value!r}"[:300])
        return None
    return value


def _float(
    errors: _Errors, path: str, value: Any, *, low: float, high: float, nullable: bool = True
) -> float | None:
    if value is None and nullable:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low <= value <= high:
        errors.add(path, f"must be a number between {low:g} and {high:g}, got {value!r}"[:300])
        return None
    return float(value)


# Timestamps repeat from sync to sync (state_since, started_at): parsed once each.
TIMESTAMPS_MAX = 8192
_timestamps: dict[str, datetime] = {}


def _datetime(errors: _Errors, path: str, value: Any, *, nullable: bool = True) -> datetime | None:
    if value is None and nullable:
        return None
    if type(value) is str and (known := _timestamps.get(value)) is not None:
        return known
    try:
        parsed = wire.parse_timestamp(value)
        if len(_timestamps) >= TIMESTAMPS_MAX:
            _timestamps.clear()
        _timestamps[value] = parsed
        return parsed
    except ValueError:
        errors.add(path, f"must be an ISO-8601 date-time with a time zone, got {value!r}"[:300])
    return None


Bounds = tuple[datetime, datetime]


def timestamp_bounds(now: datetime | None = None) -> Bounds:
    """The moments a sync's timestamps may name: from January 1st of
    SWITCHYARD_SYNC_EARLIEST_YEAR (UTC) to now plus SWITCHYARD_SYNC_MAX_CLOCK_SKEW."""
    now = now or timezone.now()
    earliest = datetime(settings.SWITCHYARD_SYNC_EARLIEST_YEAR, 1, 1, tzinfo=UTC)
    return earliest, now + timedelta(seconds=settings.SWITCHYARD_SYNC_MAX_CLOCK_SKEW)


def _moment(
    errors: _Errors, path: str, value: Any, bounds: Bounds, *, nullable: bool = True
) -> datetime | None:
    """A timestamp within ``bounds``: one outside is refused (a row with it could not
    be read back, or would hold a backlog up, for ever)."""
    if value is None and nullable:
        return None
    parsed = _timestamps.get(value) if type(value) is str else None
    if parsed is None:
        parsed = _datetime(errors, path, value, nullable=nullable)
        if parsed is None:
            return None
    earliest, latest = bounds
    if not earliest <= parsed <= latest:
        errors.add(
            path,
            f"must be between {wire.format_timestamp(earliest)} and now plus "
            f"{settings.SWITCHYARD_SYNC_MAX_CLOCK_SKEW} s "
            f"({wire.format_timestamp(latest)}), got {value!r}"[:300],
        )
        return None
    return parsed


def _choice(errors: _Errors, path: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if isinstance(value, str) and value in choices:
        return value
    errors.add(path, f"must be one of {', '.join(choices)}, got {value!r}"[:300])
    return None


def _object(errors: _Errors, path: str, value: Any) -> Mapping[str, Any] | None:
    if not isinstance(value, dict):
        errors.add(path, f"must be an object, got {type(value).__name__}")
        return None
    return value


def _list(errors: _Errors, path: str, value: Any, limit: int) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(path, f"must be a list, got {type(value).__name__}")
        return []
    if len(value) > limit:
        # Too large is a limit, not a typo: 413 at once, before looking at items.
        raise SyncError(413, {path: f"at most {limit} items per sync, got {len(value)}"})
    return value


def _parse_instance(errors: _Errors, raw: Any, bounds: Bounds) -> InstanceInfo | None:
    data = _object(errors, "instance", raw)
    if data is None:
        return None
    instance_id = _name(errors, "instance.id", data.get("id"))
    pid = _int(errors, "instance.pid", data.get("pid"), low=0, high=MAX_PID, nullable=True)
    info = InstanceInfo(
        id=instance_id or "",
        hostname=_text(errors, "instance.hostname", data.get("hostname"), 255),
        pid=pid,
        started_at=_moment(errors, "instance.started_at", data.get("started_at"), bounds),
        library_version=_text(errors, "instance.library_version", data.get("library_version"), 50),
    )
    return info if instance_id else None


_COUNTERS = wire.BREAKER_COUNTERS

# Agents send the same config object with every sync: it is validated when its content
# is new to this process, then the verdict is reused (bounded; cleared when full).
CONFIG_VERDICTS_MAX = 4096
_config_verdicts: dict[tuple[tuple[Any, ...], tuple[type, ...]], dict[str, str]] = {}


def _config_errors(config: dict[str, Any]) -> dict[str, str]:
    """``config_errors(config)``, remembered by content (types included, so that 1,
    1.0 and True are told apart); configs with unhashable values are not remembered."""
    try:
        key = (tuple(config.items()), tuple(map(type, config.values())))
        verdict = _config_verdicts.get(key)
    except TypeError:
        return config_errors(config)
    if verdict is None:
        verdict = config_errors(config)
        if len(_config_verdicts) >= CONFIG_VERDICTS_MAX:
            _config_verdicts.clear()
        _config_verdicts[key] = verdict
    return verdict


def _parse_breaker(errors: _Errors, index: int, raw: Any, bounds: Bounds) -> BreakerReport | None:
    path = f"breakers[{index}]"
    data = _object(errors, path, raw)
    if data is None:
        return None
    # Each check below runs its reporting helper (and builds the field's path) only
    # when the value is not plainly valid: the helper decides, and words the error.
    name = data.get("name")
    if type(name) is not str or len(name) > NAME_MAX_LENGTH or not NAME_RE.match(name):
        name = _name(errors, f"{path}.name", name)
    state = data.get("state")
    if type(state) is not str or state not in _STATE_SET:
        state = _choice(errors, f"{path}.state", state, _STATES)
    version = data.get("config_version", 0)
    if type(version) is not int or not 0 <= version <= MAX_PID:
        version = _int(errors, f"{path}.config_version", version, low=0, high=MAX_PID)
    config = data.get("config")
    if config is not None:
        if not isinstance(config, dict):
            errors.add(f"{path}.config", f"must be an object, got {type(config).__name__}")
            config = None
        else:
            for key, reason in _config_errors(config).items():
                errors.add(f"{path}.config.{key}", reason)
    report = BreakerReport(name=name or "", state=state or "", config_version=version or 0)
    report.config = config
    for counter in _COUNTERS:
        value = data.get(counter, 0)
        if type(value) is not int or not 0 <= value <= MAX_COUNTER:  # the path only then
            value = _int(errors, f"{path}.{counter}", value, low=0, high=MAX_COUNTER)
        setattr(report, counter, value or 0)
    rate = data.get("failure_rate")
    if rate is not None and (type(rate) is not float or not 0.0 <= rate <= 1.0):
        rate = _float(errors, f"{path}.failure_rate", rate, low=0.0, high=1.0)
    report.failure_rate = rate
    retry_after = data.get("retry_after")
    if retry_after is not None and (type(retry_after) is not float or not 0 <= retry_after <= 1e9):
        retry_after = _float(errors, f"{path}.retry_after", retry_after, low=0.0, high=1e9)
    report.retry_after = retry_after
    since = data.get("state_since")
    if since is not None:
        known = _timestamps.get(since) if type(since) is str else None
        if known is None or not bounds[0] <= known <= bounds[1]:
            known = _moment(errors, f"{path}.state_since", since, bounds)
        since = known
    report.state_since = since
    failure = data.get("last_failure")
    if failure is not None:
        known = _timestamps.get(failure) if type(failure) is str else None
        if known is None or not bounds[0] <= known <= bounds[1]:
            known = _moment(errors, f"{path}.last_failure", failure, bounds)
        failure = known
    report.last_failure = failure
    return report if name and state else None


def _parse_transition(
    errors: _Errors, index: int, raw: Any, bounds: Bounds
) -> TransitionReport | None:
    path = f"transitions[{index}]"
    data = _object(errors, path, raw)
    if data is None:
        return None
    tid = _int(errors, f"{path}.id", data.get("id"), low=1, high=MAX_COUNTER)
    breaker = _name(errors, f"{path}.breaker", data.get("breaker"))
    from_state = _choice(errors, f"{path}.from", data.get("from"), _STATES)
    to_state = _choice(errors, f"{path}.to", data.get("to"), _STATES)
    at = _moment(errors, f"{path}.at", data.get("at"), bounds, nullable=False)
    reason = _choice(errors, f"{path}.reason", data.get("reason"), _REASONS)
    rate = _float(errors, f"{path}.failure_rate", data.get("failure_rate"), low=0.0, high=1.0)
    calls = _int(errors, f"{path}.calls", data.get("calls"), low=0, high=MAX_PID, nullable=True)
    failures = _int(
        errors, f"{path}.failures", data.get("failures"), low=0, high=MAX_PID, nullable=True
    )
    version = _int(
        errors,
        f"{path}.config_version",
        data.get("config_version"),
        low=0,
        high=MAX_PID,
        nullable=True,
    )
    if tid is None or not breaker or not from_state or not to_state or at is None or not reason:
        return None
    return TransitionReport(
        id=tid,
        breaker=breaker,
        from_state=from_state,
        to_state=to_state,
        at=at,
        reason=reason,
        failure_rate=rate,
        calls=calls,
        failures=failures,
        config_version=version,
    )


def parse_sync(payload: Any) -> SyncBatch:
    """Validate a decoded sync body against the protocol and the configured limits.

    Raises SyncError(413) when a list is over its limit, SyncError(400) naming every
    bad field otherwise.
    """
    if not isinstance(payload, dict):
        raise SyncError(400, {"body": f"must be a JSON object, got {type(payload).__name__}"})
    errors = _Errors()
    protocol = payload.get("protocol", PROTOCOL_VERSION)
    if protocol != PROTOCOL_VERSION or isinstance(protocol, bool):
        errors.add("protocol", f"must be {PROTOCOL_VERSION}, got {protocol!r}"[:300])
    service = payload.get("service")
    if service is not None:
        service = _name(errors, "service", service)
    raw_breakers = _list(
        errors, "breakers", payload.get("breakers"), settings.SWITCHYARD_SYNC_MAX_BREAKERS
    )
    raw_transitions = _list(
        errors, "transitions", payload.get("transitions"), settings.SWITCHYARD_SYNC_MAX_TRANSITIONS
    )
    if "instance" not in payload:
        errors.add("instance", "is required")
    bounds = timestamp_bounds()
    instance = _parse_instance(errors, payload.get("instance"), bounds)
    breakers: list[BreakerReport] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_breakers):
        report = _parse_breaker(errors, index, raw, bounds)
        if report is None:
            continue
        if report.name in seen:
            errors.add(f"breakers[{index}].name", f"duplicate breaker {report.name!r}")
        seen.add(report.name)
        breakers.append(report)
    transitions = [
        t
        for index, raw in enumerate(raw_transitions)
        if (t := _parse_transition(errors, index, raw, bounds)) is not None
    ]
    dropped = _int(
        errors,
        "dropped_transitions",
        payload.get("dropped_transitions", 0),
        low=0,
        high=MAX_DROPPED_PER_SYNC,
    )
    errors.raise_if_any()
    assert instance is not None  # an invalid instance was reported above
    return SyncBatch(
        instance=instance,
        service=service,
        breakers=breakers,
        transitions=transitions,
        dropped_transitions=dropped or 0,
    )


# ---------------------------------------------------------------- the accepted path
#
# An agent's sync is nearly always valid, and mostly the same as its last one. The event
# loop's server (controlplane.circuits.intake) decodes it straight into the structures
# below with msgspec, whose checks run in C: types, ranges and lengths, each at least as
# strict as parse_sync's. The rest (names, states, reasons, timestamps, config objects,
# duplicates, list limits) is checked here in Python against parse_sync's own rules and
# caches. Whatever is not plainly valid (None) goes to parse_sync, which decides and
# words the errors: the answers are parse_sync's to the letter, accepted or refused
# (tests/circuits/test_sync_fast_parse.py compares the two on every field).

_Counter = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNTER)]
_Small = Annotated[int, msgspec.Meta(ge=0, le=MAX_PID)]
_Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class _WireInstance(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    hostname: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    pid: _Small | None = None
    started_at: str | None = None
    library_version: Annotated[str, msgspec.Meta(max_length=50)] | None = None


class _WireBreaker(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    state: str
    config_version: _Small = 0
    config: msgspec.Raw = msgspec.Raw()  # empty when left out
    calls: _Counter = 0
    successes: _Counter = 0
    failures: _Counter = 0
    slow_calls: _Counter = 0
    rejected: _Counter = 0
    trip_count: _Counter = 0
    failure_count: _Counter = 0
    success_count: _Counter = 0
    failure_rate: _Rate | None = None
    state_since: str | None = None
    last_failure: str | None = None
    retry_after: Annotated[float, msgspec.Meta(ge=0.0, le=1e9)] | None = None


class _WireTransition(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNTER)]
    breaker: str
    from_: str = msgspec.field(name="from")
    to: str
    at: str
    reason: str
    failure_rate: _Rate | None = None
    calls: _Small | None = None
    failures: _Small | None = None
    config_version: _Small | None = None


class _WireSync(msgspec.Struct, forbid_unknown_fields=True):
    instance: _WireInstance
    protocol: int = PROTOCOL_VERSION
    service: str | None = None
    breakers: list[_WireBreaker] | None = None
    transitions: list[_WireTransition] | None = None
    dropped_transitions: Annotated[int, msgspec.Meta(ge=0, le=MAX_DROPPED_PER_SYNC)] = 0


_decoder = msgspec.json.Decoder(_WireSync)
_REASON_SET = frozenset(_REASONS)
# Names already found valid (they repeat from sync to sync); bounded like the caches above.
_good_names: set[str] = set()
# Config objects by their JSON text: (the object, valid). Bounded.
_configs: dict[bytes, tuple[dict[str, Any], bool]] = {}


def _good_name(value: str) -> bool:
    if value in _good_names:
        return True
    if len(value) > NAME_MAX_LENGTH or not NAME_RE.match(value):
        return False
    if len(_good_names) >= TIMESTAMPS_MAX:
        _good_names.clear()
    _good_names.add(value)
    return True


def _stamp(value: str | None, bounds: Bounds) -> datetime | None:
    """A timestamp as parse_sync reads it; raises ValueError where it would refuse
    (not a timestamp, or outside ``bounds``)."""
    if value is None:
        return None
    parsed = _timestamps.get(value)
    if parsed is None:
        parsed = wire.parse_timestamp(value)
        if len(_timestamps) >= TIMESTAMPS_MAX:
            _timestamps.clear()
        _timestamps[value] = parsed
    if not bounds[0] <= parsed <= bounds[1]:
        raise ValueError("outside the accepted range")
    return parsed


def _printable(value: str | None) -> str:
    """Free text as parse_sync reads it; raises ValueError where it would refuse."""
    if value is None:
        return ""
    if UNPRINTABLE_RE.search(value):
        raise ValueError("control characters")
    return value


def _valid_config(raw: msgspec.Raw) -> dict[str, Any] | None:
    """The config object of a breaker if valid (None if left out or null); raises
    ValueError if not. Validated once per distinct JSON text, then remembered."""
    text = bytes(raw)
    if not text or text == b"null":
        return None
    known = _configs.get(text)
    if known is None:
        config = orjson.loads(text)
        valid = isinstance(config, dict) and not _config_errors(config)
        if len(_configs) >= CONFIG_VERDICTS_MAX:
            _configs.clear()
        _configs[text] = known = (config, valid)
    if not known[1]:
        raise ValueError("invalid config")
    return known[0]


def parse_sync_body(body: bytes) -> SyncBatch | None:
    """``parse_sync(json.loads(body))`` for a body that is plainly valid, decoded and
    checked without building the JSON objects; None for anything else (parse_sync then
    judges it). Returns exactly what parse_sync would (the config objects are shared
    between syncs that send the same one: read them, never change them)."""
    try:
        wire_sync = _decoder.decode(body)
        return _batch(wire_sync)
    except (msgspec.DecodeError, ValueError, RecursionError):
        # msgspec.ValidationError is a DecodeError; RecursionError: nested too deep for
        # msgspec, refused (with its depth named) on the way through parse_sync.
        return None


def _batch(data: _WireSync) -> SyncBatch | None:
    if data.protocol != PROTOCOL_VERSION:
        return None
    service = data.service
    if service is not None and not _good_name(service):
        return None
    raw_breakers = data.breakers or []
    raw_transitions = data.transitions or []
    if (
        len(raw_breakers) > settings.SWITCHYARD_SYNC_MAX_BREAKERS
        or len(raw_transitions) > settings.SWITCHYARD_SYNC_MAX_TRANSITIONS
    ):
        return None
    wi = data.instance
    if not _good_name(wi.id):
        return None
    bounds = timestamp_bounds()
    instance = InstanceInfo(
        id=wi.id,
        hostname=_printable(wi.hostname),
        pid=wi.pid,
        started_at=_stamp(wi.started_at, bounds),
        library_version=_printable(wi.library_version),
    )
    breakers: list[BreakerReport] = []
    seen: set[str] = set()
    for b in raw_breakers:
        name = b.name
        if name in seen or not _good_name(name) or b.state not in _STATE_SET:
            return None
        seen.add(name)
        breakers.append(
            BreakerReport(
                name,
                b.state,
                b.config_version,
                _valid_config(b.config),
                b.calls,
                b.successes,
                b.failures,
                b.slow_calls,
                b.rejected,
                b.trip_count,
                b.failure_count,
                b.success_count,
                b.failure_rate,
                _stamp(b.state_since, bounds),
                _stamp(b.last_failure, bounds),
                b.retry_after,
            )
        )
    transitions: list[TransitionReport] = []
    for t in raw_transitions:
        if (
            not _good_name(t.breaker)
            or t.from_ not in _STATE_SET
            or t.to not in _STATE_SET
            or t.reason not in _REASON_SET
        ):
            return None
        at = _stamp(t.at, bounds)
        assert at is not None
        transitions.append(
            TransitionReport(
                t.id,
                t.breaker,
                t.from_,
                t.to,
                at,
                t.reason,
                t.failure_rate,
                t.calls,
                t.failures,
                t.config_version,
            )
        )
    return SyncBatch(
        instance=instance,
        service=service,
        breakers=breakers,
        transitions=transitions,
        dropped_transitions=data.dropped_transitions,
    )


# ---------------------------------------------------------------- storage


def _lock_instance(service_id: int, info: InstanceInfo, now: datetime) -> Instance:
    """The instance row (with its service), created on first sight, locked until the end
    of the transaction.

    The lock serialises syncs of one instance, which keeps acked_through exact. The
    service's desired_version is read here, before the data it versions.
    """
    locked = (
        Instance.objects.select_for_update(of=("self",))
        .select_related("service")
        .filter(service_id=service_id, instance_id=info.id)
    )
    instance = locked.first()
    if instance is None:
        Instance.objects.bulk_create(
            [
                Instance(
                    service_id=service_id,
                    instance_id=info.id,
                    started_at=info.started_at,
                    first_seen=now,
                    last_seen=now,
                )
            ],
            ignore_conflicts=True,
        )
        instance = locked.get()
    return instance


def _check_circuit_limit(batch: SyncBatch, missing: list[str], *, existing: int) -> None:
    """SyncError(400) naming each breaker that would take the service (``existing``
    circuits, counted under its row lock) past SWITCHYARD_MAX_CIRCUITS_PER_SERVICE."""
    limit = settings.SWITCHYARD_MAX_CIRCUITS_PER_SERVICE
    room = max(0, limit - existing)
    if len(missing) <= room:
        return
    refused = set(missing[room:])
    errors = _Errors()
    for index, report in enumerate(batch.breakers):
        if report.name in refused:
            errors.add(
                f"breakers[{index}].name",
                f"the service has {existing} circuits and at most {limit} are allowed "
                f"(SWITCHYARD_MAX_CIRCUITS_PER_SERVICE): {report.name!r} is not registered",
            )
    errors.raise_if_any()


def _resolve_circuits(
    service_id: int, batch: SyncBatch, instance: Instance, circuits: dict[str, Circuit]
) -> dict[str, Circuit]:
    """Circuits by name (``circuits``: every circuit of the service), registering the
    breakers of the batch not known yet.

    A new circuit gets the agent's config as version 1. Registration is serialised per
    service by locking the service row; it happens once per circuit, not per sync.
    """
    reported = {b.name: b for b in batch.breakers}
    missing = [name for name in reported if name not in circuits]
    if missing:
        Service.objects.select_for_update().filter(pk=service_id).values_list("pk").get()
        # Read again under the service row's lock: registrations (any process, either
        # sync path) queue here, so the count below is exact and the limit holds.
        circuits.clear()
        circuits.update((c.name, c) for c in service_circuits(service_id))
        missing = [name for name in missing if name not in circuits]
    if missing:
        _check_circuit_limit(batch, missing, existing=len(circuits))
        created = Circuit.objects.bulk_create(
            [Circuit(service_id=service_id, name=name) for name in missing]
        )
        versions = ConfigVersion.objects.bulk_create(
            [
                ConfigVersion(
                    circuit=circuit,
                    version=1,
                    config=CircuitBreakerConfig.from_dict(
                        reported[circuit.name].config or {}
                    ).to_dict(),
                    source=ConfigSource.AGENT,
                    reason=f"registered by instance {instance.instance_id}",
                )
                for circuit in created
            ]
        )
        for circuit, version in zip(created, versions, strict=True):
            circuit.current_config = version
            circuits[circuit.name] = circuit
        Circuit.objects.bulk_update(created, ["current_config"])
    unknown = sorted({t.breaker for t in batch.transitions} - circuits.keys())
    if unknown:
        index = next(i for i, t in enumerate(batch.transitions) if t.breaker == unknown[0])
        raise SyncError(
            400,
            {
                f"transitions[{index}].breaker": (
                    f"unknown breaker {unknown[0]!r}: report it in breakers first"
                )
            },
        )
    return circuits


def _delta(new: int, old: int | None, restarted: bool) -> int:
    # Cumulative counters start over when the process restarts.
    if old is None or restarted or new < old:
        return new
    return new - old


# The snapshot columns a sync writes (both ingest_sync and the intake's flush).
SNAPSHOT_FIELDS = [
    "state",
    "config_version",
    "calls",
    "successes",
    "failures",
    "slow_calls",
    "rejected",
    "trip_count",
    "calls_delta",
    "failures_delta",
    "slow_calls_delta",
    "rejected_delta",
    "failure_rate",
    "failure_count",
    "success_count",
    "last_failure",
    "state_since",
    "retry_after",
    "updated_at",
]


# Backends on which snapshots are written by one hand-written statement.
SQL_UPSERT_VENDORS = frozenset({"postgresql"})

_SQL_UPSERT = """
WITH incoming AS (
    SELECT * FROM unnest(
        %s::bigint[], %s::text[], %s::integer[], %s::bigint[], %s::bigint[], %s::bigint[],
        %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
        %s::double precision[], %s::timestamptz[], %s::timestamptz[], %s::double precision[]
    ) AS i(circuit_id, state, config_version, calls, successes, failures, slow_calls,
           rejected, trip_count, failure_count, success_count, failure_rate, last_failure,
           state_since, retry_after)
),
old AS (
    SELECT circuit_id, state, config_version, calls, failures, slow_calls, rejected
    FROM {table} WHERE instance_id = %s AND circuit_id = ANY(%s::bigint[])
),
upserted AS (
    INSERT INTO {table} (
        instance_id, circuit_id, state, config_version, calls, successes, failures,
        slow_calls, rejected, trip_count, calls_delta, failures_delta, slow_calls_delta,
        rejected_delta, failure_rate, failure_count, success_count, last_failure,
        state_since, retry_after, updated_at)
    SELECT %s, i.circuit_id, i.state, i.config_version, i.calls, i.successes, i.failures,
        i.slow_calls, i.rejected, i.trip_count,
        CASE WHEN o.calls IS NULL OR %s OR i.calls < o.calls
             THEN i.calls ELSE i.calls - o.calls END,
        CASE WHEN o.failures IS NULL OR %s OR i.failures < o.failures
             THEN i.failures ELSE i.failures - o.failures END,
        CASE WHEN o.slow_calls IS NULL OR %s OR i.slow_calls < o.slow_calls
             THEN i.slow_calls ELSE i.slow_calls - o.slow_calls END,
        CASE WHEN o.rejected IS NULL OR %s OR i.rejected < o.rejected
             THEN i.rejected ELSE i.rejected - o.rejected END,
        i.failure_rate, i.failure_count, i.success_count, i.last_failure, i.state_since,
        i.retry_after, %s
    FROM incoming i LEFT JOIN old o USING (circuit_id)
    ON CONFLICT (instance_id, circuit_id) DO UPDATE SET {updates}
)
SELECT i.circuit_id, o.state
FROM incoming i LEFT JOIN old o USING (circuit_id)
WHERE o.state IS DISTINCT FROM i.state OR o.config_version IS DISTINCT FROM i.config_version
"""


def upsert_snapshots(
    instance: Instance,
    reports: list[BreakerReport],
    circuits: Mapping[str, Circuit],
    *,
    restarted: bool,
    now: datetime,
) -> list[events.SnapshotItem]:
    """Overwrite the instance's latest snapshot of each reported breaker.

    Also records how much each cumulative counter grew since the previous snapshot.
    Returns the breakers whose state or config version changed (or that are new). One
    statement on PostgreSQL, two queries elsewhere; the caller holds the instance lock.
    """
    if not reports:
        return []
    if connection.vendor in SQL_UPSERT_VENDORS:
        return _upsert_snapshots_sql(instance, reports, circuits, restarted=restarted, now=now)
    return _upsert_snapshots_orm(instance, reports, circuits, restarted=restarted, now=now)


def _upsert_snapshots_sql(
    instance: Instance,
    reports: list[BreakerReport],
    circuits: Mapping[str, Circuit],
    *,
    restarted: bool,
    now: datetime,
) -> list[events.SnapshotItem]:
    table = connection.ops.quote_name(Snapshot._meta.db_table)
    updates = ", ".join(
        f"{connection.ops.quote_name(f)} = EXCLUDED.{connection.ops.quote_name(f)}"
        for f in SNAPSHOT_FIELDS
    )
    ids = [circuits[r.name].id for r in reports]
    columns: list[list[Any]] = [
        ids,
        [r.state for r in reports],
        [r.config_version for r in reports],
        *([getattr(r, counter) for r in reports] for counter in _COUNTERS),
        [r.failure_rate for r in reports],
        [r.last_failure for r in reports],
        [r.state_since for r in reports],
        [r.retry_after for r in reports],
    ]
    params: list[Any] = [*columns, instance.pk, ids, instance.pk, *[restarted] * 4, now]
    with connection.cursor() as cursor:
        cursor.execute(_SQL_UPSERT.format(table=table, updates=updates), params)
        rows = cursor.fetchall()
    by_id = {circuits[r.name].id: r for r in reports}
    return [
        {
            "circuit_id": circuit_id,
            "circuit": by_id[circuit_id].name,
            "state": by_id[circuit_id].state,
            "previous_state": previous_state,
            "config_version": by_id[circuit_id].config_version,
        }
        for circuit_id, previous_state in rows
    ]


def _upsert_snapshots_orm(
    instance: Instance,
    reports: list[BreakerReport],
    circuits: Mapping[str, Circuit],
    *,
    restarted: bool,
    now: datetime,
) -> list[events.SnapshotItem]:
    previous = {
        row[0]: row[1:]
        for row in Snapshot.objects.filter(instance=instance).values_list(
            "circuit_id", "state", "config_version", "calls", "failures", "slow_calls", "rejected"
        )
    }
    rows: list[Snapshot] = []
    changed: list[events.SnapshotItem] = []
    for report in reports:
        circuit = circuits[report.name]
        old = previous.get(circuit.id)
        old_state, old_version, old_calls, old_failures, old_slow, old_rejected = (
            old if old is not None else (None, None, None, None, None, None)
        )
        rows.append(
            Snapshot(
                instance=instance,
                circuit=circuit,
                state=report.state,
                config_version=report.config_version,
                calls=report.calls,
                successes=report.successes,
                failures=report.failures,
                slow_calls=report.slow_calls,
                rejected=report.rejected,
                trip_count=report.trip_count,
                calls_delta=_delta(report.calls, old_calls, restarted),
                failures_delta=_delta(report.failures, old_failures, restarted),
                slow_calls_delta=_delta(report.slow_calls, old_slow, restarted),
                rejected_delta=_delta(report.rejected, old_rejected, restarted),
                failure_rate=report.failure_rate,
                failure_count=report.failure_count,
                success_count=report.success_count,
                last_failure=report.last_failure,
                state_since=report.state_since,
                retry_after=report.retry_after,
                updated_at=now,
            )
        )
        if old_state != report.state or old_version != report.config_version:
            changed.append(
                {
                    "circuit_id": circuit.id,
                    "circuit": circuit.name,
                    "state": report.state,
                    "previous_state": old_state,
                    "config_version": report.config_version,
                }
            )
    Snapshot.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["instance", "circuit"],
        update_fields=SNAPSHOT_FIELDS,
    )
    return changed


def _store_transitions(
    instance: Instance,
    reports: list[TransitionReport],
    circuits: Mapping[str, Circuit],
    *,
    now: datetime,
) -> list[TransitionReport]:
    """Insert the transitions, skipping ids already stored (one query).

    Returns the ones that are new: ids above the previous acked_through (the agent
    forgets everything at or below it, so nothing at or below can be new).
    """
    if not reports:
        return []
    Transition.objects.bulk_create(
        [
            Transition(
                instance=instance,
                circuit=circuits[t.breaker],
                generation=instance.generation,
                seq=t.id,
                from_state=t.from_state,
                to_state=t.to_state,
                at=t.at,
                reason=t.reason,
                failure_rate=t.failure_rate,
                calls=t.calls,
                failures=t.failures,
                config_version=t.config_version,
                received_at=now,
            )
            for t in reports
        ],
        ignore_conflicts=True,
    )
    return [t for t in reports if t.id > instance.acked_through]


def ingest_sync(
    service: Service, batch: SyncBatch, *, now: datetime | None = None
) -> dict[str, Any]:
    """Store one sync in one transaction and return the answer for the agent.

    The answer is the service's desired state plus ``acked_through``: the highest
    transition id of this instance now stored (this batch's or an earlier one's).
    Events for the dashboard are published after the commit.
    """
    now = now or timezone.now()
    info = batch.instance
    with transaction.atomic():
        instance = _lock_instance(service.pk, info, now)
        desired_version = instance.service.desired_version
        overrides = list(open_overrides(service.pk))
        if any(o.expires_at is not None and o.expires_at <= now for o in overrides):
            # Rare: an override ran out since the last sync or sweep; end it now so the
            # version moves and watchers wake.
            expire_overrides(now=now, service_id=service.pk)
            desired_version = (
                Service.objects.filter(pk=service.pk).values_list("desired_version", flat=True)
            ).get()
            overrides = list(open_overrides(service.pk))
        restarted = (
            info.started_at is not None
            and instance.started_at is not None
            and info.started_at != instance.started_at
        )
        if restarted:
            # A new process under the same id numbers its transitions from scratch.
            instance.generation += 1
            instance.restarts += 1
            instance.acked_through = 0
        known = {c.name: c for c in service_circuits(service.pk)}
        circuits = _resolve_circuits(service.pk, batch, instance, known)
        changed = upsert_snapshots(instance, batch.breakers, circuits, restarted=restarted, now=now)
        new_transitions = _store_transitions(instance, batch.transitions, circuits, now=now)
        if batch.transitions:
            instance.acked_through = max(
                instance.acked_through, max(t.id for t in batch.transitions)
            )
        instance.hostname = info.hostname
        instance.pid = info.pid
        instance.library_version = info.library_version
        if info.started_at is not None:
            instance.started_at = info.started_at
        instance.dropped_transitions = min(
            MAX_COUNTER, instance.dropped_transitions + batch.dropped_transitions
        )
        instance.last_seen = now
        instance.save(
            update_fields=[
                "hostname",
                "pid",
                "library_version",
                "started_at",
                "generation",
                "restarts",
                "acked_through",
                "dropped_transitions",
                "last_seen",
            ]
        )
        answer = desired_state_from(desired_version, circuits.values(), overrides, now=now)
        answer["acked_through"] = instance.acked_through
        batch_events: list[events.FleetEvent] = []
        if new_transitions:
            batch_events.append(
                events.transitions_event(
                    service_id=service.pk,
                    service=service.name,
                    transitions=[
                        events.transition_item(
                            circuit_id=circuits[t.breaker].id,
                            circuit=t.breaker,
                            instance=instance.instance_id,
                            from_state=t.from_state,
                            to_state=t.to_state,
                            at=isoformat(t.at) or "",
                            reason=t.reason,
                        )
                        for t in new_transitions
                    ],
                )
            )
        if changed:
            batch_events.append(
                events.snapshots_event(
                    service_id=service.pk,
                    service=service.name,
                    instance=instance.instance_id,
                    snapshots=changed,
                )
            )
        events.publish(*batch_events)
    return answer
