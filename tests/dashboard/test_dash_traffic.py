"""The circuit page's traffic section as the server renders it: the data attributes
traffic.js reads, the range buttons and ?range=, the vendored uPlot, nothing inline."""

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from dashboard.charts import DEFAULT_TRAFFIC_RANGE, TRAFFIC_RANGES, traffic_range

pytestmark = pytest.mark.django_db

VENDOR = "dashboard/vendor/uplot"


def section(html: str) -> str:
    match = re.search(r'<section class="traffic".*?</section>', html, re.S)
    assert match, "no traffic section"
    return match.group(0)


def pressed(html: str) -> list[str]:
    return re.findall(r'<button[^>]*value="([^"]+)"[^>]*aria-pressed="true"', section(html))


def test_traffic_section_carries_the_circuit_and_the_series_url(
    as_viewer: Client, fleet: Any
) -> None:
    pk = fleet["payments"].pk
    html = as_viewer.get(f"/circuits/{pk}/").content.decode()
    traffic = section(html)
    assert f'data-circuit-id="{pk}"' in traffic
    assert f'data-series-url="/api/v1/circuits/{pk}/series/"' in traffic
    assert f'data-range="{DEFAULT_TRAFFIC_RANGE}"' in traffic
    for key in ("calls", "failure_rate", "latency", "rejected"):
        assert re.search(
            rf'data-chart="{key}"><figcaption>[^<]+</figcaption><div class="plot" role="img" '
            r'aria-label="[^"]+">',
            traffic,
        ), key
    assert 'aria-live="polite"' in traffic  # the text summary
    assert "Nothing to draw" in traffic  # the empty state, hidden until known


def test_range_buttons_are_real_buttons_one_pressed_and_follow_the_query(
    as_viewer: Client, fleet: Any
) -> None:
    pk = fleet["payments"].pk
    html = as_viewer.get(f"/circuits/{pk}/").content.decode()
    buttons = re.findall(r"<button[^>]*data-range=[^>]*>([^<]+)</button>", section(html))
    assert buttons == ["15 min", "1 h", "6 h", "24 h", "7 d"]
    assert pressed(html) == ["1h"]
    assert section(html).count('aria-pressed="false"') == 4
    for key, *_ in TRAFFIC_RANGES:
        assert pressed(as_viewer.get(f"/circuits/{pk}/?range={key}").content.decode()) == [key]
    # An unknown value falls back to the default, like the overview's filters.
    assert pressed(as_viewer.get(f"/circuits/{pk}/?range=3y").content.decode()) == ["1h"]
    # Without script the buttons still work: a GET form submitting ?range=.
    assert re.search(r'<form method="get"[^>]*class="traffic-ranges"', section(html))


def test_every_range_asks_for_at_most_360_steps() -> None:
    for key, _label, seconds, step in TRAFFIC_RANGES:
        assert step % 10 == 0 and seconds // step <= 360, key
    assert traffic_range("7d")["range"]["step"] == 3600
    assert traffic_range(None)["range"]["key"] == DEFAULT_TRAFFIC_RANGE


def test_circuit_page_has_no_inline_script_or_style(as_viewer: Client, fleet: Any) -> None:
    html = as_viewer.get(f"/circuits/{fleet['payments'].pk}/").content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in html and " style=" not in html
    assert re.search(r' on[a-z]+="', html) is None  # no inline handlers either
    srcs = [re.search(r'src="([^"]+)"', attrs).group(1) for attrs, _ in scripts]  # type: ignore[union-attr]
    assert srcs == [
        "/static/dashboard/times.js",
        "/static/dashboard/live.js",
        "/static/dashboard/search.js",
        f"/static/{VENDOR}/uPlot.iife.min.js",
        "/static/dashboard/traffic.js",
        "/static/dashboard/drills.js",
        "/static/dashboard/shadow.js",
        "/static/dashboard/rollout.js",
    ]
    assert f'href="/static/{VENDOR}/uPlot.min.css"' in html
    assert "cdn" not in html.lower() and "https://" not in html


def test_other_pages_do_not_load_the_charts(as_viewer: Client, fleet: Any) -> None:
    html = as_viewer.get("/").content.decode()
    assert "uPlot" not in html and "traffic.js" not in html


def test_uplot_is_vendored_with_its_licence_and_version() -> None:
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE", "README.md"):
        assert finders.find(f"{VENDOR}/{name}"), name
    folder = Path(finders.find(f"{VENDOR}/LICENSE")).parent  # type: ignore[arg-type]
    assert "MIT" in (folder / "LICENSE").read_text()
    assert re.search(r"uPlot \d+\.\d+\.\d+", (folder / "README.md").read_text())
    assert "var uPlot" in (folder / "uPlot.iife.min.js").read_text()[:200]
