"""Shared fixtures: personas (viewer, operator, admin) with API clients, services and
agent tokens (one for the service under test, one for another service), and a builder
of sync bodies in the wire format of the agent protocol."""

import copy
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Service

SyncBody = Callable[..., dict[str, Any]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that commits (``transactional_db``, ``live_server``, a transactional
    ``django_db`` marker) restores the migrated data afterwards (serialized rollback).

    A flush without it re-runs post_migrate (the roles), and the next test that does
    restore serialized data would then insert those rows a second time: whether the suite
    passed would depend on the order of its tests.
    """
    for item in items:
        names = getattr(item, "fixturenames", None)
        if names is None or "django_db_serialized_rollback" in names:
            continue
        marker = item.get_closest_marker("django_db")
        committing = "transactional_db" in names or "live_server" in names
        if marker is not None and marker.kwargs.get("transaction"):
            committing = True
        if committing:
            names.append("django_db_serialized_rollback")


# Redis keys, channel layer groups and pub/sub channels are shared by every run on one
# Redis server (pub/sub even across databases): this run's, in this process and in the
# servers it starts (tests/e2e/conftest.py's server_env), live under a prefix of its own.
# (From the pid: this module may be imported twice, as a conftest and by the tests.)
RUN_REDIS_PREFIX = f"test-{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def _redis_prefix_of_this_run() -> Iterator[None]:
    """This process's channel layer, cache and change feed under the run's prefix, so
    that what it publishes reaches the servers it starts (and nobody else's)."""
    from django.conf import settings
    from django.test.utils import override_settings

    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if "CONFIG" in layers["default"]:
        layers["default"]["CONFIG"]["prefix"] = RUN_REDIS_PREFIX
    caches = copy.deepcopy(settings.CACHES)
    if "KEY_PREFIX" in caches["default"]:
        caches["default"]["KEY_PREFIX"] = RUN_REDIS_PREFIX
    with override_settings(
        SWITCHYARD_REDIS_PREFIX=RUN_REDIS_PREFIX, CHANNEL_LAYERS=layers, CACHES=caches
    ):
        yield


@pytest.fixture(scope="session", autouse=True)
def _test_database_drops_cleanly(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Close what tests left connected to the test database, so that it can be dropped.

    Connections opened by this process outside pytest-django's reach (server threads,
    the greenlets of the browser driver, the connection pool) would otherwise keep the
    test database busy at teardown. Runs just before the database is destroyed.
    """
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    if not str(connection.settings_dict["NAME"]).startswith("test_"):
        return  # no test of this run used the database: none was created
    import psycopg

    with django_db_blocker.unblock():
        # The pool first: left open, it reconnects to keep its minimum size.
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as direct:
            direct.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


def _persona(username: str, group: str) -> User:
    user = User.objects.create_user(username=username, password=f"{username}-pw-123!")
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def viewer(db: None) -> User:
    """A user in the viewer group (reads everything, changes nothing)."""
    return _persona("vera", "viewer")


@pytest.fixture
def operator(db: None) -> User:
    """A user in the operator group (force, release, edit thresholds)."""
    return _persona("otto", "operator")


@pytest.fixture
def admin(db: None) -> User:
    """A user in the admin group."""
    return _persona("ada", "admin")


@pytest.fixture
def api_client_for(db: None) -> Callable[[User | None], APIClient]:
    """Factory: an APIClient authenticated by a fresh personal API token of ``user``."""

    def make(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            _, raw = create_api_token(user)
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


@pytest.fixture
def viewer_api(api_client_for: Callable[[User | None], APIClient], viewer: User) -> APIClient:
    return api_client_for(viewer)


@pytest.fixture
def operator_api(api_client_for: Callable[[User | None], APIClient], operator: User) -> APIClient:
    return api_client_for(operator)


@pytest.fixture
def admin_api(api_client_for: Callable[[User | None], APIClient], admin: User) -> APIClient:
    return api_client_for(admin)


@pytest.fixture
def service(db: None) -> Service:
    """The service under test."""
    return Service.objects.create(name="checkout")


@pytest.fixture
def other_service(db: None) -> Service:
    """A second service, to show scoping."""
    return Service.objects.create(name="billing")


@pytest.fixture
def agent_token(service: Service) -> str:
    """A raw agent token (sya_...) of ``service``."""
    return create_agent_token(service)[1]


@pytest.fixture
def other_agent_token(other_service: Service) -> str:
    """A raw agent token of another service."""
    return create_agent_token(other_service)[1]


@pytest.fixture
def sync_body() -> SyncBody:
    """Factory of sync request bodies: sync_body(breakers=[...], transitions=[...], ...).

    Breakers are given as dicts with at least ``name``; the rest takes closed-state
    defaults. ``instance`` overrides fields of the instance block.
    """

    def make(
        *,
        breakers: list[dict[str, Any]] | None = None,
        transitions: list[dict[str, Any]] | None = None,
        instance: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "protocol": 1,
            "instance": {
                "id": "web-1",
                "hostname": "web",
                "pid": 4242,
                "started_at": "2026-11-27T10:00:00Z",
                "library_version": "0.1.0",
                **(instance or {}),
            },
            "breakers": [
                {
                    "state": "closed",
                    "config_version": 0,
                    "calls": 0,
                    "successes": 0,
                    "failures": 0,
                    "slow_calls": 0,
                    "rejected": 0,
                    "failure_rate": 0.0,
                    "trip_count": 0,
                    "state_since": "2026-11-27T10:00:00Z",
                    "retry_after": None,
                    **b,
                }
                for b in (breakers or [])
            ],
            "transitions": transitions or [],
            "dropped_transitions": 0,
        }
        body.update(extra)
        return body

    return make


@pytest.fixture
def post_sync(client: Any, agent_token: str) -> Callable[..., Any]:
    """post_sync(body, token=None): POST a JSON body to the sync endpoint."""

    def post(body: Any, *, token: str | None = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else json.dumps(body)
        return client.post(
            "/api/v1/agent/sync",
            data=data,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token or agent_token}",
        )

    return post
