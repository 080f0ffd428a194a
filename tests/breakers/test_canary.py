"""breakers.canary: the stable identity of a process and the canary selection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from breakers.canary import selected, selector_errors, stable_identity


def test_default_instance_ids_of_one_host_share_its_hostname() -> None:
    assert stable_identity("web-7f9c-1234-a1b2c3", "web-7f9c", 1234) == "web-7f9c"
    assert stable_identity("web-7f9c-999-00ff00", "web-7f9c", 999) == "web-7f9c"


def test_a_fixed_id_is_its_own_identity() -> None:
    assert stable_identity("checkout-blue-3", "web-7f9c", 1234) == "checkout-blue-3"
    assert stable_identity("checkout", None, None) == "checkout"


def test_a_forked_child_of_a_fixed_id_keeps_the_parents_id() -> None:
    assert stable_identity("checkout-blue-3-4321", "web-7f9c", 4321) == "checkout-blue-3"


def test_an_id_that_only_looks_like_a_default_one_is_kept() -> None:
    # another host's name, or another pid: not this process's default id
    assert stable_identity("db-1-1234-a1b2c3", "web-7f9c", 1234) == "db-1-1234-a1b2c3"
    assert stable_identity("web-7f9c-1234-a1b2c3", "web-7f9c", 77) == "web-7f9c-1234-a1b2c3"


def test_named_instances_are_exactly_the_canary() -> None:
    select = {"instances": ["web-1", "web-3"]}
    assert [selected(select, f"web-{n}") for n in range(5)] == [
        False,
        True,
        False,
        True,
        False,
    ]


def test_a_percentage_picks_about_that_share_and_the_salt_decides_which() -> None:
    identities = [f"host-{n}" for n in range(4000)]
    a = {i for i in identities if selected({"percent": 25, "salt": "a"}, i)}
    b = {i for i in identities if selected({"percent": 25, "salt": "b"}, i)}
    assert 900 <= len(a) <= 1100
    assert 900 <= len(b) <= 1100
    assert 150 <= len(a & b) <= 350  # independent: about a quarter of a quarter


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=20))
def test_a_larger_percentage_keeps_every_instance_a_smaller_one_picked(
    identity: str, salt: str
) -> None:
    picked = [selected({"percent": p, "salt": salt}, identity) for p in range(1, 100)]
    assert picked == sorted(picked)  # False ... False True ... True


@pytest.mark.parametrize(
    ("select", "field"),
    [
        ({"percent": 0, "salt": "s"}, "percent"),
        ({"percent": 100, "salt": "s"}, "percent"),
        ({"percent": True, "salt": "s"}, "percent"),
        ({"percent": 5}, "salt"),
        ({"percent": 5, "salt": "x" * 65}, "salt"),
        ({"instances": []}, "instances"),
        ({"instances": "web-1"}, "instances"),
        ({"instances": ["web-1", 3]}, "instances"),
        ([], "select"),
    ],
)
def test_a_bad_selector_is_refused_naming_the_field(select: object, field: str) -> None:
    assert field in selector_errors(select)
    with pytest.raises(ValueError, match=rf"select\.{field}"):
        selected(select, "web-1")  # type: ignore[arg-type]
