"""CircuitBreakerConfig: defaults, validation of every field, wire round trips."""

from __future__ import annotations

import dataclasses
import json

import pytest

from breakers import WIRE_FIELDS, CircuitBreakerConfig, config_errors

SEED_DEFAULTS = {
    "failure_threshold": 5,
    "success_threshold": 3,
    "timeout": 30.0,
    "half_open_max_calls": 3,
    "failure_rate_threshold": 0.5,
    "sliding_window_size": 10,
}

# (field, valid values, invalid values) - bounds on both sides of every range.
CASES = [
    ("failure_threshold", [1, 1_000_000], [0, -1, 1_000_001, 2.0, True, "5", None]),
    ("success_threshold", [1, 1_000_000], [0, 1_000_001, 1.5, False, None]),
    ("timeout", [0.001, 1, 86_400], [0, -1, 86_400.1, float("nan"), float("inf"), True, "1"]),
    ("half_open_max_calls", [1, 10_000], [0, 10_001, 3.0, True]),
    ("failure_rate_threshold", [0.01, 1, 1.0], [0, 0.0, 1.01, -0.5, True, None]),
    ("sliding_window_size", [1, 100_000], [0, 100_001, 10.0]),
    ("minimum_calls", [1, 100_000], [0, 100_001, None]),
    ("window_type", ["count", "time"], ["COUNT", "sliding", 1, None]),
    ("window_duration", [0.5, 86_400], [0, -3, 86_401, False]),
    ("slow_call_duration", [None, 0.001, 86_400], [0, -1, 86_401, "fast", True]),
    ("slow_call_rate_threshold", [0.1, 1], [0, 1.5, None]),
    ("timeout_multiplier", [1, 1.0, 2.5, 100], [0.99, 0, 100.5, True]),
    ("max_timeout", [30, 604_800], [29.9, 0, 604_801, "300"]),
    ("timeout_jitter", [0, 0.0, 0.5, 1], [-0.1, 1.1, None, True]),
]


def test_seed_constructor_and_defaults_still_work():
    config = CircuitBreakerConfig(
        failure_threshold=5,
        success_threshold=3,
        timeout=30.0,
        half_open_max_calls=3,
        failure_rate_threshold=0.5,
        sliding_window_size=10,
    )
    assert config == CircuitBreakerConfig()
    for name, value in SEED_DEFAULTS.items():
        assert getattr(config, name) == value
    assert config.minimum_calls == 10
    assert config.window_type == "count"
    assert config.window_duration == 60.0
    assert config.slow_call_duration is None
    assert config.slow_call_rate_threshold == 1.0
    assert config.timeout_multiplier == 1.0
    assert config.max_timeout == 300.0
    assert config.timeout_jitter == 0.0
    assert config.failure_exceptions == (Exception,)
    assert config.ignore_exceptions == ()
    assert config.failure_predicate is None


def test_wire_fields_are_the_contract_list_in_order():
    assert WIRE_FIELDS == (
        "failure_threshold",
        "success_threshold",
        "timeout",
        "half_open_max_calls",
        "failure_rate_threshold",
        "sliding_window_size",
        "minimum_calls",
        "window_type",
        "window_duration",
        "slow_call_duration",
        "slow_call_rate_threshold",
        "timeout_multiplier",
        "max_timeout",
        "timeout_jitter",
    )
    assert {case[0] for case in CASES} == set(WIRE_FIELDS)


