"""Keyset pages of history (a circuit's transitions, every transition, the audit log)
and their streaming export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from controlplane.circuits.models import AuditEvent, Circuit, Service, Transition
from tests.circuits import history
from tests.streaming import body

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
# Three rows share each second: ties are ordered by id.
TIMES = [T0 + timedelta(seconds=i // 3) for i in range(23)]


@pytest.fixture
def payments(db: None) -> Circuit:
    return history.circuit("checkout", "payments")


def _walk(api: APIClient, url: str, key: str = "next") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while url:
        answer = api.get(url)
        assert answer.status_code == 200, answer.content
        page = answer.json()
        assert "count" not in page
        rows.extend(page["results"])
        url = page[key]
    return rows


def _order(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(r["at"], r["id"]) for r in rows]


ENDPOINTS: dict[str, Callable[[Circuit], str]] = {
    "circuit transitions": lambda c: f"/api/v1/circuits/{c.pk}/transitions/",
    "fleet transitions": lambda c: "/api/v1/transitions/",
    "audit": lambda c: "/api/v1/audit/",
}


def _rows(kind: str, target: Circuit, times: list[datetime]) -> list[int]:
    if kind == "audit":
        return [e.pk for e in history.audit_events(times, target.service)]
    return [t.pk for t in history.transitions(target, times)]


@pytest.mark.parametrize("kind", list(ENDPOINTS))
def test_pages_hold_every_row_once_while_rows_are_inserted_between_loads(
    kind: str, payments: Circuit, viewer_api: APIClient
) -> None:
    existing = set(_rows(kind, payments, TIMES))
    url: str | None = ENDPOINTS[kind](payments) + "?page_size=4"
    seen: list[dict[str, Any]] = []
    while url:
        page = viewer_api.get(url).json()
        seen.extend(page["results"])
        url = page["next"]
        if page["results"]:
            last = page["results"][-1]
            at = datetime.fromisoformat(last["at"])
            # Between loads: a newer row, a row tied with the cursor's time (a higher
            # id: it sorts before the cursor), and a row far behind the cursor.
            _rows(kind, payments, [T0 + timedelta(hours=1), at, T0 - timedelta(days=1)])
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids)), "a row was repeated"
    assert existing <= set(ids), f"rows skipped: {existing - set(ids)}"
    # Newest first, ties by id, strictly.
    keys = [(datetime.fromisoformat(r["at"]), r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
    # The rows behind the cursor each time were seen too (each once), the newer ones not.
    assert all(datetime.fromisoformat(r["at"]) <= TIMES[-1] for r in seen)


@pytest.mark.parametrize("kind", list(ENDPOINTS))
def test_previous_links_walk_back_to_the_first_page(
    kind: str, payments: Circuit, viewer_api: APIClient
) -> None:
    _rows(kind, payments, TIMES)
    first = ENDPOINTS[kind](payments) + "?page_size=5"
    forward = _walk(viewer_api, first)
    assert len(forward) == len(TIMES)
    # The last page's previous link, then back to the newest rows.
    url: str | None = first
    while url:
        page = viewer_api.get(url).json()
        last_page, url = page, page["next"]
    backward = list(last_page["results"])
    url = last_page["previous"]
    while url:
        page = viewer_api.get(url).json()
        assert len(page["results"]) == 5
        backward = page["results"] + backward
        url = page["previous"]
    assert _order(backward) == _order(forward)
    assert viewer_api.get(first).json()["previous"] is None


@pytest.mark.parametrize("kind", list(ENDPOINTS))
def test_a_page_costs_no_offset_and_no_count(
    kind: str, payments: Circuit, viewer_api: APIClient
) -> None:
    _rows(kind, payments, TIMES)
    second = viewer_api.get(ENDPOINTS[kind](payments) + "?page_size=5").json()["next"]
    with CaptureQueriesContext(connection) as queries:
        assert viewer_api.get(second).status_code == 200
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
    assert " OFFSET " not in sql and "COUNT(" not in sql
    assert '"AT", ' in sql and ") < (" in sql  # one row-value comparison


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("before=yesterday", "before", "must be '<ISO 8601 time with offset>,<id>'"),
        ("before=2026-11-27T10:00:00,5", "before", "must be"),  # no offset
        ("after=2026-11-27T10:00:00Z,x", "after", "must be"),
        ("before=2026-13-27T10:00:00Z,5", "before", "not a valid time"),
        ("before=2026-11-27T10:00:00Z,99999999999999999999", "before", "must be"),
        ("before=2026-11-27T10:00:00Z,9999999999999999999", "before", "at most"),
        ("before=2026-11-27T10:00:00Z,1&after=2026-11-27T10:00:00Z,1", "after", "not both"),
        ("page_size=0", "page_size", "from 1 to 500"),
        ("page_size=501", "page_size", "from 1 to 500"),
        ("page_size=ten", "page_size", "from 1 to 500"),
    ],
)
@pytest.mark.parametrize("kind", list(ENDPOINTS))
def test_a_bad_cursor_or_page_size_is_a_400_naming_it(
    kind: str, query: str, field: str, reason: str, payments: Circuit, viewer_api: APIClient
) -> None:
    answer = viewer_api.get(ENDPOINTS[kind](payments) + "?" + query)
    assert answer.status_code == 400, answer.content
    assert answer.json()["field"] == field and reason in answer.json()["reason"]


def test_a_position_taken_from_any_row_starts_a_page(
    payments: Circuit, viewer_api: APIClient
) -> None:
    history.transitions(payments, TIMES)
    rows = viewer_api.get("/api/v1/transitions/?page_size=500").json()["results"]
    pivot = rows[7]
    older = viewer_api.get(
        "/api/v1/transitions/", {"before": f"{pivot['at']},{pivot['id']}", "page_size": 3}
    ).json()
    assert older["results"] == rows[8:11]
    # The same instant written with another offset is the same position.
    at = datetime.fromisoformat(pivot["at"]).astimezone(
        __import__("datetime").timezone(timedelta(hours=2))
    )
    shifted = viewer_api.get(
        "/api/v1/transitions/", {"before": f"{at.isoformat()},{pivot['id']}", "page_size": 3}
    ).json()
    assert shifted["results"] == rows[8:11]


def test_fleet_transitions_filter_by_service_circuit_instance_state_and_window(
    payments: Circuit, viewer_api: APIClient
) -> None:
    db = history.circuit("checkout", "db")
    search = history.circuit("search", "index")
    history.transitions(payments, TIMES[:6], instance_id="web-1")
    history.transitions(payments, TIMES[6:9], instance_id="web-2")
    history.transitions(db, TIMES[:3])
    history.transitions(search, TIMES[:3])

    def ids(query: str) -> set[tuple[str, str, str]]:
        answer = viewer_api.get("/api/v1/transitions/?page_size=500&" + query)
        assert answer.status_code == 200, answer.content
        return {(r["circuit_name"], r["instance"], r["to"]) for r in answer.json()["results"]}

    def count(query: str) -> int:
        return len(viewer_api.get("/api/v1/transitions/?page_size=500&" + query).json()["results"])

    assert count("") == 15
    assert count("service=checkout") == 12 and count("service=search") == 3
    assert count(f"circuit={db.pk}") == 3
    assert count("instance=web-2") == 3
    assert {s for _, _, s in ids("state=open&state=closed")} == {"open", "closed"}
    assert count("state=open&state=closed") == 10
    since = (T0 + timedelta(seconds=1)).isoformat()
    until = (T0 + timedelta(seconds=2)).isoformat()
    assert count(f"since={since}&until={until}".replace("+", "%2B")) == 3
    for query, field in [
        ("circuit=abc", "circuit"),
        ("circuit=0", "circuit"),
        ("circuit=99999999999999999999", "circuit"),
        ("state=exploded", "state"),
        ("since=yesterday", "since"),
    ]:
        answer = viewer_api.get("/api/v1/transitions/?" + query)
        assert answer.status_code == 400 and answer.json()["field"] == field, query


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/transitions/",
        "/api/v1/transitions/export/?format=csv&since=2026-11-27T00:00:00Z&until=2026-11-28T00:00:00Z",
        "/api/v1/audit/export/?format=jsonl&since=2026-11-27T00:00:00Z&until=2026-11-28T00:00:00Z",
    ],
)
def test_history_needs_a_viewer(path: str, api_client_for, viewer_api: APIClient) -> None:
    assert api_client_for(None).get(path).status_code == 401
    nobody = User.objects.create_user("nobody", password="x")  # in no role group
    assert api_client_for(nobody).get(path).status_code == 403
    assert viewer_api.get(path).status_code == 200


# --- Exports ------------------------------------------------------------------------

WINDOW = {"since": "2026-11-27T00:00:00Z", "until": "2026-11-28T00:00:00Z"}


def _export(api: APIClient, path: str, **params: Any) -> Any:
    return api.get(path, {**WINDOW, **params})


def test_transition_export_streams_csv_with_a_header_and_jsonl(
    payments: Circuit, viewer_api: APIClient
) -> None:
    history.transitions(payments, TIMES[:5])
    answer = _export(viewer_api, "/api/v1/transitions/export/", format="csv")
    assert answer.status_code == 200 and answer.streaming
    assert answer["Content-Type"] == "text/csv; charset=utf-8"
    assert answer["Content-Disposition"] == (
        'attachment; filename="transitions-2026-11-27T000000Z_2026-11-28T000000Z.csv"'
    )
    lines = body(answer).decode().splitlines()
    assert lines[0] == (
        "id,circuit,circuit_name,instance,seq,from,to,at,reason,failure_rate,calls,"
        "failures,config_version,received_at"
    )
    assert len(lines) == 6
    newest = next(csv.DictReader(io.StringIO("\n".join(lines))))
    assert newest["at"] == "2026-11-27T10:00:01Z" and newest["circuit_name"] == "payments"
    answer = _export(viewer_api, "/api/v1/transitions/export/", format="jsonl")
    assert answer["Content-Type"] == "application/x-ndjson"
    assert answer["Content-Disposition"].endswith('.jsonl"')
    rows = [json.loads(line) for line in body(answer).splitlines()]
    assert len(rows) == 5 and rows[0]["at"] == "2026-11-27T10:00:01Z"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_transition_export_matches_the_paginated_listing_row_for_row(
    fmt: str, payments: Circuit, viewer_api: APIClient
) -> None:
    other = history.circuit("search", "index")
    history.transitions(payments, TIMES)
    history.transitions(other, TIMES[:9], instance_id="web-9")
    history.transitions(payments, [T0 - timedelta(days=3)])  # outside the window
    query = {
        "service": "checkout",
        "state": ["open", "closed"],
        "since": "2026-11-27T10:00:01Z",
        "until": "2026-11-27T10:00:07Z",
    }
    listed: list[dict[str, Any]] = []
    url: str | None = "/api/v1/transitions/?page_size=4"
    params: dict[str, Any] | None = query
    while url:
        page = viewer_api.get(url, params).json()
        listed.extend(page["results"])
        url, params = page["next"], None
    assert len(listed) > 8
    answer = viewer_api.get("/api/v1/transitions/export/", {**query, "format": fmt})
    assert answer.status_code == 200
    text = body(answer).decode()
    if fmt == "jsonl":
        exported = [json.loads(line) for line in text.splitlines()]
        assert exported == listed
    else:
        exported_csv = list(csv.DictReader(io.StringIO(text)))
        assert exported_csv == [
            {k: "" if v is None else str(v) for k, v in row.items()} for row in listed
        ]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_audit_export_matches_the_paginated_listing_row_for_row(
    fmt: str, payments: Circuit, viewer_api: APIClient
) -> None:
    history.audit_events(TIMES, payments.service)
    history.audit_events(TIMES[:4], None)
    query = {"action": "override.force", **WINDOW}
    listed = _walk_params(viewer_api, "/api/v1/audit/", {**query, "page_size": 3})
    assert len(listed) == 14
    answer = viewer_api.get("/api/v1/audit/export/", {**query, "format": fmt})
    text = body(answer).decode()
    if fmt == "jsonl":
        assert [json.loads(line) for line in text.splitlines()] == listed
    else:
        exported = list(csv.DictReader(io.StringIO(text)))

        def cell(name: str, value: Any) -> str:
            if value is None:
                return ""
            if name in ("before", "after"):
                return json.dumps(value, separators=(",", ":"))
            return str(value)

        flat = [{k: cell(k, v) for k, v in row.items()} for row in listed]
        assert exported == flat
        assert any("\n" in row["reason"] for row in exported)  # quoted, not split


# Strings a file format can trip on: quotes, backslashes, separators, line breaks,
# control characters (the JSON Lines COPY's quote and delimiter among them), non-ASCII.
HARD = [
    "",
    'say "hi", then \\leave\\',
    "two\nlines\r\nand a\ttab",
    "\x01\x02\x1f \x7f",
    "caf\u00e9 \u2603 \U0001f680 \u2028",
    ",",
    '"',
    " spaced ",
    "\\.",
]


def _lines(text: str) -> list[str]:
    """JSON Lines split on their terminators only (a row's strings may hold U+2028)."""
    assert text.endswith("\n") or not text
    return text.split("\n")[:-1]


def _csv_text(rows: list[dict[str, Any]]) -> str:
    """``rows`` as Python's csv writer writes them: null empty, JSON fields compact."""

    def cell(value: Any) -> Any:
        if isinstance(value, (dict, list)):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return value

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(rows[0]))
    writer.writerows([[cell(v) for v in row.values()] for row in rows])
    return out.getvalue()


