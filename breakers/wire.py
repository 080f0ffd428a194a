"""The agent sync protocol on the wire: one declaration both sides import.

The agent (:mod:`breakers.agent`) encodes with these functions and the control plane
(``controlplane/circuits/ingest.py`` and ``desired.py``) validates and answers with
the same names, version and timestamp format; ``docs/sync-protocol.md`` describes
them. Standard library only.

Timestamps (:mod:`breakers.timestamps`, re-exported here): ISO-8601 in UTC with
exactly six fractional digits (microseconds) and a trailing ``Z``, e.g.
``2026-11-28T03:47:04.123456Z``. Readers also accept every older form (milliseconds,
no fraction, ``+00:00`` or another offset), so agents and servers of earlier releases
keep working.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

from .canary import CanaryWire
from .timestamps import MAX_TIMESTAMP_LENGTH, format_timestamp, parse_timestamp

if TYPE_CHECKING:
    # Annotations only: breaker does not import this module, so there is no cycle.
    from .breaker import TransitionEvent

__all__ = [
    "BREAKER_COUNTERS",
    "BREAKER_FIELDS",
    "DEFAULT_LIMITS",
    "INSTANCE_FIELDS",
    "LIMIT_FIELDS",
    "MAX_TIMESTAMP_LENGTH",
    "PROTOCOL_VERSION",
    "SHADOW_COUNTERS",
    "SYNC_ANSWER_FIELDS",
    "SYNC_PATH",
    "SYNC_REQUEST_FIELDS",
    "TELEMETRY_BUCKET_SECONDS",
    "TELEMETRY_COUNTERS",
    "TRANSITION_FIELDS",
    "WATCH_PATH",
    "BreakerWire",
    "CanaryWire",
    "DesiredBreakerWire",
    "DrillWire",
    "InstanceWire",
    "LimitsWire",
    "OverrideWire",
    "ShadowGrowthWire",
    "ShadowTransitionWire",
    "ShadowWire",
    "SyncAnswer",
    "SyncRequest",
    "TelemetryBreakerWire",
    "TelemetryReportWire",
    "TransitionWire",
    "decode_answer",
    "encode_breaker",
    "encode_instance",
    "encode_sync_request",
    "encode_transition",
    "format_timestamp",
    "override_until",
    "parse_timestamp",
]

#: The one protocol version. A server answers 400 (field "protocol") to any other.
PROTOCOL_VERSION = 1
SYNC_PATH = "/api/v1/agent/sync"
WATCH_PATH = "/api/v1/agent/watch"

# ---------------------------------------------------------------- shapes


class InstanceWire(TypedDict):
    """The reporting process (``instance`` of a sync request)."""

    id: str
    hostname: str
    pid: int | None
    started_at: str | None
    library_version: str


class BreakerWire(TypedDict):
    """One breaker's state and cumulative counters (an item of ``breakers``).

    Only ``name`` and ``state`` are required; counters default to 0, the rest to null.
    """

    name: str
    state: str
    config_version: NotRequired[int]
    config: NotRequired[dict[str, Any] | None]
    calls: NotRequired[int]
    successes: NotRequired[int]
    failures: NotRequired[int]
    slow_calls: NotRequired[int]
    rejected: NotRequired[int]
    failure_rate: NotRequired[float | None]
    trip_count: NotRequired[int]
    state_since: NotRequired[str | None]
    retry_after: NotRequired[float | None]


# "from" is a keyword, hence the functional form.
TransitionWire = TypedDict(
    "TransitionWire",
    {
        "id": int,
        "breaker": str,
        "from": str,
        "to": str,
        "at": str,
        "reason": str,
        "failure_rate": float | None,
        "calls": int | None,
        "failures": int | None,
        "config_version": int | None,
    },
)
TransitionWire.__doc__ = "One state change with its agent-assigned id (an item of ``transitions``)."


# "from" is a keyword, hence the functional form.
ShadowTransitionWire = TypedDict(
    "ShadowTransitionWire", {"from": str, "to": str, "at": str, "reason": str}
)
ShadowTransitionWire.__doc__ = "A transition a shadow candidate would have made."


class ShadowGrowthWire(TypedDict):
    """What a shadow candidate (docs/library.md, "Shadow evaluation") would have done
    inside a report: ``evaluation`` and ``config_version`` from the desired state, the
    growth of its counters (:data:`SHADOW_COUNTERS`) and its would-be transitions, at
    most :data:`breakers.breaker.SHADOW_TRANSITIONS_KEPT`, oldest first."""

    evaluation: int
    config_version: int
    rejected: int
    unobserved: int
    opened: int
    half_opened: int
    closed: int
    transitions: list[ShadowTransitionWire]


class TelemetryBreakerWire(TypedDict):
    """The growth of one breaker's counters inside a report (docs/traffic.md).

    ``latency``: the histogram's changed buckets as ``[index, count]`` pairs
    (:mod:`breakers.latency`); ``shadow``: its shadow candidate's, while one runs.
    """

    name: str
    calls: int
    successes: int
    failures: int
    slow_calls: int
    rejected: int
    fallbacks: int
    latency: list[list[int]]
    shadow: NotRequired[ShadowGrowthWire]


class TelemetryReportWire(TypedDict):
    """One telemetry report: what grew inside one 10-second bucket (``bucket``: its
    start in Unix seconds); ``seq`` 1, 2, 3, ... per process start."""

    seq: int
    bucket: int
    breakers: list[TelemetryBreakerWire]


class SyncRequest(TypedDict):
    """The body of ``POST /api/v1/agent/sync``.

    ``clock``: seconds on the agent's monotonic clock since its clock origin
    (:mod:`breakers.clock`), read right before the breakers' counters; the server
    derives rates from two reports' counters over the difference of their clocks.
    """

    protocol: int
    service: str
    clock: float
    instance: InstanceWire
    breakers: list[BreakerWire]
    transitions: list[TransitionWire]
    # Transitions dropped (full buffer) since the last successful sync; the server adds
    # them up, so a count is reported once.
    dropped_transitions: int
    # Reports not yet acknowledged, oldest first, and the reports dropped (too many
    # waiting) since the last successful sync.
    telemetry: NotRequired[list[TelemetryReportWire]]
    dropped_reports: NotRequired[int]


class OverrideWire(TypedDict):
    """A forced state in force (``until`` null: until released)."""

    state: str
    until: str | None
    reason: str
    by: str


class DrillWire(TypedDict):
    """A drill: the listed instances force the breaker open until ``until`` (always set)."""

    id: int
    state: str
    until: str
    instances: list[str]
    reason: str


class ShadowWire(TypedDict):
    """A candidate config to evaluate beside the one in force, without enforcing it:
    ``evaluation`` identifies the evaluation (a new one starts a fresh candidate)."""

    evaluation: int
    config_version: int
    config: dict[str, Any]


class DesiredBreakerWire(TypedDict):
    """What one breaker should run (``drill``: absent from servers of earlier releases;
    ``shadow``: null or absent when none is evaluated; ``canary``, while a rollout
    runs, the config its selected instances run instead, :mod:`breakers.canary`)."""

    config_version: int
    config: dict[str, Any] | None
    override: OverrideWire | None
    drill: NotRequired[DrillWire | None]
    shadow: NotRequired[ShadowWire | None]
    canary: NotRequired[CanaryWire | None]


class LimitsWire(TypedDict, total=False):
    """The server's limits per sync: breakers, transitions, body size in bytes."""

    breakers: int
    transitions: int
    body_bytes: int


