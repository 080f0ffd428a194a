"""Sign-in lockout: repeated failed passwords for one username from one address are
refused (429) for a cool-off period; API and agent tokens are not affected."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.utils import timezone

pytestmark = pytest.mark.django_db


def _sign_in(client: Client, username: str, password: str, path: str = "/login/") -> int:
    return client.post(path, {"username": username, "password": password}).status_code


@override_settings(AXES_FAILURE_LIMIT=3)
def test_repeated_failures_lock_the_username_out_then_it_cools_off(operator: User) -> None:
    client = Client()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        assert [_sign_in(client, "otto", "wrong") for _ in range(3)] == [200, 200, 429]
        # Locked: even the right password is refused, on the admin's sign-in too.
        assert _sign_in(client, "otto", "otto-pw-123!") == 429
        assert _sign_in(client, "otto", "otto-pw-123!", "/admin/login/") == 429
        # Another username from the same address is not locked.
        assert _sign_in(client, "vera", "wrong") == 200
        clock.shift(timedelta(minutes=16))
        assert _sign_in(client, "otto", "otto-pw-123!") == 302


@override_settings(AXES_FAILURE_LIMIT=3)
def test_a_successful_sign_in_resets_the_count(operator: User) -> None:
    client = Client()
    assert [_sign_in(client, "otto", "wrong") for _ in range(2)] == [200, 200]
    assert _sign_in(client, "otto", "otto-pw-123!") == 302
    Client().post("/logout/")
    other = Client()
    assert [_sign_in(other, "otto", "wrong") for _ in range(2)] == [200, 200]
    assert _sign_in(other, "otto", "otto-pw-123!") == 302


@override_settings(AXES_FAILURE_LIMIT=2)
def test_a_locked_out_user_keeps_using_api_tokens(operator: User, operator_api) -> None:
    client = Client()
    assert [_sign_in(client, "otto", "wrong") for _ in range(2)] == [200, 429]
    assert operator_api.get("/api/v1/circuits/").status_code == 200


@override_settings(AXES_FAILURE_LIMIT=3)
def test_failures_at_the_admin_sign_in_lock_out_both_sign_ins() -> None:
    User.objects.create_user("root", password="root-pw-123!", is_staff=True, is_superuser=True)
    client = Client()
    assert _sign_in(client, "root", "root-pw-123!", "/admin/login/") == 302
    client = Client()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        failures = [_sign_in(client, "root", "wrong", "/admin/login/") for _ in range(3)]
        assert failures == [200, 200, 429]
        assert _sign_in(client, "root", "root-pw-123!", "/admin/login/") == 429
        assert _sign_in(client, "root", "root-pw-123!") == 429
        clock.shift(timedelta(minutes=16))
        assert _sign_in(client, "root", "root-pw-123!", "/admin/login/") == 302