def test_audit_export_writes_hard_strings_and_json_as_the_api_does(
    payments: Circuit, viewer_api: APIClient
) -> None:
    nested = {
        "text": HARD,
        'quote"key': {"n": 1, "rate": 0.25, "whole": 2.0, "none": None, "yes": True},
        "list": [1, -2, 3.5, [], {}, "a, b: c"],
    }
    AuditEvent.objects.bulk_create(
        AuditEvent(
            actor_name=text or "x",
            action="override.force",
            service=payments.service if i % 2 else None,
            target_type="circuit",
            target_id=text[:64],
            target_repr=text,
            reason=text,
            before={"v": text, **nested} if i % 3 else None,
            after=[text, i] if i % 2 else {"": text},
            at=T0 + timedelta(seconds=i),
        )
        for i, text in enumerate(HARD)
    )
    listed = _walk_params(viewer_api, "/api/v1/audit/", {**WINDOW, "page_size": 4})
    assert len(listed) == len(HARD)
    jsonl = body(_export(viewer_api, "/api/v1/audit/export/", format="jsonl")).decode()
    # Each line is the listing's row written compactly, byte for byte.
    assert _lines(jsonl) == [
        json.dumps(row, separators=(",", ":"), ensure_ascii=False) for row in listed
    ]
    exported = body(_export(viewer_api, "/api/v1/audit/export/", format="csv")).decode()
    assert exported == _csv_text(listed)
    assert list(csv.DictReader(io.StringIO(exported)))[-1]["reason"] == ""


