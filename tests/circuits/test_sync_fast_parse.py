"""The event loop's accepted path (``parse_sync_body``) against ``parse_sync``.

``parse_sync_body`` decodes a plainly valid body straight into the batch and leaves
everything else (None) to ``parse_sync``. These tests hold it to that: on every field of
every object, with values of every JSON type, edge values and left-out fields, it either
returns exactly what ``parse_sync`` returns or None, and it never accepts what
``parse_sync`` refuses.
"""

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from breakers.config import CircuitBreakerConfig
from controlplane.circuits.ingest import SyncError, parse_sync, parse_sync_body

_MISSING = object()
VALUES: list[Any] = [
    _MISSING,
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    5,
    1.0,
    0.5,
    -0.0,
    1.5,
    1e9,
    1e10,
    2**31 - 1,
    2**31,
    2**63 - 1,
    2**63,
    2**70,
    float("nan"),
    float("inf"),
    "",
    "x",
    "closed",
    "open",
    "half_open",
    "failure_rate",
    "web-1",
    "has space",
    "a\n",
    "é",
    "n" * 50,
    "n" * 51,
    "n" * 200,
    "n" * 201,
    "h" * 256,
    "2026-11-27T10:00:00Z",
    "2026-11-27T10:00:00.123456+02:00",
    "2026-11-27T10:00:00",
    "yesterday",
    # Outside the accepted range (SWITCHYARD_SYNC_EARLIEST_YEAR, the clock skew), or
    # leaving the calendar once in UTC.
    "1999-12-31T23:59:59Z",
    "2999-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    # Control characters and a lone surrogate in free text.
    "web\x00",
    "tab\there",
    "\x7f",
    "\ud800",
    [],
    [1],
    {},
    {"failure_threshold": 3},
]


def _config() -> dict[str, Any]:
    return CircuitBreakerConfig().to_dict()


def _base() -> dict[str, Any]:
    return {
        "protocol": 1,
        "service": "checkout",
        "instance": {
            "id": "web-1",
            "hostname": "web",
            "pid": 4242,
            "started_at": "2026-11-27T10:00:00Z",
            "library_version": "0.1.0",
        },
        "breakers": [
            {
                "name": "payments",
                "state": "open",
                "config_version": 3,
                "config": _config(),
                "calls": 1200,
                "successes": 1100,
                "failures": 90,
                "slow_calls": 10,
                "rejected": 40,
                "failure_rate": 0.55,
                "trip_count": 4,
                "failure_count": 2,
                "success_count": 1,
                "state_since": "2026-11-27T10:04:00.000000Z",
                "last_failure": "2026-11-27T10:03:59.5Z",
                "retry_after": 12.5,
            },
            {"name": "db", "state": "closed"},
        ],
        "transitions": [
            {
                "id": 17,
                "breaker": "payments",
                "from": "closed",
                "to": "open",
                "at": "2026-11-27T10:04:00.000000Z",
                "reason": "failure_rate",
                "failure_rate": 0.55,
                "calls": 11,
                "failures": 6,
                "config_version": 3,
            }
        ],
        "dropped_transitions": 2,
    }


def _slow(body: bytes) -> Any:
    """What parse_sync makes of the body: the batch, or the refusal."""
    try:
        return parse_sync(json.loads(body))
    except SyncError as exc:
        return ("refused", exc.status, exc.errors)
    except ValueError as exc:
        return ("malformed", str(exc))


def _check(body: bytes) -> bool:
    """The fast path agrees with parse_sync; True if it took the body itself."""
    fast = parse_sync_body(body)
    if fast is None:
        return False
    assert fast == _slow(body)
    return True


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=True).encode()


Where = Callable[[dict[str, Any]], dict[str, Any]]
PLACES: list[tuple[str, Where]] = [
    ("top", lambda b: b),
    ("instance", lambda b: b["instance"]),
    ("breaker", lambda b: b["breakers"][0]),
    ("bare breaker", lambda b: b["breakers"][1]),
    ("config", lambda b: b["breakers"][0]["config"]),
    ("transition", lambda b: b["transitions"][0]),
]


def _fields(where: Where) -> list[str]:
    return [*where(_base()), "unknown_field"]


CASES = [
    pytest.param(where, key, id=f"{place}.{key}")
    for place, where in PLACES
    for key in _fields(where)
]


def test_a_plainly_valid_sync_takes_the_accepted_path_with_the_same_batch() -> None:
    body = _encode(_base())
    assert _check(body)
    batch = parse_sync_body(body)
    assert batch is not None
    assert batch.breakers[0].config == _config()
    assert batch.transitions[0].at.isoformat() == "2026-11-27T10:04:00+00:00"


