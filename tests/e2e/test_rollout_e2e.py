"""A canary rollout end to end: four application processes run a real breaker under the
real agent against a real control plane (uvicorn, PostgreSQL, Redis). An operator starts
a canary of new thresholds on two named instances from the circuit page in Chromium;
exactly those two run the new version within one sync interval. Then every process
makes calls of known latencies and failures and trips its breaker if its config lets it;
the page's figures for both groups (calls, failure %, p99, trips) must be those of the
calls made. Roll back is one button. Screenshots: artifacts/screenshots/rollout-*.png."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from breakers.agent import Agent
from controlplane.circuits.auth import create_agent_token
from controlplane.circuits.models import AuditEvent, Circuit, Rollout, Service, Snapshot
from dashboard.formats import latency, pct
from tests.dashboard.browser import CHROMIUM, login, screenshot_dir
from tests.e2e.conftest import ROOT, ControlPlaneProcess, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's {CHROMIUM}"),
]

IDS = [f"shop-{n}" for n in range(4)]
CANARY = ["shop-1", "shop-3"]
CALLS = 200  # per process, about 10-25 ms each
SYNC_INTERVAL = Agent.__init__.__kwdefaults__["interval"]  # the agents' default, 5 s


def exact(values: list[float], q: float) -> float:
    """The nearest-rank percentile."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshot_dir() / f"{name}.png"), full_page=True)


def cell(page: Any, group: str, field: str) -> str:
    return str(page.inner_text(f'td[data-group="{group}"][data-field="{field}"]')).strip()


def running(circuit: Circuit) -> dict[str, int]:
    return dict(
        Snapshot.objects.filter(circuit=circuit).values_list(
            "instance__instance_id", "config_version"
        )
    )


