"""The abstract bearer token both token models build on."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.utils import timezone

from controlplane.circuits.auth import authenticate_agent, authenticate_api_token
from controlplane.circuits.auth import create_api_token as new_api_token
from controlplane.circuits.models import AgentToken, APIToken, Service
from controlplane.core.models import LAST_USED_RESOLUTION_SECONDS, BearerToken

pytestmark = pytest.mark.django_db

SHARED = {"label", "prefix", "token_hash", "created_at", "last_used_at", "revoked_at"}


def test_both_token_models_have_the_base_fields() -> None:
    base = {f.name for f in BearerToken._meta.get_fields()}
    assert base == SHARED
    for model in (AgentToken, APIToken):
        assert issubclass(model, BearerToken)
        assert {f.name for f in model._meta.get_fields()} >= SHARED
    assert AgentToken._meta.get_field("token_hash").unique


def test_last_use_is_written_once_per_resolution(service: Service, agent_token: str) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        first = authenticate_agent(agent_token).last_used_at
    with time_machine.travel(start + timedelta(seconds=LAST_USED_RESOLUTION_SECONDS - 1)):
        authenticate_agent(agent_token)
    assert AgentToken.objects.get().last_used_at == first
    later = start + timedelta(seconds=LAST_USED_RESOLUTION_SECONDS)
    with time_machine.travel(later, tick=False):
        authenticate_agent(agent_token)
    assert AgentToken.objects.get().last_used_at == later


def test_revoked_token_is_not_active_and_does_not_authenticate(db: None) -> None:
    token, raw = new_api_token(User.objects.create_user("u"))
    assert token.is_active and authenticate_api_token(raw) is not None
    APIToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    token.refresh_from_db()
    assert not token.is_active and authenticate_api_token(raw) is None
