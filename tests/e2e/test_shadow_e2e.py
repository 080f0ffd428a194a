"""Shadow evaluation end to end, against the truth: two application processes run a
real breaker with the real agent against a control plane over HTTP; an operator starts
a candidate that trips on their known traffic; the API's figures and the circuit page's
sentence must equal what the breakers recorded of their candidates. Screenshots of the
page (wide and narrow, light and dark) go to artifacts/screenshots/shadow-*.png."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Circuit, Service
from tests.dashboard.browser import login, screenshot_dir
from tests.e2e.conftest import ROOT, ControlPlaneProcess, wait_for
from tests.e2e.test_a11y_e2e import axe, describe, horizontal_overflow
from tests.e2e.test_csp_e2e import Watched

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PROCESSES = 2
#: The candidate: opens on 3 failures in a row, half-opens after 1 s, one probe closes it.
CANDIDATE = {"failure_threshold": 3, "timeout": 1.0, "success_threshold": 1}
#: What each process's sequence makes the candidate do (tests/e2e/shadow_app.py).
EXPECTED = {"opened": 2, "half_opened": 1, "closed": 1, "rejected": 2 + 30 + 10, "unobserved": 0}


def test_the_page_shows_what_the_candidates_would_have_done(
    control_plane: ControlPlaneProcess, tmp_path: Path, operator: User, browser: Any
) -> None:
    service = Service.objects.create(name="shop")
    token = create_agent_token(service)[1]
    api_token = create_api_token(operator)[1]
    apps = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.shadow_app",
                control_plane.url,
                token,
                str(tmp_path / f"app-{n}.json"),
            ],
            cwd=ROOT,
        )
        for n in range(PROCESSES)
    ]
    try:
        assert wait_for(lambda: Circuit.objects.filter(service=service, name="db").exists(), 30)
        circuit = Circuit.objects.get(service=service, name="db")
        url = f"/api/v1/circuits/{circuit.pk}/shadow/"
        status, started = control_plane.request(
            "POST", url, {"config": CANDIDATE, "reason": "tighter threshold"}, token=api_token
        )
        assert status == 201, started
        for app in apps:
            assert app.wait(120) == 0
    finally:
        for app in apps:
            if app.poll() is None:
                app.kill()
    truth = [json.loads((tmp_path / f"app-{n}.json").read_text()) for n in range(PROCESSES)]
    for t in truth:
        # Each breaker's candidate did what its config does on this sequence, and the
        # live breaker rejected nothing.
        assert {k: t[k] for k in EXPECTED} == EXPECTED, t
        assert t["live_rejected"] == 0
        assert t["transitions"] == [
            ["closed", "open", "failure_threshold"],
            ["open", "half_open", "timeout_elapsed"],
            ["half_open", "closed", "probes_succeeded"],
            ["closed", "open", "failure_threshold"],
        ]
    total = {k: sum(t[k] for t in truth) for k in EXPECTED}

    def figures() -> dict[str, Any]:
        status, body = control_plane.request("GET", url, token=api_token)
        assert status == 200, body
        return dict(body["shadow"])

    # The last reports are written with the group commit's next batch.
    assert wait_for(lambda: {k: figures()[k] for k in EXPECTED} == total, timeout=15), (
        figures(),
        total,
    )
    assert len(figures()["transitions"]) == 4 * PROCESSES

    base = control_plane.url
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    login(page, base, "otto", "otto-pw-123!")
    page.goto(f"{base}/circuits/{circuit.pk}/#shadow")
    sentence = page.text_content("[data-field=shadow-sentence]")
    assert sentence is not None
    # "Would have opened 4 times in the 1 min since it started, rejecting 84 calls."
    assert sentence.startswith(f"Would have opened {total['opened']} times in the ")
    assert sentence.endswith(f", rejecting {total['rejected']:,} calls.")
    assert page.text_content("[data-field=shadow-opened]") == str(total["opened"])
    assert page.text_content("[data-field=shadow-rejected]") == f"{total['rejected']:,}"
    page.wait_for_function("() => window.switchyardShadow && window.switchyardShadow.points > 0")
    # The charts draw what the API measured: the candidate's would-be rejections per
    # step add up to the total (rates times the step's seconds, the last step partial).
    drawn = page.evaluate(
        "() => { const s = window.switchyardShadow.body.series;"
        " return {opened: s.candidate_opened.reduce((a, b) => a + b, 0),"
        " live: s.live_opened.reduce((a, b) => a + b, 0)}; }"
    )
    assert drawn == {"opened": total["opened"], "live": 0}
    context.close()

    # Every width and scheme: the section fits a phone, passes axe, breaks no CSP rule.
    for width in (1400, 390):
        for scheme in ("light", "dark"):
            watched = Watched(browser, width=width)
            p = watched.context.new_page()
            p.emulate_media(color_scheme=scheme)
            login(p, base, "otto", "otto-pw-123!")
            p.goto(f"{base}/circuits/{circuit.pk}/")
            p.wait_for_function(
                "() => window.switchyardShadow && window.switchyardShadow.points > 0"
            )
            if width == 390:
                assert horizontal_overflow(p) is None, horizontal_overflow(p)
            found = axe(p)
            assert not found, describe(found)
            assert watched.violations(p) == [] and watched.errors() == []
            p.locator("#shadow").screenshot(
                path=str(screenshot_dir() / f"shadow-{width}-{scheme}.png")
            )
            watched.close()