def test_a_canary_from_the_page_reaches_its_instances_and_shows_both_groups_truly(
    own_control_plane: ControlPlaneProcess, browser: Any, operator: User, tmp_path: Path
) -> None:
    service = Service.objects.create(name="shop")
    token = create_agent_token(service)[1]
    go = tmp_path / "go"
    apps = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.rollout_app", own_control_plane.url, token,
             instance, str(seed), str(CALLS), str(go), str(tmp_path / f"{instance}.json")],
            cwd=ROOT,
        )
        for seed, instance in enumerate(IDS)
    ]  # fmt: skip
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    try:
        assert wait_for(lambda: Snapshot.objects.filter(circuit__service=service).count() == 4, 30)
        circuit = Circuit.objects.get(service=service)
        # The agents' config, registered as v1, applied and reported by every agent.
        assert wait_for(lambda: set(running(circuit).values()) == {1}, 15), running(circuit)

        login(page, own_control_plane.url, "otto", "otto-pw-123!")
        page.goto(f"{own_control_plane.url}/circuits/{circuit.pk}/#rollout")
        page.click("details.rollout-new > summary")
        page.fill("#canary-minimum_calls", "5")
        page.fill("#canary-sliding_window_size", "10")
        page.select_option("#canary-instances", CANARY)
        page.fill("#canary-margin", "5")
        page.fill("#canary-reason", "trip on the rate of the last 10 calls")
        page.locator("#rollout").screenshot(path=str(screenshot_dir() / "rollout-01-start.png"))
        sent = time.monotonic()
        page.click("#canary-start")
        page.wait_for_selector("[data-rollout-groups]", timeout=10_000)

        # Exactly the named instances run v2, within one sync interval of the start.
        def switched() -> bool:
            return running(circuit) == {i: (2 if i in CANARY else 1) for i in IDS}

        assert wait_for(switched, SYNC_INTERVAL), running(circuit)
        reached = time.monotonic() - sent
        rollout = Rollout.objects.get()
        assert (rollout.from_version.version, rollout.to_version.version) == (1, 2)
        assert rollout.to_version.config["minimum_calls"] == 5

        go.touch()
        for app in apps:
            assert app.wait(120) == 0
        truth = [json.loads((tmp_path / f"{i}.json").read_text()) for i in IDS]
        assert all(t["dropped"] == 0 for t in truth), truth
        assert {t["instance"]: t["version"] for t in truth} == {
            i: (2 if i in CANARY else 1) for i in IDS
        }
        groups: dict[str, dict[str, Any]] = {}
        for name, version in (("canary", 2), ("baseline", 1)):
            mine = [t for t in truth if t["version"] == version]
            durations = sorted(d for t in mine for d in t["durations"])
            groups[name] = {
                "calls": len(durations),
                "failures": sum(t["failures"] for t in mine),
                "p99": exact(durations, 0.99),
                "trips": sum(t["trips"] for t in mine),
            }
        assert (groups["canary"]["trips"], groups["baseline"]["trips"]) == (2, 0)

        # The page stays open: rollout.js fetches the groups table again every 5 s, so
        # the figures on screen reach the truth without a reload (the last reports are
        # written with the group commit's next batch).
        want = [str(groups["canary"]["calls"]), str(groups["baseline"]["calls"])]
        page.wait_for_function(
            "want => ['canary', 'baseline'].every((g, i) => { const c = document.querySelector("
            '`td[data-group="${g}"][data-field="calls"]`); return c && c.textContent.trim()'
            " === want[i]; })",
            arg=want,
            timeout=20_000,
        )
        page.reload()  # the whole page, rendered now
        assert [cell(page, "canary", "calls"), cell(page, "baseline", "calls")] == want
        table = []
        for name, truth_group in groups.items():
            rate = truth_group["failures"] / truth_group["calls"]
            assert cell(page, name, "failure_rate").startswith(pct(rate)), (name, rate)
            assert cell(page, name, "trips") == str(truth_group["trips"])
            p99_text = cell(page, name, "p99")
            table.append((name, truth_group["p99"], p99_text))
            assert p99_text.endswith(" ms")
            shown = float(p99_text.removesuffix(" ms")) / 1000
            # within 5 % (the histogram's bound) plus the page's rounding to 1 ms
            assert abs(shown - truth_group["p99"]) <= 0.05 * truth_group["p99"] + 0.0005, table
        assert cell(page, "canary", "instances") == "2 / 2"
        assert cell(page, "baseline", "instances") == "2 / 2"
        # 1.0 trips per instance above the baseline: under the margin of 5.
        assert cell(page, "canary", "trips_per_instance") == "1.00"
        assert latency(None) == "-"
        print(f"\ncanary on {CANARY} reached in {reached * 1000:.0f} ms; p99 (truth, page):")
        for name, truth_p99, text in table:
            print(f"  {name}: {truth_p99 * 1000:.2f} ms, {text}")
        # The instances table agrees: the canary instances run v2.
        for instance in IDS:
            row = page.locator(f'tr[data-instance="{instance}"]')
            shown_version = row.locator('td[data-label="Config version"]').inner_text()
            assert shown_version.startswith(f"v{2 if instance in CANARY else 1}"), (
                instance,
                shown_version,
            )
        shot(page, "rollout-02-groups")
        page.locator("#rollout").screenshot(path=str(screenshot_dir() / "rollout-03-section.png"))

        page.click("#rollout-rollback")
        page.wait_for_selector("table.rollout-history", timeout=10_000)
        assert "No rollout runs" in page.inner_text("#rollout")
        page.locator("#rollout").screenshot(
            path=str(screenshot_dir() / "rollout-04-rolled-back.png")
        )
        rollout.refresh_from_db()
        assert rollout.state == "rolled_back"
        assert [e.actor_name for e in AuditEvent.objects.filter(action__startswith="rollout.")] == [
            "otto",
            "otto",
        ]
    finally:
        page.close()
        for app in apps:
            if app.poll() is None:
                app.kill()
                app.wait(5)
