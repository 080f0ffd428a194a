"""The search (dashboard/search.py, GET /search/): ranking, limit, bounds, permissions,
the JSON for the header box and the page for the plain form; the same answers on SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from controlplane.circuits.models import Circuit
from controlplane.circuits.operations import force_circuit
from dashboard.search import MAX_LIMIT, MAX_QUERY_LENGTH, search
from tests.dashboard.search_fleet import EXPECTED, labels, seed

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def names(db: None) -> None:
    seed()


def get_json(client: Client, q: str, **params: Any) -> Any:
    return client.get("/search/", {"q": q, "format": "json", **params})


@pytest.mark.parametrize("q", list(EXPECTED))
def test_results_rank_exact_then_prefix_then_contains(names: None, q: str) -> None:
    results, more = search(q, MAX_LIMIT)
    assert labels(results) == EXPECTED[q]
    assert more is False


def test_the_json_answer(names: None, as_viewer: Client) -> None:
    payments = Circuit.objects.get(service__name="checkout", name="payments")
    force_circuit(payments, "forced_open", reason="drill", user=None)
    response = get_json(as_viewer, "  payments ")
    assert response.status_code == 200
    body = response.json()
    assert body["q"] == "payments" and body["count"] == 5 and body["more"] is False
    first, second, service = body["results"][:3]
    assert first == {
        "kind": "circuit",
        "label": "checkout/payments",
        "service": "checkout",
        "name": "payments",
        "url": f"/circuits/{payments.pk}/",
        "state": "forced_open",
        "state_label": "forced open",
    }
    assert second["state"] == "unknown"  # no live instance
    assert service == {
        "kind": "service",
        "label": "payments-gw",
        "service": "payments-gw",
        "name": "",
        "url": "/?service=payments-gw",
        "state": None,
        "state_label": None,
    }


def test_accept_json_without_format_answers_json(names: None, as_viewer: Client) -> None:
    response = as_viewer.get("/search/", {"q": "ledger"}, HTTP_ACCEPT="application/json")
    assert response["Content-Type"] == "application/json"
    assert "Accept" in response["Vary"]
    page = as_viewer.get("/search/", {"q": "ledger"}, HTTP_ACCEPT="text/html,*/*;q=0.8")
    assert page["Content-Type"].startswith("text/html") and "Accept" in page["Vary"]
    assert [r["label"] for r in response.json()["results"]] == ["billing/ledger"]


def test_at_most_limit_results_and_more_says_so(names: None, as_viewer: Client) -> None:
    body = get_json(as_viewer, "checkout", limit="2").json()
    assert [r["label"] for r in body["results"]] == ["checkout", "checkout/db"]
    assert body["count"] == 2 and body["more"] is True and body["limit"] == 2
    body = get_json(as_viewer, "checkout").json()
    assert body["count"] == 7 and body["more"] is False and body["limit"] == 10


def test_the_default_limit_bounds_a_large_fleet(as_viewer: Client) -> None:
    seed()
    from controlplane.circuits.models import Service

    many = Service.objects.create(name="many")
    Circuit.objects.bulk_create(Circuit(service=many, name=f"c-{i:03d}") for i in range(60))
    body = get_json(as_viewer, "c").json()
    assert body["count"] == 10 and body["more"] is True
    page = as_viewer.get("/search/", {"q": "c"})
    assert page.content.count(b"<li data-kind=") == MAX_LIMIT


def test_empty_and_blank_queries_answer_nothing_without_a_query(
    names: None, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(0):
        assert search("") == ([], False)
        assert search("pay ments") == ([], False)
        assert search("\x00") == ([], False)


def test_a_search_costs_three_queries_whatever_it_matches(
    names: None, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(3):  # circuits, services, fleet state of those shown
        results, _ = search("c", 3)
    assert len(results) == 3
    with django_assert_num_queries(2):  # nothing to annotate
        search("zzz")


def test_empty_q_is_an_empty_answer(names: None, as_viewer: Client) -> None:
    for params in ({"q": ""}, {"q": "   "}, {}):
        response = as_viewer.get("/search/", {**params, "format": "json"})
        assert response.status_code == 200
        assert response.json()["results"] == [] and response.json()["count"] == 0


def test_a_query_past_the_bound_is_a_400_naming_q(as_viewer: Client) -> None:
    assert get_json(as_viewer, "a" * MAX_QUERY_LENGTH).status_code == 200
    response = get_json(as_viewer, "a" * (MAX_QUERY_LENGTH + 1))
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"q: at most {MAX_QUERY_LENGTH} characters, got {MAX_QUERY_LENGTH + 1}",
        "field": "q",
        "reason": f"at most {MAX_QUERY_LENGTH} characters, got {MAX_QUERY_LENGTH + 1}",
        "errors": {"q": f"at most {MAX_QUERY_LENGTH} characters, got {MAX_QUERY_LENGTH + 1}"},
    }
    page = as_viewer.get("/search/", {"q": "a" * (MAX_QUERY_LENGTH + 1)})
    assert page.status_code == 400
    assert b"q: at most 401 characters" in page.content and b'aria-invalid="true"' in page.content


@pytest.mark.parametrize("limit", ["0", str(MAX_LIMIT + 1), "ten", "1e3", "-1", "²", "1000"])
def test_a_bad_limit_is_a_400_naming_limit(as_viewer: Client, limit: str) -> None:
    response = get_json(as_viewer, "pay", limit=limit)
    assert response.status_code == 400
    assert response.json()["field"] == "limit"
    assert response.json()["reason"].startswith(f"must be an integer from 1 to {MAX_LIMIT}")


def test_anonymous_json_is_a_401_and_the_page_redirects_to_login(client: Client) -> None:
    response = get_json(client, "pay")
    assert response.status_code == 401
    assert response.json()["field"] == "authorization"
    response = client.get("/search/", {"q": "pay"})
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_a_user_without_a_role_is_forbidden(login: Any) -> None:
    client = login(User.objects.create_user("nobody", password="x-pw-123!"))
    assert get_json(client, "pay").status_code == 403
    assert get_json(client, "pay").json()["field"] == "detail"
    assert client.get("/search/", {"q": "pay"}).status_code == 403


def test_search_is_get_only(as_viewer: Client) -> None:
    assert as_viewer.post("/search/", {"q": "pay"}).status_code == 405


def test_the_results_page_works_as_a_plain_form(names: None, as_viewer: Client) -> None:
    payments = Circuit.objects.get(service__name="checkout", name="payments")
    response = as_viewer.get("/search/", {"q": "payments"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "5 results for “payments”" in html
    assert f'<a href="/circuits/{payments.pk}/">checkout/payments</a>' in html
    assert '<a href="/?service=payments-gw">payments-gw</a>' in html
    assert 'data-state="unknown">unknown</span>' in html
    assert html.index("checkout/payments") < html.index("billing/payments-retry")
    assert (
        "No circuit or service name contains “zzz”"
        in as_viewer.get("/search/", {"q": "zzz"}).content.decode()
    )
    assert "Type part of a circuit or service name" in as_viewer.get("/search/").content.decode()


@pytest.mark.parametrize("path", ["/", "/services/", "/instances/", "/audit/", "/alerts/"])
def test_every_page_has_the_search_box(as_viewer: Client, path: str) -> None:
    html = as_viewer.get(path).content.decode()
    assert 'id="search-q"' in html and 'action="/search/"' in html
    assert f'maxlength="{MAX_QUERY_LENGTH}"' in html
    assert "dashboard/search.js" in html and "dashboard/search.css" in html


def test_the_login_page_has_no_search_box(client: Client) -> None:
    html = client.get("/login/").content.decode()
    assert 'id="search-q"' not in html and "search.js" not in html


def test_the_same_answers_on_sqlite(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.dashboard.sqlite_search_check", str(tmp_path / "db.sqlite3")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers.pop("checkout limit 2") == ["service:checkout", "checkout/db", "more=True"]
    assert answers == EXPECTED