class SyncAnswer(TypedDict):
    """The answer to a sync (with ``acked_through`` and ``limits``) and to a watch."""

    desired_version: int
    poll_interval: float
    breakers: dict[str, DesiredBreakerWire]
    acked_through: NotRequired[int]
    telemetry_through: NotRequired[int]
    limits: NotRequired[LimitsWire]


INSTANCE_FIELDS: tuple[str, ...] = tuple(InstanceWire.__annotations__)
BREAKER_FIELDS: tuple[str, ...] = tuple(BreakerWire.__annotations__)
TRANSITION_FIELDS: tuple[str, ...] = tuple(TransitionWire.__annotations__)
SYNC_REQUEST_FIELDS: tuple[str, ...] = tuple(SyncRequest.__annotations__)
SYNC_ANSWER_FIELDS: tuple[str, ...] = tuple(SyncAnswer.__annotations__)
LIMIT_FIELDS: tuple[str, ...] = tuple(LimitsWire.__annotations__)

#: The span of a telemetry report: reports are cut at every multiple of it (wall clock).
TELEMETRY_BUCKET_SECONDS = 10

#: The counters of a telemetry report's breaker entry, in the order they are sent.
TELEMETRY_COUNTERS: tuple[str, ...] = (
    "calls",
    "successes",
    "failures",
    "slow_calls",
    "rejected",
    "fallbacks",
)

#: The counters of a telemetry entry's ``shadow``, in the order they are sent.
SHADOW_COUNTERS: tuple[str, ...] = ("rejected", "unobserved", "opened", "half_opened", "closed")

#: What an agent assumes until a server has told it its limits.
DEFAULT_LIMITS: LimitsWire = {"breakers": 500, "transitions": 500, "body_bytes": 1024 * 1024}

#: Cumulative integer fields of a breaker report (0 when left out).
BREAKER_COUNTERS: tuple[str, ...] = (
    "calls",
    "successes",
    "failures",
    "slow_calls",
    "rejected",
    "trip_count",
)


# ---------------------------------------------------------------- encoders (agent side)


