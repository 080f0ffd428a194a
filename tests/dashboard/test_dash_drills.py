"""The circuit page's drills section (dashboard/drills.py, _drills.html): the form for
operators only, behind CSRF, errors beside their fields, the running drill and its end,
the finished drills' outcomes."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from controlplane.circuits.drills import complete_due_drills, start_drill
from controlplane.circuits.models import AuditEvent, Drill

pytestmark = pytest.mark.django_db


def _page(client: Client, circuit: Any) -> str:
    answer = client.get(f"/circuits/{circuit.pk}/")
    assert answer.status_code == 200
    return answer.content.decode()


def test_an_operator_starts_a_drill_from_the_form(as_operator: Client, fleet: Any) -> None:
    db = fleet["db"]
    html = _page(as_operator, db)
    form = html[html.index('class="drill-form"') :]
    form = form[: form.index("</form>")]
    assert form.count('name="instances"') == 3
    answer = as_operator.post(
        f"/circuits/{db.pk}/drills",
        {"instances": ["web-2"], "duration": "60", "reason": "game day", "share": "10"},
    )
    assert answer.status_code == 302 and answer["Location"].endswith("#drills")
    drill = Drill.objects.get()
    assert drill.instances == ["web-2"] and drill.share is None  # named ones win
    html = _page(as_operator, db)
    assert "Drill" in html and "data-drill-countdown" in html and "End drill now" in html
    assert 'class="drill-form"' not in html  # one at a time


def test_errors_sit_beside_their_fields(as_operator: Client, fleet: Any) -> None:
    db = fleet["db"]
    answer = as_operator.post(
        f"/circuits/{db.pk}/drills", {"share": "50", "duration": "999999", "reason": "r"}
    )
    assert answer.status_code == 400
    assert 'data-error-for="duration"' in answer.content.decode()
    answer = as_operator.post(f"/circuits/{db.pk}/drills", {"duration": "5", "reason": "r"})
    assert answer.status_code == 400
    assert 'data-error-for="share"' in answer.content.decode()
    assert not Drill.objects.exists()


def test_a_second_drill_is_a_409_with_the_reason(
    as_operator: Client, operator: User, fleet: Any
) -> None:
    db = fleet["db"]
    start_drill(db, reason="first", duration=60, share=50, user=operator)
    answer = as_operator.post(
        f"/circuits/{db.pk}/drills", {"share": "50", "duration": "30", "reason": "r"}
    )
    assert answer.status_code == 409 and "is running on this circuit" in answer.content.decode()


def test_viewers_see_drills_but_cannot_start_or_end_one(
    as_viewer: Client, operator: User, fleet: Any
) -> None:
    db = fleet["db"]
    assert 'class="drill-form"' not in _page(as_viewer, db)
    refused = as_viewer.post(f"/circuits/{db.pk}/drills", {"share": "50", "duration": "5"})
    assert refused.status_code == 403
    drill = start_drill(db, reason="r", duration=60, share=50, user=operator)
    html = _page(as_viewer, db)
    assert "data-drill-countdown" in html and "End drill now" not in html
    assert as_viewer.post(f"/circuits/{db.pk}/drills/{drill.pk}/end").status_code == 403
    drill.refresh_from_db()
    assert drill.ended_at is None


def test_the_forms_need_csrf(operator: User, fleet: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    db = fleet["db"]
    body = {"share": "50", "duration": "5", "reason": "r"}
    assert client.post(f"/circuits/{db.pk}/drills", body).status_code == 403
    drill = start_drill(db, reason="r", duration=60, share=50, user=operator)
    assert client.post(f"/circuits/{db.pk}/drills/{drill.pk}/end").status_code == 403
    assert Drill.objects.filter(ended_at__isnull=True).count() == 1


def test_ending_early_then_the_outcome_is_listed(
    as_operator: Client, operator: User, fleet: Any
) -> None:
    db = fleet["db"]
    drill = start_drill(db, reason="game day", duration=60, share=100, user=operator)
    answer = as_operator.post(f"/circuits/{db.pk}/drills/{drill.pk}/end", {"reason": "done"})
    assert answer.status_code == 302
    drill.refresh_from_db()
    assert drill.end_reason == "stopped" and drill.ended_by == operator
    assert AuditEvent.objects.filter(action="drill.end", reason="done").count() == 1
    html = _page(as_operator, db)
    assert f'<tr data-drill="{drill.pk}">' in html
    assert "ended early by an operator" in html and "3 of 3" in html
    again = start_drill(db, reason="again", duration=1, share=34, user=operator)
    complete_due_drills(now=again.ends_at)
    html = _page(as_operator, db)
    assert "ran to its end" in html and "1 of 3" in html