@pytest.mark.parametrize(("where", "key"), CASES)
def test_every_field_with_every_kind_of_value_agrees_with_parse_sync(
    where: Where, key: str
) -> None:
    for value in VALUES:
        payload = _base()
        if value is _MISSING:
            where(payload).pop(key, None)
        else:
            where(payload)[key] = copy.deepcopy(value)
        _check(_encode(payload))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(breakers=None),
        lambda b: b.update(transitions=None),
        lambda b: b.update(breakers=[]),
        lambda b: b.update(breakers=[b["breakers"][0], dict(b["breakers"][0])]),  # duplicate
        lambda b: b.update(breakers=[1]),
        lambda b: b.update(transitions=["x"]),
        lambda b: b["breakers"][0].update(config=None),
        lambda b: b["breakers"][0].update(config={**_config(), "timeout": -1}),
        lambda b: b["breakers"][0].update(config={**_config(), "failure_threshold": 5.0}),
        lambda b: b["breakers"][0].update(config={**_config(), "failure_threshold": True}),
        lambda b: b["breakers"][0].update(config={**_config(), "bogus": 1}),
        lambda b: b["breakers"][0].update(config={"timeout": [1]}),
    ],
)
def test_lists_duplicates_and_config_objects_agree_with_parse_sync(
    mutate: Callable[[dict[str, Any]], None],
) -> None:
    payload = _base()
    mutate(payload)
    _check(_encode(payload))


def test_a_config_is_judged_by_content_each_time_not_by_the_first_verdict() -> None:
    good, bad = _base(), _base()
    bad["breakers"][0]["config"] = {**_config(), "failure_threshold": 0}
    for _ in range(2):
        assert parse_sync_body(_encode(good)) is not None
        assert parse_sync_body(_encode(bad)) is None
        assert _slow(_encode(bad))[0] == "refused"


@pytest.mark.parametrize(
    "body",
    [
        b'{"protocol": 1, "protocol": 2, "instance": {"id": "a"}}',
        b'{"protocol": 2, "protocol": 1, "instance": {"id": "a"}}',
        b'{"instance": {"id": "bad id", "id": "a"}}',
        b'\xef\xbb\xbf{"instance": {"id": "a"}}',
        '{"instance": {"id": "a"}}'.encode("utf-16"),
        b'{"instance": {"id": "a"}, "x": 123456789012345678901234567890}',
        b'{"instance": {"id": "a"}, "dropped_transitions": 123456789012345678901234567890}',
        b'{"instance": {"id": "a"}, "x": NaN}',
        b'{"instance": {"id": "a"}} trailing',
        b'{"instance": {"id": "a\\u0000"}}',
        b'{"instance": {"id": "a", "hostname": "\\ud800"}}',
        b'{"instance": {"id": "a"}, "protocol": 1.0}',
        b'[{"instance": {"id": "a"}}]',
        b"",
    ],
)
def test_json_corner_cases_agree_with_parse_sync(body: bytes) -> None:
    _check(body)


@pytest.mark.django_db  # a settings change resets connections
def test_the_list_limits_are_left_to_parse_sync(settings: Any) -> None:
    settings.SWITCHYARD_SYNC_MAX_BREAKERS = 1
    body = _encode(_base())  # two breakers
    assert parse_sync_body(body) is None
    assert _slow(body)[:2] == ("refused", 413)


def test_the_decoder_knows_every_field_of_the_wire_and_no_other() -> None:
    """Every field the agent sends is decoded on the accepted path (a field left out
    here would send every sync down the slower one)."""
    import msgspec

    from breakers import wire
    from controlplane.circuits import ingest

    def names(struct: Any) -> set[str]:
        return {f.encode_name for f in msgspec.structs.fields(struct)}

    assert names(ingest._WireSync) == set(wire.SYNC_REQUEST_FIELDS)
    assert names(ingest._WireInstance) == set(wire.INSTANCE_FIELDS)
    assert names(ingest._WireBreaker) == set(wire.BREAKER_FIELDS)
    assert names(ingest._WireTransition) == set(wire.TRANSITION_FIELDS)


@pytest.mark.parametrize("where", ["sync", "instance", "breaker", "transition", "config"])
@pytest.mark.parametrize("levels", [1, 40, 5_000])
def test_unknown_fields_and_deep_values_go_to_parse_sync(where: str, levels: int) -> None:
    """An unknown field (nested or not) is parse_sync's to judge: it ignores unknown
    fields, and the depth limit in front of it refuses deep ones, as on the view."""
    body = _base()
    target = {
        "sync": body,
        "instance": body["instance"],
        "breaker": body["breakers"][0],
        "transition": body["transitions"][0],
        "config": body["breakers"][0]["config"],
    }[where]
    target["x"] = "PLACE"
    raw = json.dumps(body).replace('"PLACE"', "[" * (levels - 1) + "1" + "]" * (levels - 1))
    assert parse_sync_body(raw.encode()) is None