def encode_instance(
    instance_id: str, hostname: str, pid: int | None, started_at: float, library_version: str
) -> InstanceWire:
    """The ``instance`` object; ``started_at`` is wall-clock epoch seconds."""
    return {
        "id": instance_id,
        "hostname": hostname,
        "pid": pid,
        "started_at": format_timestamp(started_at),
        "library_version": library_version,
    }


def encode_breaker(
    name: str, state: Mapping[str, Any], config: dict[str, Any], config_version: int
) -> BreakerWire:
    """A breaker report from ``CircuitBreaker.get_state()`` and its running config."""
    return {
        "name": name,
        "state": str(state.get("state")),
        "config_version": state.get("config_version", config_version),
        "config": config,
        "calls": state.get("calls", 0),
        "successes": state.get("successes", 0),
        "failures": state.get("failures", 0),
        "slow_calls": state.get("slow_calls", 0),
        "rejected": state.get("rejected", 0),
        "failure_rate": state.get("failure_rate"),
        "trip_count": state.get("trip_count", 0),
        "state_since": state.get("state_since"),
        "retry_after": state.get("retry_after"),
    }


def encode_transition(transition_id: int, event: TransitionEvent) -> TransitionWire:
    """A transition event with the agent's id for it (ids grow by one per process)."""
    return {
        "id": transition_id,
        "breaker": event.breaker,
        "from": str(event.from_state),
        "to": str(event.to_state),
        "at": format_timestamp(event.at),
        "reason": str(event.reason),
        "failure_rate": event.failure_rate,
        "calls": event.calls,
        "failures": event.failures,
        "config_version": event.config_version,
    }


def encode_sync_request(
    service: str,
    instance: InstanceWire,
    breakers: list[BreakerWire],
    transitions: Iterable[TransitionWire],
    dropped_transitions: int,
    *,
    clock: float,
    telemetry: Iterable[TelemetryReportWire] = (),
    dropped_reports: int = 0,
) -> SyncRequest:
    """The whole sync body, at the current protocol version.

    ``clock`` is :func:`breakers.clock.seconds` read right before the breakers' counters.
    """
    return {
        "protocol": PROTOCOL_VERSION,
        "service": service,
        "clock": clock,
        "instance": instance,
        "breakers": breakers,
        "transitions": list(transitions),
        "dropped_transitions": dropped_transitions,
        "telemetry": list(telemetry),
        "dropped_reports": dropped_reports,
    }


# ---------------------------------------------------------------- decoders (agent side)


def decode_answer(data: bytes) -> SyncAnswer:
    """Decode a sync or watch answer; ValueError says what is wrong with it.

    Checks what the agent relies on: an object with a non-negative integer
    ``desired_version``, ``breakers`` an object of objects and ``acked_through`` (if
    present) an integer. Each entry is checked again when it is applied. ``limits`` is
    read leniently: a limit that is not a positive integer is left out (the agent keeps
    its default for it), and ``limits`` itself when it is not an object.
    ``telemetry_through`` is read leniently too: left out unless a non-negative integer
    (the agent then treats the answer as one from a server without telemetry).
    """
    try:
        decoded = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid JSON ({exc})") from None
    if not isinstance(decoded, dict):
        raise ValueError(f"expected a JSON object, got {type(decoded).__name__}")
    version = decoded.get("desired_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError("desired_version must be a non-negative integer")
    breakers = decoded.get("breakers", {})
    if not isinstance(breakers, dict) or not all(isinstance(v, dict) for v in breakers.values()):
        raise ValueError("breakers must be an object of objects")
    acked = decoded.get("acked_through")
    if acked is not None and (isinstance(acked, bool) or not isinstance(acked, int)):
        raise ValueError(f"acked_through must be an integer, got {acked!r}")
    through = decoded.get("telemetry_through")
    if "telemetry_through" in decoded and (
        isinstance(through, bool) or not isinstance(through, int) or through < 0
    ):
        del decoded["telemetry_through"]
    if "limits" in decoded:
        limits = _lenient_limits(decoded["limits"])
        if limits:
            decoded["limits"] = limits
        else:
            del decoded["limits"]
    return cast(SyncAnswer, decoded)


def _lenient_limits(value: object) -> LimitsWire:
    """The well-formed limits of ``value`` (positive integers under known names)."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, int] = {}
    for name in LIMIT_FIELDS:
        limit = value.get(name)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            out[name] = limit
    return cast(LimitsWire, out)


def override_until(override: Mapping[str, Any]) -> float | None:
    """An override's ``until`` as epoch seconds, or None when it has no end.

    A timestamp without a time zone is read as UTC (lenient: the agent must keep
    obeying a server that wrote one).
    """
    until = override.get("until")
    if not until:
        return None
    return parse_timestamp(str(until), naive_is_utc=True).timestamp()
