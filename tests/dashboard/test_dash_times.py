"""Times as people read them: relative words with the exact time on hover, human
durations, and the circuit page's fixed time window (?from=&to=, what alert links open)."""

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.template import Context, Template
from django.test import Client

from dashboard import formats

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 5, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "just now"),
        (4.4, "just now"),
        (-3, "just now"),
        (5, "5 s ago"),
        (59.4, "59 s ago"),
        (60, "1 min ago"),
        (3599, "59 min ago"),
        (3600, "1 h ago"),
        (86399, "23 h ago"),
        (86400 * 3 + 5, "3 d ago"),
        (-180, "in 3 min"),
        (-7200, "in 2 h"),
        # Time left: two units, the smaller rounded to the nearest, never floored.
        (-61, "in 1 min 1 s"),
        (-3599, "in 1 h"),
        (-86399, "in 1 d"),
        (-(7 * 86400 - 1), "in 7 d"),
        (-(7 * 86400 - 40), "in 7 d"),
        (-(6 * 86400 + 12 * 3600 + 60), "in 6 d 12 h"),
        (-(2 * 3600 + 29 * 60 + 40), "in 2 h 30 min"),
    ],
)
def test_relative_words(seconds: float, words: str) -> None:
    assert formats.relative(seconds) == words


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (42, "42 s"),
        (372, "6 min 12 s"),
        (3600, "1 h 0 min"),
        (7440, "2 h 4 min"),
        (97200, "1 d 3 h"),
        (-5, "0 s"),
    ],
)
def test_durations_are_human(seconds: float, words: str) -> None:
    assert formats.duration(seconds) == words


def test_the_when_filter_renders_a_time_element_with_the_exact_time() -> None:
    moment = NOW - timedelta(minutes=3, seconds=10)
    template = Template("{% load dashboard %}{{ moment|when }}|{{ missing|when }}|{{ moment|at }}")
    with time_machine.travel(NOW, tick=False):
        html = template.render(Context({"moment": moment, "missing": None}))
    assert html == (
        '<time datetime="2026-12-05T05:56:50Z" title="2026-12-05 05:56:50 UTC" data-when>'
        "3 min ago</time>|-|"
        '<time datetime="2026-12-05T05:56:50Z" data-at>2026-12-05 05:56:50 UTC</time>'
    )


def traffic_section(html: str) -> str:
    match = re.search(r'<section class="traffic".*?</section>', html, re.S)
    assert match
    return match.group(0)


def test_the_circuit_page_opens_at_a_fixed_window(as_viewer: Client, fleet: Any) -> None:
    pk = fleet["payments"].pk
    with time_machine.travel(NOW, tick=False):
        html = as_viewer.get(
            f"/circuits/{pk}/?from=2026-12-05T04:45:00Z&to=2026-12-05T05:30:00Z"
        ).content.decode()
    section = traffic_section(html)
    assert 'data-from="2026-12-05T04:45:00Z"' in section
    assert 'data-to="2026-12-05T05:30:00Z"' in section
    # 45 minutes at the smallest step that draws at most 360 points: 10 s.
    assert 'data-window-seconds="2700"' in section and 'data-window-step="10"' in section
    assert 'aria-pressed="true"' not in section  # no preset is shown
    assert '<time datetime="2026-12-05T04:45:00Z" data-at>' in section


def test_a_window_without_an_end_runs_up_to_now(as_viewer: Client, fleet: Any) -> None:
    pk = fleet["payments"].pk
    with time_machine.travel(NOW, tick=False):
        section = traffic_section(
            as_viewer.get(f"/circuits/{pk}/?from=2026-12-02T06:00:00%2B00:00").content.decode()
        )
    assert 'data-from="2026-12-02T06:00:00Z"' in section and 'data-to=""' in section
    # Three days at most 360 points: 600 s steps would draw 432, so 3600 s.
    assert 'data-window-step="3600"' in section
    assert "now (live)" in section


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("from=yesterday", "from: must be an ISO 8601 time with a zone"),
        ("from=2026-12-05T04:45:00", "from: must be an ISO 8601 time with a zone"),
        ("from=2026-12-05T05:00:00Z&to=2026-12-05T04:00:00Z", "from: must be before to"),
        ("from=2025-01-01T00:00:00Z", "from: the window must be at most 400 days"),
        ("from=2026-12-05T04:45:00Z&to=2026-13-45T00:00:00Z", "to: must be an ISO 8601 time"),
    ],
)
def test_a_window_the_page_cannot_show_falls_back_and_says_why(
    as_viewer: Client, fleet: Any, query: str, reason: str
) -> None:
    pk = fleet["payments"].pk
    with time_machine.travel(NOW, tick=False):
        response = as_viewer.get(f"/circuits/{pk}/?{query}")
    assert response.status_code == 200
    section = traffic_section(response.content.decode())
    assert "data-from" not in section
    assert re.findall(r'value="([^"]+)"[^>]*aria-pressed="true"', section) == ["1h"]
    assert "could not be shown" in section and reason in section


def test_json_data_matches_json_script_and_cannot_close_its_element() -> None:
    from django.utils.html import json_script

    from dashboard.templatetags.dashboard import json_data

    value = {"name": "</script><script>alert(1)</script> & <b>", "at": [1, 2.5, None, True]}
    ours, django_s = str(json_data(value, "x")), str(json_script(value, "x"))
    inner = ours.split(">", 1)[1].rsplit("<", 1)[0]
    assert "</script" not in inner and "<" not in inner and "&" not in inner
    assert json.loads(inner) == value
    assert json.loads(django_s.split(">", 1)[1].rsplit("<", 1)[0]) == value
    assert ours.startswith('<script id="x" type="application/json">')
