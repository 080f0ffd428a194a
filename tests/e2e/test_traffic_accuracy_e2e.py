"""Traffic the way an operator reads it, against the truth: three application processes
run real breakers with the real agent against a control plane over HTTP; the calls'
latencies are drawn from a known distribution and each process measures every call
itself. The series API must give calls/s within 2 % and p50/p90/p99 within 5 % of the
exact figures of the calls made."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from controlplane.circuits.auth import create_agent_token, create_api_token
from controlplane.circuits.models import Instance, Service
from tests.e2e.conftest import ROOT, ControlPlaneProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PROCESSES = 3
CALLS = 300  # per process; about 10 ms each


def exact(values: list[float], q: float) -> float:
    """The nearest-rank percentile."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def test_the_series_gives_the_figures_of_the_calls_made(
    control_plane: ControlPlaneProcess, tmp_path: Path, viewer: User
) -> None:
    service = Service.objects.create(name="shop")
    token = create_agent_token(service)[1]
    api_token = create_api_token(viewer)[1]
    started = datetime.now(tz=UTC)
    apps = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.traffic_app",
                control_plane.url,
                token,
                str(seed),
                str(CALLS),
                str(tmp_path / f"app-{seed}.json"),
            ],
            cwd=ROOT,
        )
        for seed in range(PROCESSES)
    ]
    for app in apps:
        assert app.wait(120) == 0
    truth = [json.loads((tmp_path / f"app-{seed}.json").read_text()) for seed in range(PROCESSES)]
    # Nothing discarded. (A report may still wait in a process that ended: its last sync
    # was answered before the write that stores it.)
    assert all(t["dropped"] == 0 for t in truth), truth
    durations = sorted(d for t in truth for d in t["durations"])
    failures = sum(t["failures"] for t in truth)
    assert len(durations) == PROCESSES * CALLS

    status, circuits = control_plane.request(
        "GET", "/api/v1/circuits/?service=shop", token=api_token
    )
    assert status == 200, circuits
    (circuit,) = circuits["results"]
    # One step holding the whole run, ended: the smallest step (a multiple of 10) whose
    # slot on the grid of that step holds the run from its start to its end.
    began, ended = int(started.timestamp()), datetime.now(tz=UTC).timestamp()
    step = 10
    while began // step * step + step < ended:
        step += 10
    start = began // step * step
    end = start + step
    assert wait_for(lambda: datetime.now(tz=UTC).timestamp() >= end, timeout=step + 1)

    def iso(t: int) -> str:
        return datetime.fromtimestamp(t, tz=UTC).isoformat().replace("+00:00", "Z")

    query = (
        f"/api/v1/circuits/{circuit['id']}/series/?metric=calls&metric=failure_rate"
        f"&metric=p50&metric=p90&metric=p99&from={iso(start)}&to={iso(end)}&step={step}"
    )

    def answer() -> dict[str, Any]:
        status, data = control_plane.request("GET", query, token=api_token)
        assert status == 200, data
        return dict(data)

    def calls() -> float:
        return float(answer()["series"]["calls"][0] or 0.0) * step

    # The last reports are written with the group commit's next batch.
    stored = Instance.objects.values_list("instance_id", "telemetry_through", "generation")
    assert wait_for(lambda: round(calls()) == len(durations), timeout=10), (
        calls(),
        [(t["pending"], t["dropped"]) for t in truth],
        list(stored),
    )
    data = answer()
    assert (data["times"], data["partial_from"]) == ([start], None)
    series = data["series"]
    assert series["calls"][0] == pytest.approx(len(durations) / step, rel=0.02)
    assert series["failure_rate"][0] == pytest.approx(100 * failures / len(durations), rel=1e-6)
    table = []
    for metric, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        truth_q = exact(durations, q)
        table.append((metric, truth_q, series[metric][0]))
        assert series[metric][0] == pytest.approx(truth_q, rel=0.05), table
    print("\naccuracy (exact, API, error):")
    for metric, truth_q, shown in table:
        error = shown / truth_q - 1
        print(f"  {metric}: {truth_q * 1000:.2f} ms, {shown * 1000:.2f} ms, {error:+.2%}")