@pytest.mark.parametrize(("name", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_every_field_accepts_its_range_and_rejects_outside_it(name, good, bad):
    # A long open timeout needs a cap at least as long.
    extra = {"max_timeout": 604_800} if name == "timeout" else {}
    for value in good:
        config = CircuitBreakerConfig(**{name: value}, **extra)
        assert getattr(config, name) == value
        assert config_errors({name: value, **extra}) == {}
    for value in bad:
        with pytest.raises(ValueError) as info:
            CircuitBreakerConfig(**{name: value}, **extra)
        message = str(info.value)
        assert message.startswith(f"{name} must be"), message
        assert repr(value) in message
        errors = config_errors({name: value, **extra})
        assert list(errors) == [name]
        assert errors[name].startswith("must be")


def test_error_message_names_the_range():
    with pytest.raises(
        ValueError,
        match=r"^failure_threshold must be an integer between 1 "
        r"and 1000000, got 0$",
    ):
        CircuitBreakerConfig(failure_threshold=0)
    with pytest.raises(
        ValueError,
        match=r"^timeout_jitter must be a number at least 0 and at "
        r"most 1, got 1.5$",
    ):
        CircuitBreakerConfig(timeout_jitter=1.5)


def test_int_is_accepted_for_float_fields_and_stored_as_float():
    config = CircuitBreakerConfig(timeout=30, failure_rate_threshold=1, slow_call_duration=2)
    assert type(config.timeout) is float and config.timeout == 30.0
    assert type(config.failure_rate_threshold) is float
    assert type(config.slow_call_duration) is float
    assert config == CircuitBreakerConfig(
        timeout=30.0, slow_call_duration=2.0, failure_rate_threshold=1.0
    )
    assert hash(config) == hash(
        CircuitBreakerConfig(timeout=30.0, slow_call_duration=2.0, failure_rate_threshold=1.0)
    )


def test_a_long_timeout_alone_is_valid_and_max_timeout_follows_it():
    # The user's report: only timeout set, beyond the default cap of 300 s.
    config = CircuitBreakerConfig(failure_threshold=1, timeout=3600)
    assert (config.timeout, config.max_timeout) == (3600.0, 3600.0)
    assert CircuitBreakerConfig(timeout=86_400).max_timeout == 86_400.0
    assert CircuitBreakerConfig(timeout=10).max_timeout == 300.0
    assert CircuitBreakerConfig(max_timeout=None) == CircuitBreakerConfig()
    # Copies keep following timeout, whichever way they are made.
    assert CircuitBreakerConfig().replace(timeout=3600).max_timeout == 3600.0
    assert config.replace(timeout=10).max_timeout == 300.0
    base = CircuitBreakerConfig()
    assert CircuitBreakerConfig.from_dict({"timeout": 7200}, base=base).max_timeout == 7200.0
    # The server checks wire mappings with the same rule.
    assert config_errors({"timeout": 3600}) == {}
    assert config_errors({"timeout": 3600}, base=base) == {}
    assert config_errors({"timeout": 3600, "timeout_multiplier": 2}) == {}


def test_a_growing_timeout_opens_for_the_timeout_then_grows_to_the_cap():
    config = CircuitBreakerConfig(timeout=3600, timeout_multiplier=2)
    assert config.max_timeout == 3600.0  # grows no further than timeout unless told
    grown = CircuitBreakerConfig(timeout=3600, timeout_multiplier=2, max_timeout=14_400)
    assert grown.max_timeout == 14_400.0


def test_an_explicit_max_timeout_must_not_be_below_timeout():
    with pytest.raises(ValueError, match=r"^max_timeout must be at least timeout \(600\)"):
        CircuitBreakerConfig(timeout=600, max_timeout=300)
    assert CircuitBreakerConfig(timeout=600, max_timeout=600).max_timeout == 600.0
    assert config_errors({"timeout": 400, "max_timeout": 300}) == {
        "max_timeout": "must be at least timeout (400), got 300"
    }
    # A cap given explicitly is kept by copies, so it is checked against a new timeout.
    capped = CircuitBreakerConfig(max_timeout=300)
    with pytest.raises(ValueError, match=r"^max_timeout must be at least timeout \(400\)"):
        capped.replace(timeout=400)
    assert config_errors({"timeout": 400}, base=capped) == {
        "max_timeout": "must be at least timeout (400), got 300.0"
    }
    # On the wire the field is a number: null is not "the default" there.
    assert list(config_errors({"max_timeout": None})) == ["max_timeout"]


def test_all_errors_are_reported_at_once():
    errors = config_errors(
        {"failure_threshold": 0, "timeout": -1, "window_type": "x", "colour": "red"}
    )
    assert set(errors) == {"failure_threshold", "timeout", "window_type", "colour"}
    assert errors["colour"] == "is not a known field"
    with pytest.raises(ValueError) as info:
        CircuitBreakerConfig(failure_threshold=0, timeout=-1)
    assert str(info.value).startswith("failure_threshold must be")
    assert "timeout must be" in str(info.value)


def test_config_errors_rejects_non_mapping():
    assert list(config_errors([1, 2])) == ["config"]  # type: ignore[arg-type]


def test_config_errors_checks_against_a_base():
    base = CircuitBreakerConfig(timeout=100, max_timeout=1000)
    assert config_errors({"max_timeout": 50}, base=base) == {
        "max_timeout": "must be at least timeout (100), got 50"
    }
    assert config_errors({"timeout": 500}, base=base) == {}


def test_config_is_frozen():
    config = CircuitBreakerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.timeout = 5  # type: ignore[misc]


def test_to_dict_is_json_of_wire_fields_only():
    config = CircuitBreakerConfig(
        timeout=12, slow_call_duration=0.25, ignore_exceptions=(KeyError,)
    )
    data = config.to_dict()
    assert list(data) == list(WIRE_FIELDS)
    assert json.loads(json.dumps(data)) == data
    assert data["timeout"] == 12.0 and data["slow_call_duration"] == 0.25
    assert "ignore_exceptions" not in data


def test_from_dict_round_trip_and_defaults():
    config = CircuitBreakerConfig(failure_threshold=7, window_type="time", window_duration=5)
    assert CircuitBreakerConfig.from_dict(config.to_dict()) == config
    assert CircuitBreakerConfig.from_dict({}) == CircuitBreakerConfig()
    assert CircuitBreakerConfig.from_dict({"timeout": 3}).timeout == 3.0


def test_from_dict_takes_missing_fields_and_code_fields_from_base():
    def predicate(exc: BaseException) -> bool:
        return True

    base = CircuitBreakerConfig(
        failure_threshold=9, failure_exceptions=(OSError,), failure_predicate=predicate
    )
    config = CircuitBreakerConfig.from_dict({"timeout": 4}, base=base)
    assert config.failure_threshold == 9
    assert config.timeout == 4.0
    assert config.failure_exceptions == (OSError,)
    assert config.failure_predicate is predicate


def test_from_dict_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match=r"^colour is not a known field"):
        CircuitBreakerConfig.from_dict({"colour": "red"})
    with pytest.raises(ValueError, match=r"^minimum_calls must be"):
        CircuitBreakerConfig.from_dict({"minimum_calls": True})
    with pytest.raises(ValueError, match=r"^config must be a mapping"):
        CircuitBreakerConfig.from_dict([("timeout", 1)])  # type: ignore[arg-type]


def test_replace_validates():
    config = CircuitBreakerConfig()
    assert config.replace(timeout=5).timeout == 5.0
    assert config.timeout == 30.0
    with pytest.raises(ValueError, match=r"^half_open_max_calls must be"):
        config.replace(half_open_max_calls=0)


def test_exception_fields_are_validated_and_normalised():
    assert CircuitBreakerConfig(failure_exceptions=[OSError, KeyError]).failure_exceptions == (
        OSError,
        KeyError,
    )
    assert CircuitBreakerConfig(ignore_exceptions=KeyError).ignore_exceptions == (KeyError,)
    with pytest.raises(ValueError, match=r"^failure_exceptions must name at least one"):
        CircuitBreakerConfig(failure_exceptions=())
    with pytest.raises(ValueError, match=r"^failure_exceptions must contain exception types"):
        CircuitBreakerConfig(failure_exceptions=(OSError, int))
    with pytest.raises(ValueError, match=r"^ignore_exceptions must be a tuple"):
        CircuitBreakerConfig(ignore_exceptions="KeyError")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^failure_predicate must be a callable"):
        CircuitBreakerConfig(failure_predicate=3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ field specs


def test_field_specs_describe_every_wire_field_from_its_rule() -> None:
    from breakers.config import FieldSpec, field_specs, wire_schema

    specs = field_specs()
    assert tuple(s.name for s in specs) == WIRE_FIELDS
    assert all(isinstance(s, FieldSpec) and s.label and s.help for s in specs)
    by_name = {s.name: s for s in specs}
    threshold = by_name["failure_threshold"]
    assert (threshold.kind, threshold.low, threshold.high, threshold.unit) == (
        "int",
        1,
        1_000_000,
        "failures",
    )
    assert threshold.allowed == "1 to 1,000,000" and threshold.step == "1"
    assert by_name["timeout"].allowed == "more than 0, up to 86,400"
    assert by_name["timeout"].format(30.0) == "30 seconds"
    assert by_name["timeout"].format(1.0) == "1 second"
    assert by_name["success_threshold"].format(1) == "1 success"
    assert by_name["failure_threshold"].format(1) == "1 failure"
    assert by_name["minimum_calls"].format(1) == "1 call"
    assert by_name["timeout"].format(1.5) == "1.5 seconds"
    assert by_name["failure_rate_threshold"].format(0.35) == "0.35 (35 %)"
    assert by_name["window_type"].choices == ("count", "time")
    assert by_name["window_type"].allowed == "count or time"
    slow = by_name["slow_call_duration"]
    assert slow.nullable and slow.allowed.endswith("or empty for none")
    assert slow.format(None) == "none"
    # Defaults are the library's (max_timeout: None, it follows timeout).
    assert by_name["failure_threshold"].default == CircuitBreakerConfig().failure_threshold
    assert by_name["max_timeout"].default is None
    # The bounds are the validation rule's: the highest allowed value passes, one more fails.
    for spec in specs:
        if spec.kind == "int":
            assert spec.high is not None
            assert config_errors({spec.name: int(spec.high)}) == {}
            assert spec.name in config_errors({spec.name: int(spec.high) + 1})
    # The schema's descriptions are the same text.
    properties = wire_schema()["properties"]
    for spec in specs:
        assert spec.help in properties[spec.name]["description"]
        assert spec.label in properties[spec.name]["description"]


def test_field_spec_is_frozen() -> None:
    from breakers.config import field_specs

    with pytest.raises(dataclasses.FrozenInstanceError):
        field_specs()[0].label = "x"  # type: ignore[misc]
