"""The incident view (/incidents/): its window, filters, errors, the timeline's data,
the table's keyset pages, the links to and from it, and who may see it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from controlplane.alerts.models import Alert, AlertRule
from controlplane.circuits.models import AuditEvent, Circuit, Instance, Service, Transition
from controlplane.circuits.operations import create_config_version, force_circuit, release_circuit
from dashboard import incidents
from dashboard.params import ParamError, parse_window
from tests.streaming import body

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


class Fleet:
    """Two services, three circuits, two instances each; transitions added by ``add``."""

    def __init__(self) -> None:
        self.services = {n: Service.objects.create(name=n) for n in ("checkout", "ledger")}
        self.circuits = {
            key: Circuit.objects.create(service=self.services[key.split("/")[0]], name=name)
            for key, name in (
                ("checkout/payments", "payments"),
                ("checkout/db", "db"),
                ("ledger/postgres", "postgres"),
            )
        }
        self.instances = {
            f"{svc}/{n}": Instance.objects.create(
                service=s, instance_id=n, first_seen=NOW, last_seen=NOW
            )
            for svc, s in self.services.items()
            for n in ("web-1", "web-2")
        }
        self.seq = 0

    def add(
        self, circuit: str, to_state: str, ago: timedelta, instance: str = "web-1", **kw: Any
    ) -> Transition:
        self.seq += 1
        c = self.circuits[circuit]
        return Transition.objects.create(
            instance=self.instances[f"{c.service.name}/{instance}"],
            circuit=c,
            seq=self.seq,
            from_state=kw.pop("from_state", "closed"),
            to_state=to_state,
            at=NOW - ago,
            reason=kw.pop("reason", "failure_rate"),
            received_at=NOW,
            **kw,
        )


@pytest.fixture
def fleet(db: None) -> Fleet:
    return Fleet()


def get(client: Client, query: str = "", **extra: Any) -> Any:
    with time_machine.travel(NOW, tick=False):
        return client.get(f"/incidents/?{query}", **extra)


def data(client: Client, query: str = "") -> dict[str, Any]:
    response = get(client, f"{query}&format=json" if query else "format=json")
    assert response.status_code == 200, response.content
    return dict(response.json())


def ids(body: dict[str, Any]) -> list[tuple[str, int]]:
    return [(r["kind"], r["id"]) for r in body["rows"]]


# --- who may see it ------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page(client: Client) -> None:
    response = client.get("/incidents/?range=15m")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/incidents/%3Frange%3D15m"
    assert client.get("/incidents/?format=json").status_code == 302


def test_a_user_without_a_role_is_refused(login: Any) -> None:
    nobody = User.objects.create_user("nobody", password="pw-123456!")
    assert login(nobody).get("/incidents/").status_code == 403


def test_a_viewer_sees_the_page_from_the_navigation(as_viewer: Client, fleet: Fleet) -> None:
    html = get(as_viewer).content.decode()
    assert '<a href="/incidents/" aria-current="page">Incidents</a>' in html
    assert "<h1>Incident view</h1>" in html
    assert 'href="/incidents/"' in as_viewer.get("/").content.decode()


def test_only_get_is_answered(as_operator: Client) -> None:
    assert as_operator.post("/incidents/").status_code == 405


# --- the window ------------------------------------------------------------------------------


def test_the_default_window_is_the_last_hour(as_viewer: Client, fleet: Fleet) -> None:
    inside = fleet.add("checkout/payments", "open", timedelta(minutes=59))
    fleet.add("checkout/payments", "open", timedelta(minutes=61))
    body = data(as_viewer)
    assert ids(body) == [("transition", inside.pk)]
    assert body["from"] == "2026-12-05T11:00:00Z" and body["to"] == "2026-12-05T12:00:00Z"
    html = get(as_viewer).content.decode()
    assert re.findall(r'value="([^"]+)" aria-pressed="true"', html) == ["1h"]


@pytest.mark.parametrize(
    ("range_", "expected"),
    [("15m", ["10m"]), ("1h", ["10m", "50m"]), ("24h", ["10m", "50m", "5h"])],
)
def test_the_presets(as_viewer: Client, fleet: Fleet, range_: str, expected: list[str]) -> None:
    ago = {"10m": timedelta(minutes=10), "50m": timedelta(minutes=50), "5h": timedelta(hours=5)}
    made = {k: fleet.add("checkout/db", "open", v).pk for k, v in ago.items()}
    body = data(as_viewer, f"range={range_}")
    assert ids(body) == [("transition", made[k]) for k in expected]


def test_a_fixed_window_with_an_offset(as_viewer: Client, fleet: Fleet) -> None:
    fleet.add("checkout/db", "open", timedelta(hours=3, minutes=1))
    inside = fleet.add("checkout/db", "open", timedelta(hours=2, minutes=30))
    fleet.add("checkout/db", "open", timedelta(hours=1, minutes=59))
    # 09:00 to 10:00 UTC, written at +01:00.
    body = data(as_viewer, "from=2026-12-05T10:00:00%2B01:00&to=2026-12-05T11:00:00%2B01:00")
    assert ids(body) == [("transition", inside.pk)]
    assert body["from"] == "2026-12-05T09:00:00Z" and body["to"] == "2026-12-05T10:00:00Z"
    html = get(as_viewer, "from=2026-12-05T09:00:00Z&to=2026-12-05T10:00:00Z").content.decode()
    assert 'aria-pressed="true"' not in html  # no preset is shown


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("from=2026-10-01T00:00:00Z&to=2026-11-02T00:00:01Z", "from", "at most 31 days"),
        ("from=2026-12-05T11:00:00Z&to=2026-12-05T11:00:00Z", "from", "must be before to"),
        ("from=2026-12-05T13:00:00Z", "from", "must be before to (or before now"),
        ("from=yesterday", "from", "must be an ISO 8601 time with a zone"),
        ("from=2026-12-05T11:00:00", "from", "must be an ISO 8601 time with a zone"),
        ("from=2026-12-05T11:00:00Z&to=soon", "to", "must be an ISO 8601 time"),
        ("range=2h", "range", "must be one of 15m, 1h, 24h"),
    ],
)
def test_a_window_that_cannot_be_shown(
    as_viewer: Client, fleet: Fleet, query: str, field: str, reason: str
) -> None:
    recent = fleet.add("checkout/db", "open", timedelta(minutes=5))
    # The page says why and shows the last hour.
    response = get(as_viewer, query)
    assert response.status_code == 200
    html = response.content.decode()
    assert "could not be shown" in html and f"{field}: " in html and reason in html
    assert re.findall(r'value="([^"]+)" aria-pressed="true"', html) == ["1h"]
    assert f'data-id="{recent.pk}"' in html
    # The data answers 400 naming the field.
    response = get(as_viewer, f"{query}&format=json")
    assert response.status_code == 400
    assert response.json()["field"] == field and reason in response.json()["reason"]


def test_exactly_31_days_is_shown(as_viewer: Client, fleet: Fleet) -> None:
    body = data(as_viewer, "from=2026-11-01T00:00:00Z&to=2026-12-02T00:00:00Z")
    assert body["from"] == "2026-11-01T00:00:00Z"


def test_the_shared_window_parser_names_the_field() -> None:
    with pytest.raises(ParamError) as exc:
        parse_window("2026-12-05T12:00:00Z", "2026-12-05T11:00:00Z", NOW, timedelta(days=1))
    assert (exc.value.field, exc.value.reason) == (
        "from",
        "must be before to (or before now, without to)",
    )
    assert parse_window("", "2026-12-05T11:00:00Z", NOW, timedelta(days=1)) is None
    window = parse_window(" 2026-12-05T11:00:00Z ", "", NOW, timedelta(days=1))
    assert window is not None and window.end is None and window.shown_end(NOW) == NOW


# --- the filters ------------------------------------------------------------------------------


def test_filters(as_viewer: Client, fleet: Fleet) -> None:
    a = fleet.add("checkout/payments", "open", timedelta(minutes=1))
    b = fleet.add("checkout/payments", "half_open", timedelta(minutes=2), instance="web-2")
    c = fleet.add("checkout/db", "closed", timedelta(minutes=3), from_state="open")
    d = fleet.add("ledger/postgres", "open", timedelta(minutes=4))
    pay = fleet.circuits["checkout/payments"].pk

    def picked(query: str) -> list[int]:
        return [i for kind, i in ids(data(as_viewer, query)) if kind == "transition"]

    assert picked("") == [a.pk, b.pk, c.pk, d.pk]
    assert picked("service=checkout") == [a.pk, b.pk, c.pk]
    assert picked("service=ledger") == [d.pk]
    assert picked(f"circuit={pay}") == [a.pk, b.pk]
    assert picked("state=open") == [a.pk, d.pk]
    assert picked("state=open&state=closed") == [a.pk, c.pk, d.pk]
    assert picked("instance=web-2") == [b.pk]
    assert picked("service=checkout&state=open&instance=web-1") == [a.pk]
    assert picked("service=nosuch") == []
    # Empty values (a submitted form's untouched fields) are no filter.
    assert picked("service=&circuit=&instance=&state=") == [a.pk, b.pk, c.pk, d.pk]


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("circuit=12x", "circuit", "must be an id"),
        ("circuit=%C2%B2", "circuit", "must be an id"),
        ("circuit=99999999999999999999", "circuit", "must be an id"),
        ("state=opened", "state", "must be one of closed, open, half_open"),
        ("service=has%20space", "service", "must be a name"),
        ("instance=" + "x" * 201, "instance", "must be a name"),
        ("before_id=transition:1", "before_at", "must be given with before_id"),
        ("before_at=2026-12-05T11:00:00Z", "before_id", "must be given with before_at"),
        ("before_at=2026-12-05T11:00:00Z&before_id=row:1", "before_id", "<kind>:<id>"),
        ("before_at=2026-12-05T11:00:00Z&before_id=transition:x", "before_id", "must be an id"),
        ("before_at=noon&before_id=transition:1", "before_at", "ISO 8601"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(
    as_viewer: Client, fleet: Fleet, query: str, field: str, reason: str
) -> None:
    fleet.add("checkout/db", "open", timedelta(minutes=5))
    response = get(as_viewer, query)
    assert response.status_code == 400
    html = response.content.decode()
    assert re.search(rf'role="alert"[^>]*data-error-field="{field}">{field}: [^<]*', html)
    assert reason.replace("<", "&lt;").replace(">", "&gt;") in html
    assert "data-kind=" not in html  # nothing is read for a request that does not parse
    response = get(as_viewer, f"{query}&format=json")
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field and reason in body["reason"], body


def test_a_bad_circuit_marks_its_field(as_viewer: Client, fleet: Fleet) -> None:
    html = get(as_viewer, "circuit=abc").content.decode()
    assert re.search(r'name="circuit" value="abc"[^>]*aria-invalid="true"', html)


# --- the timeline -----------------------------------------------------------------------------


@pytest.fixture
def incident(fleet: Fleet, operator: User) -> dict[str, Any]:
    """A trip on checkout/payments (two instances), a force open and its release, a
    config change on ledger/postgres, and an alert that fired and resolved."""
    pay, pg = fleet.circuits["checkout/payments"], fleet.circuits["ledger/postgres"]
    made = {
        "t1": fleet.add("checkout/payments", "open", timedelta(minutes=40)),
        "t2": fleet.add("checkout/payments", "open", timedelta(minutes=39), instance="web-2"),
        "t3": fleet.add("ledger/postgres", "open", timedelta(minutes=30)),
    }
    force_circuit(
        pay, "forced_open", reason="provider outage", user=operator, now=NOW - timedelta(minutes=35)
    )
    release_circuit(pay, user=operator, reason="recovered", now=NOW - timedelta(minutes=10))
    create_config_version(
        pg, {"failure_threshold": 9}, expected_version=0, user=operator, reason="fewer trips",
        now=NOW - timedelta(minutes=20),
    )  # fmt: skip
    rule = AlertRule.objects.create(name="payments open", kind="open_too_long", severity="critical")
    made["alert"] = Alert.objects.create(
        rule=rule,
        circuit=pay,
        status="resolved",
        started_at=NOW - timedelta(minutes=38),
        fired_at=NOW - timedelta(minutes=37),
        resolved_at=NOW - timedelta(minutes=5),
        created_at=NOW - timedelta(minutes=38),
    )
    return made


def test_the_timeline_has_a_lane_per_service_with_every_kind(
    as_viewer: Client, incident: dict[str, Any], fleet: Fleet
) -> None:
    tl = data(as_viewer)["timeline"]
    assert tl["lanes"] == [
        {"service": "checkout", "transitions": 2, "actions": 2, "alerts": 1},
        {"service": "ledger", "transitions": 1, "actions": 1, "alerts": 0},
    ]
    pay = fleet.circuits["checkout/payments"].pk
    assert tl["circuits"][str(pay)] == [0, "checkout/payments"]
    assert [t[4] for t in tl["transitions"]] == ["open", "open", "open"]
    assert [(a[2], a[3], a[4]) for a in tl["actions"]] == [
        ("force", "forced open by otto", "forced_open"),
        ("config", "config v1 by otto", ""),
        ("release", "released by otto", ""),
    ]
    (alert,) = tl["alerts"]
    assert alert[2:5] == [pay, "payments open", "critical"]
    assert alert[5] == incident["alert"].window_query
    assert tl["truncated"] == {"transitions": False, "actions": False, "alerts": False}
    assert tl["start"] == round((NOW - timedelta(hours=1)).timestamp() * 1000)


def test_the_table_interleaves_every_kind_newest_first(
    as_viewer: Client, incident: dict[str, Any]
) -> None:
    rows = data(as_viewer)["rows"]
    assert [(r["kind"], r.get("what") or r["state"]) for r in rows] == [
        ("resolved", "payments open resolved"),
        ("action", "released by otto"),
        ("action", "config v1 by otto"),
        ("transition", "open"),
        ("action", "forced open by otto"),
        ("fired", "payments open fired"),
        ("transition", "open"),
        ("transition", "open"),
    ]
    # Each row links to its circuit page around its moment.
    t1 = incident["t1"]
    assert rows[-1]["link"] == (
        f"/circuits/{t1.circuit_id}/?from=2026-12-05T11:05:00Z&to=2026-12-05T11:35:00Z#traffic"
    )
    assert rows[0]["link"].endswith(f"?{incident['alert'].window_query}#traffic")


def test_state_and_instance_select_transitions_only(
    as_viewer: Client, incident: dict[str, Any]
) -> None:
    body = data(as_viewer, "state=open")
    assert {r["kind"] for r in body["rows"]} == {"transition"}
    assert body["timeline"]["actions"] == [] and body["timeline"]["alerts"] == []
    body = data(as_viewer, "service=ledger")
    assert [r["kind"] for r in body["rows"]] == ["action", "transition"]


def test_an_alert_firing_across_the_window_is_drawn(as_viewer: Client, fleet: Fleet) -> None:
    rule = AlertRule.objects.create(name="long", kind="open_too_long")
    Alert.objects.create(
        rule=rule,
        circuit=fleet.circuits["checkout/db"],
        status="firing",
        started_at=NOW - timedelta(hours=3),
        fired_at=NOW - timedelta(hours=2),
        created_at=NOW - timedelta(hours=3),
    )
    body = data(as_viewer)
    assert len(body["timeline"]["alerts"]) == 1 and body["timeline"]["alerts"][0][1] is None
    assert body["rows"] == []  # it neither fired nor resolved in the window


def test_past_the_limit_the_page_says_so(
    as_viewer: Client, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(incidents, "TIMELINE_LIMIT", 3)
    for m in range(5):
        fleet.add("checkout/db", "open", timedelta(minutes=10 + m))
    body = data(as_viewer)
    assert len(body["timeline"]["transitions"]) == 3
    assert body["timeline"]["truncated"]["transitions"] is True
    assert len(body["rows"]) == 5  # the table lists every one
    html = get(as_viewer).content.decode()
    assert "more than 3 transitions" in html
    assert "the timeline draws the first 3 of each kind only. Narrow the window or filter" in html


def test_an_empty_window_says_so(as_viewer: Client, fleet: Fleet) -> None:
    html = get(as_viewer, "service=checkout").content.decode()
    assert "Nothing happened in this window with these filters." in html
    assert 'id="incident-data"' not in html


def test_the_page_embeds_the_timeline_and_its_script(
    as_viewer: Client, incident: dict[str, Any]
) -> None:
    html = get(as_viewer).content.decode()
    assert '<script id="incident-data" type="application/json">' in html
    assert re.search(r'<script src="/static/dashboard/incidents\.js[^"]*" defer>', html)
    assert "<script>" not in html and " style=" not in html
    assert re.search(r'data-count="transitions">3 transitions<', html)
    assert re.search(r'data-count="actions">3 operator actions<', html)
    assert re.search(r'data-count="alerts">1 alert<', html)


def test_export_links_carry_the_window_and_filters(as_viewer: Client, fleet: Fleet) -> None:
    fleet.add("checkout/db", "open", timedelta(minutes=5))
    html = get(as_viewer, "range=15m&service=checkout&state=open&state=half_open&instance=web-1")
    links = re.findall(r'<a href="([^"]+)" data-export="(\w+)">', html.content.decode())
    assert [fmt for _, fmt in links] == ["csv", "jsonl"]
    url = urlsplit(links[0][0].replace("&amp;", "&"))
    assert url.path == "/api/v1/transitions/export/"
    assert parse_qs(url.query) == {
        "format": ["csv"],
        "since": ["2026-12-05T11:45:00Z"],
        "until": ["2026-12-05T12:00:00Z"],
        "service": ["checkout"],
        "state": ["open", "half_open"],
        "instance": ["web-1"],
    }
    # The link streams exactly the transitions the page shows.
    fleet.add("checkout/db", "open", timedelta(minutes=3), instance="web-2")
    fleet.add("checkout/db", "closed", timedelta(minutes=20))
    with time_machine.travel(NOW, tick=False):
        answer = as_viewer.get(links[0][0].replace("&amp;", "&"))
    assert answer.status_code == 200
    rows = body(answer).decode().splitlines()
    assert rows[0].split(",")[2:8] == ["circuit_name", "instance", "seq", "from", "to", "at"]
    assert [row.split(",")[2:8] for row in rows[1:]] == [
        ["db", "web-1", "1", "closed", "open", "2026-12-05T11:55:00Z"]
    ]


# --- keyset pages ------------------------------------------------------------------------------


def _walk(client: Client, query: str) -> tuple[list[tuple[str, int]], list[str]]:
    seen: list[tuple[str, int]] = []
    sql: list[str] = []
    url: str | None = f"?{query}&format=json"
    while url:
        with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as queries:
            body = client.get(f"/incidents/{url}").json()
        sql += [q["sql"] for q in queries.captured_queries]
        seen += ids(body)
        url = body["older"] and body["older"] + "&format=json"
    return seen, sql


def test_pages_follow_each_other_without_offset_or_count(
    as_viewer: Client, incident: dict[str, Any], fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two transitions at the moment of the config change's audit row: rows of one moment
    # are ordered by kind, then id (newest first), across pages too.
    extra = [fleet.add("ledger/postgres", "half_open", timedelta(minutes=20)) for _ in range(2)]
    config = AuditEvent.objects.get(action="config.create")
    whole = ids(data(as_viewer, "range=1h"))
    assert len(whole) == 10
    at = whole.index(("action", config.pk))
    assert whole[at : at + 3] == [("action", config.pk)] + [
        ("transition", t.pk) for t in extra[::-1]
    ]
    monkeypatch.setattr(incidents, "PAGE_SIZE", 3)
    assert len(ids(data(as_viewer, "range=1h"))) == 3
    seen, sql = _walk(as_viewer, "range=1h")
    assert seen == whole
    for statement in sql:
        assert "OFFSET" not in statement.upper(), statement
        assert "COUNT(" not in statement.upper(), statement


def test_older_pages_stay_put_while_rows_are_inserted(
    as_viewer: Client, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(incidents, "PAGE_SIZE", 4)
    first = [fleet.add("checkout/db", "open", timedelta(minutes=m)) for m in range(1, 11)]
    body = data(as_viewer)
    page1 = ids(body)
    assert page1 == [("transition", t.pk) for t in first[:4]]
    older = body["older"]
    assert "before_at=" in older and "before_id=transition" in older
    # A page's link fixes the window: the preset hour no longer moves with the clock.
    assert "from=2026-12-05T11:00:00Z" in older and "to=2026-12-05T12:00:00Z" in older
    # New rows arrive: newer than everything, and between rows already listed.
    fleet.add("checkout/db", "open", timedelta(seconds=10))
    fleet.add("checkout/db", "open", timedelta(minutes=2, seconds=30))
    later = NOW + timedelta(minutes=3)
    with time_machine.travel(later, tick=False):
        page2 = ids(as_viewer.get(f"/incidents/{older}&format=json").json())
    assert page2 == [("transition", t.pk) for t in first[4:8]]


def test_the_queries_do_not_grow_with_the_rows(
    as_viewer: Client, fleet: Fleet, incident: dict[str, Any]
) -> None:
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert get(as_viewer).status_code == 200
        return len(queries.captured_queries)

    before = count()
    # Session, user, permissions (2), timeline (5), table (4), badge, services.
    assert before == 15
    for m in range(40):
        fleet.add("checkout/db", "open", timedelta(minutes=1, seconds=m))
    assert count() == before


# --- links to it -------------------------------------------------------------------------------


def test_alert_rows_and_the_circuit_page_link_to_it(
    as_viewer: Client, incident: dict[str, Any], fleet: Fleet
) -> None:
    alert = incident["alert"]
    html = as_viewer.get("/alerts/").content.decode()
    assert (
        f'<a href="/incidents/?{alert.window_query.replace("&", "&amp;")}">incident view</a>'
        in (html)
    )
    pay = fleet.circuits["checkout/payments"].pk
    html = as_viewer.get(f"/circuits/{pay}/").content.decode()
    assert f'<a href="/incidents/?circuit={pay}">incident view</a>' in html
    window = "from=2026-12-05T11:00:00Z&to=2026-12-05T11:30:00Z"
    html = as_viewer.get(f"/circuits/{pay}/?{window}").content.decode()
    assert f'<a href="/incidents/?circuit={pay}&amp;{window.replace("&", "&amp;")}">' in html
