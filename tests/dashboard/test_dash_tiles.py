"""Tile figures, pagination and chart geometry of the dashboard."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from controlplane.circuits.models import Circuit, Service
from dashboard import tiles
from dashboard.charts import WIDTH, marks, timeline

pytestmark = pytest.mark.django_db


def test_sparkline_maps_rates_to_the_box() -> None:
    assert tiles.spark_path([]) == "" and tiles.spark_path([0.5]) == ""
    assert tiles.spark_path([0.0, 1.0, 2.0]) == "0.0,20.0 40.0,0.0 80.0,0.0"


def test_overview_is_paginated(as_viewer: Client, service: Service) -> None:
    Circuit.objects.bulk_create(
        Circuit(service=service, name=f"c{i:04d}") for i in range(tiles.PAGE_SIZE + 1)
    )
    first = as_viewer.get("/?sort=name").content.decode()
    assert first.count('class="tile"') == tiles.PAGE_SIZE
    assert "page 1 of 2" in first and f"{tiles.PAGE_SIZE + 1} circuits" in first
    second = as_viewer.get("/?sort=name&page=2").content.decode()
    assert second.count('class="tile"') == 1 and f"c{tiles.PAGE_SIZE:04d}" in second


def test_tile_figures(fleet: dict[str, Circuit]) -> None:
    (payments,) = tiles.tiles_by_id([fleet["payments"].pk])
    # Mean of the three live instances' window failure rates (0.8, 0.1, 0.1).
    assert payments["failure_rate"] == pytest.approx(1.0 / 3)
    assert payments["since"] is not None and payments["probe_at"] is not None
    assert payments["url"] == f"/circuits/{fleet['payments'].pk}/"
    assert payments["spark"].count(",") == 5  # four transitions and the current rate


def test_timeline_has_one_lane_per_instance_and_ends_now(fleet: Any) -> None:
    from controlplane.circuits.models import Snapshot

    circuit = fleet["payments"]
    history = marks(circuit.pk)
    snapshots = list(Snapshot.objects.filter(circuit=circuit).select_related("instance"))
    now = timezone.now() + timedelta(seconds=1)
    chart = timeline(history, snapshots, now)
    assert [lane["name"] for lane in chart["lanes"]] == ["web-1", "web-2", "web-3"]
    web1 = chart["lanes"][0]["segments"]
    assert [s["state"] for s in web1] == ["closed", "open", "half_open", "closed", "open"]
    assert web1[-1]["x"] + web1[-1]["w"] == pytest.approx(WIDTH, abs=1)
