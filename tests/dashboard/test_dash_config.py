"""The circuit page's config form: fields described by breakers.config, errors beside
them, the confirmation with the diff and the estimate, and the write after it."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from breakers.config import CircuitBreakerConfig, field_specs
from controlplane.circuits.models import AuditEvent, Circuit, ConfigVersion, Traffic10s
from controlplane.circuits.operations import create_config_version

pytestmark = pytest.mark.django_db


def config_form(circuit: Circuit, **changes: str) -> dict[str, str]:
    """The form as the page posts it: every field of the current version, then changes."""
    current = circuit.config_versions.order_by("-version").first()
    assert current is not None
    form = {k: "" if v is None else str(v) for k, v in current.config.items()}
    form.update({"expected_version": str(current.version), "reason": "tune", **changes})
    return form


def field_block(html: str, name: str) -> str:
    """One field of the config form: label, control, error, explanation, newer value."""
    pattern = rf'<div class="config-field[^"]*" data-config-field="{name}">.*?config-help.*?</div>'
    match = re.search(pattern, html, re.S)
    assert match, f"no field {name}"
    return match.group(0)


def versions(circuit: Circuit) -> int:
    return ConfigVersion.objects.filter(circuit=circuit).count()


# ------------------------------------------------------------------ the form


def test_every_field_shows_label_unit_explanation_and_range_from_the_library(
    as_operator: Client, fleet: Any
) -> None:
    html = as_operator.get(f"/circuits/{fleet['payments'].pk}/").content.decode()
    for spec in field_specs():
        block = field_block(html, spec.name)
        assert f'<label for="cfg-{spec.name}">' in block
        assert spec.label in block and spec.help in block
        assert f"Allowed: {spec.allowed}." in block
        if spec.unit:
            assert f"({spec.unit})" in block
        # The explanation is the control's accessible description.
        assert f'aria-describedby="cfg-{spec.name}-help"' in block
        assert f'id="cfg-{spec.name}-help"' in block
        assert "aria-invalid" not in block
    threshold = field_block(html, "failure_threshold")
    assert re.search(r'type="number"[^>]* min="1" max="1000000" step="1"', threshold)
    timeout = field_block(html, "timeout")
    assert re.search(r'min="0" max="86400" step="any"', timeout)
    rate = field_block(html, "failure_rate_threshold")
    assert 'max="1"' in rate and "(fraction)" in rate


def test_enums_are_selects_and_nullable_fields_are_optional(as_operator, fleet) -> None:
    html = as_operator.get(f"/circuits/{fleet['payments'].pk}/").content.decode()
    window_type = field_block(html, "window_type")
    assert '<select id="cfg-window_type" name="window_type"' in window_type
    assert '<option value="count" selected>count</option>' in window_type
    assert '<option value="time">time</option>' in window_type
    slow = field_block(html, "slow_call_duration")
    assert '<span class="config-optional">optional</span>' in slow
    assert 'placeholder="none"' in slow and "or empty for none" in slow
    assert "config-optional" not in field_block(html, "timeout")


def test_viewer_sees_the_fields_read_only_without_a_form(as_viewer: Client, fleet) -> None:
    html = as_viewer.get(f"/circuits/{fleet['payments'].pk}/").content.decode()
    section = html[html.index('id="config"') : html.index("Version history")]
    assert "<form" not in section and "<button" not in section and "<select" not in section
    assert section.count(" readonly") == len(field_specs())
    assert "Thresholds (read only)" in section
    assert "Open timeout" in section  # the labels and explanations all the same


def test_errors_sit_beside_their_fields_and_describe_the_input(as_operator, fleet) -> None:
    payments = fleet["payments"]
    form = config_form(payments, failure_threshold="0", timeout="30", window_type="hours")
    response = as_operator.post(f"/circuits/{payments.pk}/config", form)
    assert response.status_code == 400
    html = response.content.decode()
    block = field_block(html, "failure_threshold")
    assert 'aria-invalid="true"' in block
    assert 'aria-describedby="cfg-failure_threshold-help cfg-failure_threshold-error"' in block
    assert re.search(
        r'id="cfg-failure_threshold-error" data-error-for="failure_threshold">'
        r"must be an integer between 1",
        block,
    )
    assert 'data-error-for="window_type"' in field_block(html, "window_type")
    assert "aria-invalid" not in field_block(html, "timeout")
    assert 'value="0"' in block  # the typed value is kept
    # The keyboard lands on the first field to fix.
    assert html.count(" autofocus") == 1 and " autofocus" in block
    assert "2 fields to fix" in html
    assert versions(payments) == 1


def test_an_empty_required_number_is_an_error_not_a_crash(as_operator, fleet) -> None:
    payments = fleet["payments"]
    response = as_operator.post(
        f"/circuits/{payments.pk}/config", config_form(payments, timeout="")
    )
    assert response.status_code == 400
    assert 'data-error-for="timeout">must be a number<' in response.content.decode()


# ------------------------------------------------------------------ confirmation


def test_review_shows_only_the_changed_fields_with_units_and_saves_nothing(
    as_operator: Client, fleet: Any
) -> None:
    payments = fleet["payments"]
    form = config_form(
        payments, failure_threshold="9", failure_rate_threshold="0.25", reason="fewer trips"
    )
    response = as_operator.post(f"/circuits/{payments.pk}/config", form)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Save checkout/payments config as v2?" in html
    rows = re.findall(r'<tr data-config-field="(\w+)">', html)
    assert rows == ["failure_threshold", "failure_rate_threshold"]
    old = payments.current_config.config
    assert f"was </span>{old['failure_threshold']} failures</del>" in html
    assert "becomes </span>9 failures</ins>" in html
    assert "becomes </span>0.25 (25 %)</ins>" in html
    assert '<th scope="row">' in html and '<th scope="col">' in html
    assert "“fewer trips”" in html
    # The values travel in hidden fields, with the version they are based on and CSRF.
    assert '<input type="hidden" name="failure_threshold" value="9">' in html
    assert '<input type="hidden" name="expected_version" value="1">' in html
    assert (
        '<button type="submit" name="confirm" value="1" class="primary">Save as v2</button>' in html
    )
    assert '<button type="submit" name="back" value="1">Back to edit</button>' in html
    assert "csrfmiddlewaretoken" in html
    assert versions(payments) == 1


def test_no_change_is_refused_and_creates_no_version(as_operator, fleet) -> None:
    payments = fleet["payments"]
    for extra in ({}, {"confirm": "1"}):
        response = as_operator.post(
            f"/circuits/{payments.pk}/config", config_form(payments, **extra)
        )
        assert response.status_code == 400
        assert (
            "No change: these are the values of v1. Nothing to save." in response.content.decode()
        )
    assert versions(payments) == 1


def test_confirm_creates_exactly_one_version_with_who_and_why(as_operator, fleet) -> None:
    payments = fleet["payments"]
    form = config_form(payments, timeout="12.5", window_type="time", reason="faster probes")
    review = as_operator.post(f"/circuits/{payments.pk}/config", form).content.decode()
    # Post back what the confirmation page holds, as its button does.
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', review))
    hidden.pop("csrfmiddlewaretoken", None)
    done = as_operator.post(f"/circuits/{payments.pk}/config", {**hidden, "confirm": "1"})
    assert done.status_code == 302 and done["Location"] == f"/circuits/{payments.pk}/#config"
    assert versions(payments) == 2
    new = ConfigVersion.objects.get(circuit=payments, version=2)
    assert new.config["timeout"] == 12.5 and new.config["window_type"] == "time"
    assert new.created_by.username == "otto" and new.reason == "faster probes"
    assert AuditEvent.objects.filter(action="config.create", reason="faster probes").count() == 1
    # The same confirmation posted again is stale now: 409, still one new version.
    again = as_operator.post(f"/circuits/{payments.pk}/config", {**hidden, "confirm": "1"})
    assert again.status_code == 409 and versions(payments) == 2
    html = as_operator.get(f"/circuits/{payments.pk}/").content.decode()
    assert '<h2 id="config-title">Config v2</h2>' in html


def test_back_to_edit_keeps_the_typed_values(as_operator: Client, fleet: Any) -> None:
    payments = fleet["payments"]
    form = config_form(payments, failure_threshold="9", window_type="time", reason="try")
    response = as_operator.post(f"/circuits/{payments.pk}/config", {**form, "back": "1"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'value="9"' in field_block(html, "failure_threshold")
    assert '<option value="time" selected>time</option>' in field_block(html, "window_type")
    assert re.search(r'id="cfg-reason"[^>]* value="try"', html)
    assert "data-error-for" not in html
    assert versions(payments) == 1


def test_a_circuit_without_a_version_is_reviewed_against_the_defaults(
    as_operator: Client, fleet: Any
) -> None:
    bare = Circuit.objects.create(service=fleet["payments"].service, name="bare")
    form = {s.name: "" if s.default is None else str(s.default) for s in field_specs()}
    form.update(max_timeout="300", expected_version="0", failure_threshold="3")
    html = as_operator.post(f"/circuits/{bare.pk}/config", form).content.decode()
    assert "Changes from the library defaults (no version yet) to v1" in html
    assert re.findall(r'<tr data-config-field="(\w+)">', html) == ["failure_threshold"]
    done = as_operator.post(f"/circuits/{bare.pk}/config", {**form, "confirm": "1"})
    assert done.status_code == 302
    assert ConfigVersion.objects.get(circuit=bare).config["failure_threshold"] == 3


def test_admin_can_save_too(admin: User, login: Any, fleet: Any) -> None:
    payments = fleet["payments"]
    client = login(admin)
    form = config_form(payments, failure_threshold="8")
    assert client.post(f"/circuits/{payments.pk}/config", form).status_code == 200
    assert (
        client.post(f"/circuits/{payments.pk}/config", {**form, "confirm": "1"}).status_code == 302
    )
    assert versions(payments) == 2


def test_viewer_cannot_post_either_step(as_viewer: Client, fleet: Any) -> None:
    payments = fleet["payments"]
    form = config_form(payments, failure_threshold="9")
    assert as_viewer.post(f"/circuits/{payments.pk}/config", form).status_code == 403
    assert (
        as_viewer.post(f"/circuits/{payments.pk}/config", {**form, "confirm": "1"}).status_code
        == 403
    )
    assert (
        as_viewer.post(f"/circuits/{payments.pk}/config", {**form, "back": "1"}).status_code == 403
    )
    assert versions(payments) == 1


def test_the_confirmation_needs_csrf(operator: User, fleet: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    payments = fleet["payments"]
    form = {**config_form(payments, failure_threshold="9"), "confirm": "1"}
    assert client.post(f"/circuits/{payments.pk}/config", form).status_code == 403
    assert versions(payments) == 1


def test_an_edit_that_lands_between_review_and_confirm_is_a_409(
    as_operator: Client, fleet: Any, operator: User
) -> None:
    payments = fleet["payments"]
    form = config_form(payments, failure_threshold="7")
    assert as_operator.post(f"/circuits/{payments.pk}/config", form).status_code == 200
    create_config_version(payments, {"failure_threshold": 4}, expected_version=1, user=operator)
    response = as_operator.post(f"/circuits/{payments.pk}/config", {**form, "confirm": "1"})
    assert response.status_code == 409
    html = response.content.decode()
    assert "version 2 is now current" in html
    assert 'name="expected_version" value="2"' in html
    assert "Version 2: 4 failures" in field_block(html, "failure_threshold")
    assert 'value="7"' in field_block(html, "failure_threshold")  # the edit is kept
    assert versions(payments) == 2
    # Reviewing it again against v2 works.
    again = as_operator.post(
        f"/circuits/{payments.pk}/config", config_form(payments, failure_threshold="7")
    )
    assert again.status_code == 200 and "Save as v3" in again.content.decode()


# ------------------------------------------------------------------ the estimate


def outage(circuit: Circuit, now: datetime) -> None:
    """Ten minutes ago: 10 healthy buckets, 6 failing whole, 20 healthy (10 calls each)."""
    start = math.floor(now.timestamp() / 10) * 10 - 600
    for i, failures in enumerate([0] * 10 + [10] * 6 + [0] * 20):
        Traffic10s.objects.create(
            circuit=circuit,
            bucket=datetime.fromtimestamp(start + 10 * i, UTC),
            calls=10,
            successes=10 - failures,
            failures=failures,
        )


def test_the_confirmation_estimates_the_last_hour_for_both_configs(as_operator, fleet) -> None:
    payments = fleet["payments"]
    # The current version holds the library's defaults (30 s open timeout).
    assert payments.current_config.config == CircuitBreakerConfig().to_dict()
    outage(payments, timezone.now())
    # A long-ago outage is outside the hour and changes nothing.
    Traffic10s.objects.create(
        circuit=payments, bucket=timezone.now() - timedelta(hours=2), calls=50, failures=50
    )
    form = config_form(payments, timeout="5", max_timeout="300")
    html = as_operator.post(f"/circuits/{payments.pk}/config", form).content.decode()
    assert (
        "With these thresholds the circuit would have opened 6 times in the last hour "
        "(current: 2)." in html
    )
    assert 'data-opens="6" data-current-opens="2"' in html
    assert "replaying 360 calls in 36 ten-second buckets" in html
    assert "An estimate: the circuit's 10-second traffic totals" in html


def test_without_traffic_the_confirmation_says_so(as_operator: Client, fleet: Any) -> None:
    payments = fleet["payments"]
    html = as_operator.post(
        f"/circuits/{payments.pk}/config", config_form(payments, timeout="5")
    ).content.decode()
    assert "No traffic was reported for this circuit in the last hour" in html
    assert "would have opened" not in html and "data-opens" not in html
