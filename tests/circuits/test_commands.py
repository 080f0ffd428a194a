"""Token commands print a working token as their last word; bootstrap runs once."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from controlplane.circuits.auth import authenticate_agent, authenticate_api_token, hash_token
from controlplane.circuits.models import AgentToken, APIToken, AuditEvent, Service

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return err.getvalue() + out.getvalue()


def test_create_agent_token_registers_the_service_and_prints_the_token_last() -> None:
    output = _run("create_agent_token", "prediction")
    raw = output.split()[-1]
    assert raw.startswith("sya_") and len(raw) > 40
    token = authenticate_agent(raw)
    assert token is not None and token.service.name == "prediction"
    # Only the hash is stored.
    assert AgentToken.objects.get().token_hash == hash_token(raw) != raw
    assert AuditEvent.objects.filter(action="agent_token.create").count() == 1
    # A second token for the same service reuses it.
    second = _run("create_agent_token", "prediction").split()[-1]
    assert second != raw and Service.objects.count() == 1


def test_create_agent_token_refuses_a_bad_service_name() -> None:
    with pytest.raises(CommandError, match="service"):
        _run("create_agent_token", "bad name")


def test_create_api_token_authenticates_as_the_user(operator: User) -> None:
    raw = _run("create_api_token", "otto").split()[-1]
    assert raw.startswith("syu_")
    assert authenticate_api_token(raw).user == operator
    assert APIToken.objects.get().token_hash == hash_token(raw)


def test_create_api_token_for_unknown_user_fails() -> None:
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        _run("create_api_token", "ghost")


def test_revoked_tokens_do_not_authenticate(operator: User) -> None:
    raw = _run("create_api_token", "otto").split()[-1]
    APIToken.objects.update(revoked_at="2026-01-01T00:00:00Z")
    assert authenticate_api_token(raw) is None


def test_bootstrap_creates_one_admin_once() -> None:
    output = _run("bootstrap")
    password = output.split("password:")[1].split()[0]
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    assert admin.groups.filter(name="admin").exists()
    again = _run("bootstrap")
    assert "nothing to do" in again and "password" not in again
    assert User.objects.count() == 1