def test_transition_export_writes_hard_strings_and_rates_as_the_api_does(
    viewer_api: APIClient, db: None
) -> None:
    rates = [0.0, 1.0, 1 / 7, 1e-05, 0.1, None, 2 / 3, 0.00012345, 0.5]
    for i, text in enumerate(HARD):
        target = history.circuit(f"svc-{i}", f"c{i}")
        history.transitions(target, [T0 + timedelta(seconds=i)], instance_id=text or "x")
        Transition.objects.filter(circuit=target).update(
            reason=text, failure_rate=rates[i % len(rates)]
        )
    listed = _walk_params(viewer_api, "/api/v1/transitions/", {**WINDOW, "page_size": 4})
    assert len(listed) == len(HARD)
    assert {r["failure_rate"] for r in listed} == set(rates)
    jsonl = body(_export(viewer_api, "/api/v1/transitions/export/", format="jsonl")).decode()
    assert _lines(jsonl) == [
        json.dumps(row, separators=(",", ":"), ensure_ascii=False) for row in listed
    ]
    assert '"failure_rate":0.0,' in jsonl and '"failure_rate":1.0,' in jsonl
    exported = body(_export(viewer_api, "/api/v1/transitions/export/", format="csv")).decode()
    assert exported == _csv_text(listed)
    assert ",0.0," in exported and ",1e-05," in exported


