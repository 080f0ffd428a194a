"""One wire format: what the agent encodes (breakers.wire) is what the server parses."""

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from breakers import CircuitBreaker, CircuitBreakerConfig, TransitionEvent, wire
from breakers import agent as agent_module
from breakers.states import REASONS, CircuitState, TransitionReason
from controlplane.circuits import choices
from controlplane.circuits.sync.parse import SyncError, config_of
from tests.circuits.sync_helpers import parse_sync

WIRE_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
AT = datetime(2026, 11, 27, 10, 4, 5, 123456, tzinfo=UTC)

# Every field of a breaker report set to a value that differs from its default.
FULL_BREAKER: wire.BreakerWire = {
    "name": "payments",
    "state": "half_open",
    "config_version": 4,
    "config": CircuitBreakerConfig(failure_threshold=9).to_dict(),
    "calls": 11,
    "successes": 7,
    "failures": 3,
    "slow_calls": 2,
    "rejected": 5,
    "failure_rate": 0.25,
    "trip_count": 6,
    "state_since": "2026-11-27T10:04:05.123456Z",
    "retry_after": 1.5,
}


def _event() -> TransitionEvent:
    return TransitionEvent(
        breaker="payments",
        from_state=CircuitState.CLOSED,
        to_state=CircuitState.OPEN,
        at=AT.timestamp(),
        reason=TransitionReason.FAILURE_RATE,
        failure_rate=0.5,
        calls=10,
        failures=5,
        config_version=4,
    )


def test_the_agents_request_is_parsed_field_for_field() -> None:
    breaker = CircuitBreaker("search")
    instance = wire.encode_instance("web-1", "host-a", 4242, AT.timestamp(), "0.1.0")
    request = wire.encode_sync_request(
        "checkout",
        instance,
        [
            wire.encode_breaker("search", breaker.get_state(), breaker.config.to_dict(), 0),
            FULL_BREAKER,
        ],
        [wire.encode_transition(7, _event())],
        dropped_transitions=2,
        clock=12.5,
    )
    assert set(request) == set(wire.SYNC_REQUEST_FIELDS)
    batch = parse_sync(request)
    assert batch.clock == 12.5

    assert (batch.service, batch.dropped_transitions) == ("checkout", 2)
    assert set(wire.INSTANCE_FIELDS) == {"id", "hostname", "pid", "started_at", "library_version"}
    assert (batch.instance.id, batch.instance.hostname, batch.instance.pid) == (
        "web-1",
        "host-a",
        4242,
    )
    assert (batch.instance.started_at, batch.instance.library_version) == (AT, "0.1.0")

    search, payments = batch.breakers
    assert (search.name, search.state, config_of(search)) == (
        "search",
        "closed",
        breaker.config.to_dict(),
    )
    # Every declared breaker field reaches the report, under the same name.
    for name in wire.BREAKER_FIELDS:
        value = getattr(payments, name)
        if name == "config":
            assert config_of(payments) == FULL_BREAKER[name]  # type: ignore[literal-required]
        elif name == "state_since":
            assert value == wire.parse_timestamp(FULL_BREAKER[name])  # type: ignore[literal-required]
        else:
            assert value == FULL_BREAKER[name], name  # type: ignore[literal-required]

    (transition,) = batch.transitions
    assert set(wire.TRANSITION_FIELDS) == set(wire.encode_transition(1, _event()))
    assert (transition.id, transition.breaker, transition.reason) == (7, "payments", "failure_rate")
    assert (transition.from_state, transition.to_state, transition.at) == ("closed", "open", AT)
    assert (transition.failure_rate, transition.calls, transition.failures) == (0.5, 10, 5)
    assert transition.config_version == 4


@pytest.mark.parametrize(
    "written",
    [
        "2026-11-27T10:04:05.123456Z",  # this release
        "2026-11-27T10:04:05.123456+00:00",  # isoformat() with an offset
        "2026-11-27T12:04:05.123456+02:00",  # another zone
    ],
)
def test_every_timestamp_form_old_agents_wrote_is_accepted(written: str) -> None:
    assert wire.parse_timestamp(written) == AT
    body = {"instance": {"id": "web-1", "started_at": written}}
    assert parse_sync(body).instance.started_at == AT


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2026-11-27T10:04:05.123Z", AT.replace(microsecond=123000)),  # the seed's ms
        ("2026-11-27T10:04:05Z", AT.replace(microsecond=0)),
    ],
)
def test_coarser_timestamps_are_accepted(written: str, expected: datetime) -> None:
    assert parse_sync({"instance": {"id": "w", "started_at": written}}).instance.started_at == (
        expected
    )


@pytest.mark.parametrize("written", ["2026-11-27T10:04:05", "yesterday", 1764237845, "9" * 65])
def test_a_timestamp_without_zone_or_not_a_timestamp_is_refused_as_before(written: object) -> None:
    with pytest.raises(SyncError) as info:
        parse_sync({"instance": {"id": "web-1", "started_at": written}})
    (reason,) = info.value.errors.values()
    assert list(info.value.errors) == ["instance.started_at"]
    assert reason.startswith("must be an ISO-8601 date-time with a time zone"), reason


def test_one_timestamp_format_everywhere() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert wire.format_timestamp(moment) == "2026-01-02T02:04:05.000000Z"
    assert wire.format_timestamp(moment.timestamp()) == "2026-01-02T02:04:05.000000Z"
    assert wire.format_timestamp(None) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        wire.format_timestamp(datetime(2026, 1, 2))  # noqa: DTZ001
    # The library's own reports and events, and the server's answers, use it.
    breaker = CircuitBreaker("x")
    assert WIRE_TIMESTAMP.match(breaker.get_state()["state_since"])
    assert _event().to_dict()["at"] == "2026-11-27T10:04:05.123456Z"
    from controlplane.circuits.desired import isoformat

    assert isoformat(AT) == "2026-11-27T10:04:05.123456Z"
    assert wire.parse_timestamp(wire.format_timestamp(AT)) == AT


def test_another_protocol_version_is_refused_naming_the_one_spoken() -> None:
    body = {"protocol": wire.PROTOCOL_VERSION + 1, "instance": {"id": "web-1"}}
    with pytest.raises(SyncError) as info:
        parse_sync(body)
    assert info.value.errors == {"protocol": f"must be {wire.PROTOCOL_VERSION}, got 2"}
    assert agent_module.PROTOCOL_VERSION == wire.PROTOCOL_VERSION


def test_server_choices_are_derived_from_the_librarys_enums() -> None:
    assert choices.CircuitState.values == [s.value for s in CircuitState]
    assert choices.FleetState.values == [*choices.CircuitState.values, "unknown"]
    assert choices.OverrideState.values == ["forced_open", "forced_closed"]
    assert choices.TransitionReason.values == list(REASONS)
    assert choices.CircuitState.HALF_OPEN == CircuitState.HALF_OPEN == "half_open"
    # The labels the migrations were written with: a change would need a migration.
    assert choices.CircuitState.choices[2] == ("half_open", "half open")
    assert choices.TransitionReason.choices[0] == ("failure_threshold", "Failure Threshold")
