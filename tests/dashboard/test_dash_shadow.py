"""The circuit page's shadow evaluation: started from the config form's values, the
figures in one sentence, stopped from the page; viewers see it but cannot act."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from controlplane.circuits.models import AuditEvent, Circuit, ShadowBucket, ShadowEvaluation
from tests.dashboard.test_dash_config import config_form

pytestmark = pytest.mark.django_db


def test_an_operator_evaluates_the_typed_values_in_shadow(as_operator: Client, fleet: Any) -> None:
    circuit: Circuit = fleet["payments"]
    form = config_form(circuit, failure_threshold="2", shadow="start")
    response = as_operator.post(f"/circuits/{circuit.pk}/shadow", form)
    assert response.status_code == 302 and response["Location"].endswith("#shadow")
    evaluation = ShadowEvaluation.objects.get()
    assert evaluation.config["failure_threshold"] == 2 and evaluation.config_version == 0
    assert AuditEvent.objects.filter(action="shadow.start", actor_name="otto").exists()
    ShadowBucket.objects.create(
        evaluation=evaluation,
        bucket=evaluation.created_at.replace(microsecond=0),
        rejected=1240,
        opened=3,
    )
    html = as_operator.get(f"/circuits/{circuit.pk}/").content.decode()
    sentence = re.search(r'data-field="shadow-sentence">([^<]*)<', html)
    assert sentence is not None
    assert (
        sentence.group(1)
        == "Would have opened 3 times in the 1 min since it started, rejecting 1,240 calls."
    )
    assert 'data-field="shadow-rejected">1,240<' in html
    assert "Stop the evaluation" in html
    assert re.search(
        r'<th scope="row">Consecutive failures</th><td data-label="Live">\d+ failures</td>'
        r'<td data-label="Candidate">2 failures</td>',
        html,
    )


def test_a_bad_value_is_shown_beside_its_field_and_nothing_starts(
    as_operator: Client, fleet: Any
) -> None:
    circuit = fleet["payments"]
    form = config_form(circuit, failure_threshold="0", shadow="start")
    response = as_operator.post(f"/circuits/{circuit.pk}/shadow", form)
    assert response.status_code == 400
    assert 'data-error-for="failure_threshold"' in response.content.decode()
    assert not ShadowEvaluation.objects.exists()


def test_stopping_from_the_page(as_operator: Client, fleet: Any) -> None:
    circuit = fleet["payments"]
    as_operator.post(f"/circuits/{circuit.pk}/shadow", config_form(circuit, shadow="start"))
    response = as_operator.post(
        f"/circuits/{circuit.pk}/shadow", {"shadow": "stop", "reason": "done"}
    )
    assert response.status_code == 302
    assert ShadowEvaluation.objects.get().ended_at is not None
    html = as_operator.get(f"/circuits/{circuit.pk}/").content.decode()
    assert "No candidate config is being evaluated." in html


def test_viewers_see_the_evaluation_but_cannot_start_or_stop_it(
    as_viewer: Client, as_operator: Client, fleet: Any
) -> None:
    circuit = fleet["payments"]
    form = config_form(circuit, failure_threshold="2", shadow="start")
    assert as_viewer.post(f"/circuits/{circuit.pk}/shadow", form).status_code == 403
    assert not ShadowEvaluation.objects.exists()
    as_operator.post(f"/circuits/{circuit.pk}/shadow", form)
    assert as_viewer.post(f"/circuits/{circuit.pk}/shadow", {"shadow": "stop"}).status_code == 403
    assert ShadowEvaluation.objects.get().ended_at is None
    html = as_viewer.get(f"/circuits/{circuit.pk}/").content.decode()
    assert 'data-field="shadow-sentence"' in html
    assert "Stop the evaluation" not in html and "Evaluate in shadow" not in html