def _walk_params(api: APIClient, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    next_url: str | None = url
    query: dict[str, Any] | None = params
    while next_url:
        page = api.get(next_url, query).json()
        rows.extend(page["results"])
        next_url, query = page["next"], None
    return rows


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"format": "xml"}, "format", "must be one of csv, jsonl, got 'xml'"),
        ({"format": None}, "format", "must be one of csv, jsonl, got None"),
        ({"format": "csv", "since": None}, "since", "required for an export"),
        ({"format": "csv", "until": None}, "until", "required for an export"),
        ({"format": "csv", "until": "2026-11-26T00:00:00Z"}, "until", "must be after since"),
        (
            {"format": "csv", "until": "2028-01-01T12:00:00Z"},
            "until",
            "at most 400 days, got 400.5",
        ),
        ({"format": "csv", "since": "yesterday"}, "since", "valid date/time"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/transitions/export/", "/api/v1/audit/export/"])
def test_an_export_refuses_a_bad_format_or_window_naming_it(
    path: str, params: dict[str, Any], field: str, reason: str, viewer_api: APIClient
) -> None:
    query = {k: v for k, v in {**WINDOW, **params}.items() if v is not None}
    answer = viewer_api.get(path, query)
    assert answer.status_code == 400, answer.content
    assert answer["Content-Type"] == "application/json"
    assert answer.json()["field"] == field and reason in answer.json()["reason"]


def test_an_export_of_exactly_the_longest_window_is_served(viewer_api: APIClient) -> None:
    since = "2026-01-01T00:00:00Z"
    until = (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=400)).isoformat()
    answer = viewer_api.get(
        "/api/v1/audit/export/", {"format": "csv", "since": since, "until": until}
    )
    assert answer.status_code == 200
    assert body(answer).decode().splitlines()[0].startswith("id,at,actor,action")


