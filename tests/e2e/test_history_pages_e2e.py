"""In headless Chromium against a real server: "older" on the audit log and on a
circuit's transitions shows the next rows. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.circuits import history
from tests.dashboard.browser import login, screenshot_dir
from tests.e2e.conftest import ControlPlaneProcess

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TIMES = [T0 + timedelta(seconds=i) for i in range(70)]


def _shown(page: Any, selector: str, attribute: str) -> list[str]:
    return [row.get_attribute(attribute) for row in page.locator(selector).all()]


def test_older_shows_the_next_rows_of_the_audit_log_and_of_a_circuit(
    own_control_plane: ControlPlaneProcess, browser: Any, viewer: User
) -> None:
    payments = history.circuit("checkout", "payments")
    history.transitions(payments, TIMES)
    history.audit_events(TIMES, payments.service)
    url = own_control_plane.url
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    login(page, url, "vera", "vera-pw-123!")

    page.goto(f"{url}/audit/?actor=otto")
    first = _shown(page, "tr[data-audit-event]", "data-audit-event")
    assert len(first) == 35
    page.goto(f"{url}/audit/")
    first = _shown(page, "tr[data-audit-event]", "data-audit-event")
    assert len(first) == 50 and page.locator("a[data-page='newer']").count() == 0
    page.click("a[data-page='older']")
    page.wait_for_url("**/audit/?before=*")
    second = _shown(page, "tr[data-audit-event]", "data-audit-event")
    assert len(second) == 20 and not set(first) & set(second)
    assert page.locator("a[data-page='older']").count() == 0
    assert page.locator("a[data-page='newer']").count() == 1
    page.screenshot(path=str(screenshot_dir() / "history-01-audit-older.png"), full_page=True)

    page.goto(f"{url}/circuits/{payments.pk}/")
    first = _shown(page, "tr[data-transition]", "data-transition")
    assert len(first) == 50
    page.click("#transitions a[data-page='older']")
    page.wait_for_url("**/circuits/*/?before=*#transitions")
    second = _shown(page, "tr[data-transition]", "data-transition")
    assert len(second) == 20 and not set(first) & set(second)
    assert page.locator("#transitions a[data-export='CSV']").count() == 1
    page.locator("#transitions").screenshot(
        path=str(screenshot_dir() / "history-02-circuit-transitions-older.png")
    )
    page.click("#transitions a[data-page='newer']")
    page.wait_for_url("**/circuits/*/?after=*#transitions")
    assert _shown(page, "tr[data-transition]", "data-transition") == first

    page.goto(f"{url}/audit/?before=nonsense")
    assert "Showing the newest rows." in page.inner_text("[data-error='history']")
    page.screenshot(path=str(screenshot_dir() / "history-03-audit-bad-position.png"))
