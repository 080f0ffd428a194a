"""The dashboard's history tables in keyset pages: a circuit's transitions and the
audit log, their "older" / "newer" links, filters and export links."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from controlplane.circuits.models import Circuit
from tests.circuits import history

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TIMES = [T0 + timedelta(seconds=i // 4) for i in range(120)]  # four rows a second


@pytest.fixture
def payments(db: None) -> Circuit:
    return history.circuit("checkout", "payments")


def _ids(html: str, attribute: str) -> list[int]:
    return [int(i) for i in re.findall(rf'{attribute}="(\d+)"', html)]


def _link(html: str, which: str) -> str | None:
    found = re.search(rf'href="([^"]*)" rel="(?:next|prev)" data-page="{which}"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def _walk(client: Client, path: str, attribute: str, between: object = None) -> list[int]:
    seen: list[int] = []
    url: str | None = path
    while url:
        html = client.get(url).content.decode()
        seen.extend(_ids(html, attribute))
        link = _link(html, "older")
        url = path.split("?")[0] + link.split("#")[0] if link else None
        if callable(between):
            between()
    return seen


def test_circuit_page_walks_its_transitions_older_and_newer(
    payments: Circuit, as_viewer: Client
) -> None:
    ids = [t.pk for t in history.transitions(payments, TIMES)]
    newest_first = sorted(ids, key=lambda i: (TIMES[ids.index(i)], i), reverse=True)
    path = f"/circuits/{payments.pk}/"
    first = as_viewer.get(path).content.decode()
    assert _ids(first, "data-transition") == newest_first[:50]
    assert _link(first, "newer") is None
    older = _link(first, "older")
    assert older and older.endswith("#transitions") and "before=" in older
    second = as_viewer.get(path + older.split("#")[0]).content.decode()
    assert _ids(second, "data-transition") == newest_first[50:100]
    newer = _link(second, "newer")
    assert newer and "after=" in newer
    back = as_viewer.get(path + newer.split("#")[0]).content.decode()
    assert _ids(back, "data-transition") == newest_first[:50]
    # The charts still read the latest transitions, whatever page the table shows.
    assert "timeline" in second


def test_circuit_pages_skip_and_repeat_nothing_while_transitions_arrive(
    payments: Circuit, as_viewer: Client
) -> None:
    existing = {t.pk for t in history.transitions(payments, TIMES)}

    def arrive() -> None:  # a newer one, and a late report far behind
        history.transitions(payments, [T0 + timedelta(hours=1), T0 - timedelta(days=1)])

    seen = _walk(as_viewer, f"/circuits/{payments.pk}/", "data-transition", arrive)
    assert len(seen) == len(set(seen))
    assert existing <= set(seen)


def test_circuit_page_links_the_export_of_its_history(payments: Circuit, as_viewer: Client) -> None:
    html = as_viewer.get(f"/circuits/{payments.pk}/").content.decode()
    links = re.findall(r'<a href="([^"]+)" data-export="([^"]+)"', html)
    assert [label for _, label in links] == ["CSV", "JSON Lines"]
    for url, label in links:
        parts = urlsplit(url.replace("&amp;", "&"))
        query = parse_qs(parts.query)
        assert parts.path == "/api/v1/transitions/export/"
        assert query["circuit"] == [str(payments.pk)]
        assert query["format"] == [{"CSV": "csv", "JSON Lines": "jsonl"}[label]]
        since = datetime.fromisoformat(query["since"][0])
        until = datetime.fromisoformat(query["until"][0])
        assert until - since == timedelta(days=400)
        # The link works as it is, for the viewer who sees it.
        assert as_viewer.get(url.replace("&amp;", "&")).status_code == 200


@pytest.mark.parametrize(
    "query",
    ["before=yesterday", "after=2026-11-27T10:00:00Z,x", "before=2026-11-27T10:00:00Z,1&after=x"],
)
def test_a_bad_position_is_named_and_the_newest_rows_shown(
    query: str, payments: Circuit, as_viewer: Client
) -> None:
    ids = [t.pk for t in history.transitions(payments, TIMES[:3])]
    answer = as_viewer.get(f"/circuits/{payments.pk}/?{query}")
    assert answer.status_code == 200
    html = answer.content.decode()
    assert re.search(r'data-error="history">(before|after): ', html)
    assert "Showing the newest rows." in html
    assert sorted(_ids(html, "data-transition")) == sorted(ids)
    audit = as_viewer.get(f"/audit/?{query}").content.decode()
    assert "Showing the newest rows." in audit


def test_audit_page_in_keyset_pages_with_no_count(payments: Circuit, as_viewer: Client) -> None:
    existing = {e.pk for e in history.audit_events(TIMES, payments.service)}

    def arrive() -> None:
        history.audit_events([T0 + timedelta(hours=1), T0 - timedelta(days=1)])

    seen = _walk(as_viewer, "/audit/", "data-audit-event", arrive)
    assert len(seen) == len(set(seen)) and existing <= set(seen)
    second = _link(as_viewer.get("/audit/").content.decode(), "older")
    assert second
    with CaptureQueriesContext(connection) as queries:
        assert as_viewer.get("/audit/" + second).status_code == 200
    audit = [q["sql"].upper() for q in queries.captured_queries if "AUDITEVENT" in q["sql"].upper()]
    assert audit and not [q for q in audit if "COUNT(" in q or " OFFSET " in q]


def test_audit_page_filters_by_action_actor_and_service(
    payments: Circuit, as_viewer: Client
) -> None:
    history.audit_events(TIMES[:10], payments.service)  # otto forces, ada edits configs
    history.audit_events(TIMES[:4], None)
    html = as_viewer.get("/audit/?action=override.force&actor=otto&service=checkout")
    rows = _ids(html.content.decode(), "data-audit-event")
    assert len(rows) == 5
    links = re.findall(r'<a href="([^"]+)" data-export="CSV"', html.content.decode())
    query = parse_qs(urlsplit(links[0].replace("&amp;", "&")).query)
    assert query["action"] == ["override.force"] and query["actor"] == ["otto"]
    assert query["service"] == ["checkout"]
    # The older link keeps the filters.
    assert len(_ids(as_viewer.get("/audit/?actor=ada").content.decode(), "data-audit-event")) == 7
    bad = as_viewer.get("/audit/?action=explode").content.decode()
    assert 'data-error="history">action: ' in bad
    assert len(_ids(bad, "data-audit-event")) == 14  # unfiltered


def test_audit_older_link_keeps_the_filters(payments: Circuit, as_viewer: Client) -> None:
    history.audit_events(TIMES, payments.service)
    first = as_viewer.get("/audit/?actor=otto").content.decode()
    older = _link(first, "older")
    assert older and "actor=otto" in older
    rows = _ids(first, "data-audit-event") + _ids(
        as_viewer.get("/audit/" + older).content.decode(), "data-audit-event"
    )
    assert len(rows) == 60 == len(set(rows))