def test_the_schema_describes_the_lists_and_exports(client: Any) -> None:
    schema = client.get("/api/schema/?format=json").json()
    listing = schema["paths"]["/api/v1/transitions/"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert {"service", "circuit", "instance", "state", "since", "until"} <= names
    assert {"before", "after", "page_size"} <= names and "page" not in names
    ok = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert "Paginated" in ok["$ref"]
    component = schema["components"]["schemas"][ok["$ref"].rsplit("/", 1)[1]]
    assert set(component["properties"]) == {"next", "previous", "results"}
    for path in ("/api/v1/transitions/export/", "/api/v1/audit/export/"):
        op = schema["paths"][path]["get"]
        assert set(op["responses"]["200"]["content"]) == {"text/csv", "application/x-ndjson"}
        required = {p["name"] for p in op["parameters"] if p.get("required")}
        assert required == {"format", "since", "until"}
    circuit = schema["paths"]["/api/v1/circuits/{id}/transitions/"]["get"]
    assert {"before", "after", "page_size"} <= {p["name"] for p in circuit["parameters"]}


def test_services_keep_page_numbers(viewer_api: APIClient, db: None) -> None:
    Service.objects.create(name="a")
    page = viewer_api.get("/api/v1/services/").json()
    assert page["count"] == 1
