"""The OpenAPI schema is the contract: real answers of a real server match it.

Schemathesis generates requests for every operation of the schema that
``/api/schema/`` serves (valid ones and invalid ones), sends them to the control plane
under uvicorn on 127.0.0.1 (so the agent routes are served by their ASGI fast paths,
as in production), authenticated (an operator API token, an agent token) and, a few
per operation, without a credential, and checks each answer: no 5xx, a status code
the schema lists, the content type it lists, and a body that matches its schema.
Generation is derandomized (the same requests on every run) and bounded: a few
examples per operation, no shrinking.

Every failure found is collected and reported at once (operation, check, request).
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from controlplane.alerts.models import Alert, AlertRule
from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Circuit, Service
from controlplane.core.schema import NO_NUL, NOT_BLANK
from tests.e2e.conftest import ControlPlaneProcess, server_env

pytestmark = pytest.mark.e2e

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Examples per operation and generation mode; the watch holds each request up to
# SWITCHYARD_WATCH_HOLD (1 s here) when nothing changes, so it gets fewer.
EXAMPLES = 12
EXAMPLES_OF = {"GET /api/v1/agent/watch": 4}
# Examples per operation sent without a credential.
ANONYMOUS_EXAMPLES = 3


def _request(
    server: ControlPlaneProcess, method: str, path: str, token: str, body: Any = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return response.status, json.loads(data) if data else None


@pytest.fixture
def fleet(transactional_db: None) -> Iterator[dict[str, Any]]:
    """A control plane with one object of every kind, and the two tokens."""
    server = ControlPlaneProcess(
        server_env(
            # DEBUG=0 as in production: Django's debug pages are not the API's answers.
            DEBUG="0",
            SECRET_KEY="contract-test-" + "k" * 40,
            SWITCHYARD_WATCH_HOLD="1",
        )
    )
    server.start()
    try:
        root = User.objects.create_superuser("root", password="root-pw-123!")
        api = create_api_token(root)[1]
        service = Service.objects.create(name="checkout")
        agent = create_agent_token(service)[1]
        now = timezone.now()
        sync = {
            "protocol": 1,
            "instance": {"id": "web-1", "hostname": "web", "pid": 7, "started_at": now.isoformat()},
            "breakers": [{"name": "db", "state": "open", "failure_rate": 0.6, "calls": 10}],
            "transitions": [
                {"id": 1, "breaker": "db", "from": "closed", "to": "open",
                 "at": now.isoformat(), "reason": "failure_rate"},
            ],
        }  # fmt: skip
        assert _request(server, "POST", "/api/v1/agent/sync", agent, sync)[0] == 200
        circuit = Circuit.objects.get(service=service, name="db")
        base = f"/api/v1/circuits/{circuit.pk}"
        assert (
            _request(
                server,
                "POST",
                f"{base}/override/",
                api,
                {"state": "forced_open", "reason": "drill", "expires_in": 600},
            )[0]
            == 201
        )
        assert (
            _request(
                server,
                "POST",
                f"{base}/config/",
                api,
                {"expected_version": 1, "config": {"failure_threshold": 8}},
            )[0]
            == 201
        )
        status, channel = _request(
            server,
            "POST",
            "/api/v1/channels/",
            api,
            {
                "name": "hook",
                "kind": "webhook",
                "config": {"url": "http://127.0.0.1:9/hook", "secret": "s" * 20},
            },
        )
        assert status == 201, channel
        status, rule = _request(
            server,
            "POST",
            "/api/v1/alert-rules/",
            api,
            {"name": "open", "kind": "open_too_long", "params": {}, "channels": [channel["id"]]},
        )
        assert status == 201, rule
        status, silence = _request(
            server,
            "POST",
            "/api/v1/silences/",
            api,
            {
                "service": service.pk,
                "reason": "drill",
                "expires_at": (now + timedelta(hours=1)).isoformat(),
            },
        )
        assert status == 201, silence
        alert = Alert.objects.create(
            rule=AlertRule.objects.get(pk=rule["id"]), circuit=circuit, status="firing",
            started_at=now, fired_at=now, created_at=now,
        )  # fmt: skip
        ids = {
            "/api/v1/circuits/": circuit.pk,
            "/api/v1/services/": service.pk,
            "/api/v1/instances/": circuit.snapshots.get().instance_id,
            "/api/v1/channels/": channel["id"],
            "/api/v1/alert-rules/": rule["id"],
            "/api/v1/silences/": silence["id"],
            "/api/v1/alerts/": alert.pk,
            "/api/v1/audit/": 1,
        }
        yield {"server": server, "api": api, "agent": agent, "ids": ids}
    finally:
        server.stop()


def _known_id(path: str, ids: dict[str, int]) -> int | None:
    return next((pk for prefix, pk in ids.items() if path.startswith(prefix)), None)


def _exercise(
    operation: Any,
    mode: GenerationMode,
    strategy: Any,
    base_url: str,
    headers: dict[str, str],
    failures: dict[tuple[str, str, str], str],
    *,
    examples: int,
    who: str,
) -> None:
    """Send ``strategy``'s cases for one operation; record each distinct failure."""

    @given(case=strategy)
    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        try:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=10)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = (operation.label, f"{mode.value}, {who}", failure.title)
                failures.setdefault(key, str(group)[:3000])

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): no negative case.
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_every_answer_matches_the_schema(fleet: dict[str, Any]) -> None:
    server = fleet["server"]
    schema = schemathesis.openapi.from_url(f"{server.url}/api/schema/?format=json")
    failures: dict[tuple[str, str, str], str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 38  # every operation of the schema, agent routes included

    for operation in operations:
        token = fleet["agent"] if operation.path.startswith("/api/v1/agent/") else fleet["api"]
        headers = {"Authorization": f"Bearer {token}"}
        known = _known_id(operation.path, fleet["ids"])
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            if "{id}" in operation.path and known is not None:
                # Half the cases address an object that exists, the others most likely not.
                known_case = operation.as_strategy(
                    generation_mode=mode, path_parameters={"id": str(known)}
                )
                strategy = st.one_of(strategy, known_case)
            examples = EXAMPLES_OF.get(operation.label, EXAMPLES)
            _exercise(
                operation, mode, strategy, server.url, headers, failures,
                examples=examples, who="authenticated",
            )  # fmt: skip
        # Without a credential: 401 in the error shape (and /healthz answers all the same).
        anonymous = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        _exercise(
            operation, GenerationMode.POSITIVE, anonymous,
            server.url, {}, failures, examples=ANONYMOUS_EXAMPLES, who="anonymous",
        )  # fmt: skip

    report = "\n\n".join(
        f"== {label} ({mode}): {title}\n{detail}"
        for (label, mode, title), detail in sorted(failures.items())
    )
    assert not failures, f"{len(failures)} disagreements with the schema:\n\n{report}"


# Routes meant to answer without a credential.
PUBLIC = {("/healthz", "get")}


def test_every_operation_requires_a_credential_but_the_public_ones(client: Any) -> None:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    schemes = schema["components"]["securitySchemes"]
    assert {"apiToken", "agentToken", "cookieAuth"} <= set(schemes)
    seen_public = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security", [])
            if (path, method) in PUBLIC:
                assert security in ([], [{}]), (path, method, security)
                seen_public.add((path, method))
                continue
            assert security, f"{method.upper()} {path} lists no security requirement"
            assert {} not in security, f"{method.upper()} {path} allows anonymous access"
            for requirement in security:
                assert set(requirement) <= set(schemes), (path, method, requirement)
            expected = "agentToken" if path.startswith("/api/v1/agent/") else "apiToken"
            assert any(expected in r for r in security), (path, method, security)
            assert "401" in operation["responses"], (path, method)
    assert seen_public == PUBLIC


@pytest.fixture
def openapi(client: Any) -> dict[str, Any]:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return dict(response.json())


def test_the_agent_routes_and_healthz_are_described(openapi: dict[str, Any]) -> None:
    sync = openapi["paths"]["/api/v1/agent/sync"]["post"]
    assert sync["requestBody"]["required"] is True
    body = sync["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["instance"]
    assert (
        body["properties"]["breakers"]["items"]["properties"]["config"]["additionalProperties"]
        is False
    )
    assert set(sync["responses"]) == {"200", "400", "401", "403", "413", "429", "503"}
    assert (
        "acked_through"
        in sync["responses"]["200"]["content"]["application/json"]["schema"]["required"]
    )
    watch = openapi["paths"]["/api/v1/agent/watch"]["get"]
    assert set(watch["responses"]) == {"200", "204", "400", "401", "429", "503"}
    assert "content" not in watch["responses"]["204"]
    assert set(openapi["paths"]["/healthz"]["get"]["responses"]) == {"200", "503"}


def test_every_error_answer_is_the_error_shape(openapi: dict[str, Any]) -> None:
    error = openapi["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"detail", "field", "reason", "errors"}
    conflict = openapi["components"]["schemas"]["ConflictError"]
    assert {"expected_version", "current_version"} <= set(conflict["required"])
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            assert "503" in operation["responses"], (method, path)
            for status, answer in operation["responses"].items():
                if status[0] not in "45" or path == "/healthz":
                    continue
                ref = answer["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[1] in ("Error", "ConflictError"), (method, path, status)
            if path.startswith("/api/v1/") and not path.startswith("/api/v1/agent/"):
                assert "404" in operation["responses"], (method, path)
    config = openapi["paths"]["/api/v1/circuits/{id}/config/"]["post"]["responses"]
    assert config["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/ConflictError")


@pytest.mark.django_db
def test_a_blank_reason_is_refused_as_the_schema_says(
    openapi: dict[str, Any], operator_api: Any, service: Service
) -> None:
    reason = openapi["components"]["schemas"]["ForceRequest"]["properties"]["reason"]
    assert reason["minLength"] == 1
    # Whitespace is trimmed before the blank check: the schema must refuse it too.
    assert re.search(reason["pattern"], "   ") is None
    assert re.search(reason["pattern"], " db failover ") is not None
    assert re.search(reason["pattern"], "db\x00failover") is None
    circuit = Circuit.objects.create(service=service, name="db")
    response = operator_api.post(
        f"/api/v1/circuits/{circuit.pk}/override/",
        {"state": "forced_open", "reason": "   "},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["field"] == "reason"
    for name in ("ChannelRequest", "AlertRuleRequest", "SilenceRequest"):
        field = "reason" if name == "SilenceRequest" else "name"
        assert openapi["components"]["schemas"][name]["properties"][field]["pattern"] == NOT_BLANK


def test_query_parameters_carry_the_bounds_the_filters_check(openapi: dict[str, Any]) -> None:
    audit = {
        p["name"]: p["schema"] for p in openapi["paths"]["/api/v1/audit/"]["get"]["parameters"]
    }
    assert audit["actor"]["maxLength"] == 150
    assert audit["actor"]["pattern"] == NO_NUL
    # Every registered action, the alerts app's too.
    assert {"override.force", "alert_rule.create"} <= set(audit["action"]["items"]["enum"])
    circuits = {
        p["name"]: p["schema"] for p in openapi["paths"]["/api/v1/circuits/"]["get"]["parameters"]
    }
    assert circuits["q"]["maxLength"] == 200


def test_nullable_answers_are_declared_nullable(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert schemas["ConfigVersion"]["properties"]["created_by"]["nullable"] is True
    assert schemas["AuditEvent"]["properties"]["service"]["nullable"] is True
    assert schemas["Override"]["properties"]["until"]["nullable"] is True
    end_reason = schemas["Override"]["properties"]["end_reason"]
    assert "" in schemas[end_reason["oneOf"][1]["$ref"].rsplit("/", 1)[1]]["enum"]
