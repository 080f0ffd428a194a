"""Everything a page needs ships with the project: no page (dashboard, login, admin,
browsable API, Swagger UI) and no stylesheet they load references another host.

The crawl starts from the known entry points as a superuser and follows every
same-site link (GET only, logout excluded), so a new page is covered without being
listed here. The assets each page references must also be served by the project.
"""

import re
from collections import deque
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.dashboard.conftest import fleet  # noqa: F401  (a fixture: circuits to show)

pytestmark = pytest.mark.django_db

ENTRY_POINTS = ["/", "/services/", "/instances/", "/alerts/", "/audit/", "/admin/",
                "/api/docs/", "/api/v1/", "/api/v1/circuits/"]  # fmt: skip
ATTR = re.compile(r"""\b(?:src|href|action|data-src|srcset)\s*=\s*["']([^"']+)["']""", re.I)
HREF = re.compile(r"""<a\b[^>]*\bhref\s*=\s*["']([^"']+)["']""", re.I)
CSS_URL = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])([^"')\s]+)""", re.I)
ABSOLUTE = re.compile(r"^(?:https?:)?//", re.I)
MAX_PAGES = 150
SKIP = ("/logout/", "/admin/logout/")
# The admin's per-object pages repeat the change form's template.
REPEATS = re.compile(r"/(delete|history)/$")


def outside(url: str) -> bool:
    """Whether ``url`` (as written in a page) names another host."""
    return bool(ABSOLUTE.match(url)) and urlsplit(url, "http").hostname != "testserver"


def references(body: str, css: bool = False) -> list[str]:
    return (CSS_URL if css else ATTR).findall(body)


def crawl(client: Client) -> dict[str, list[str]]:
    """Every same-site page reachable from the entry points: path -> its references."""
    seen: dict[str, list[str]] = {}
    todo = deque(ENTRY_POINTS)
    while todo and len(seen) < MAX_PAGES:
        path = todo.popleft()
        if path in seen or path.startswith((*SKIP, "/static/")) or REPEATS.search(path):
            continue
        response = client.get(path, HTTP_ACCEPT="text/html")
        if "text/html" not in response.get("Content-Type", ""):
            seen[path] = []
            continue
        assert response.status_code in (200, 302), (path, response.status_code)
        html = response.content.decode()
        seen[path] = references(html)
        for ref in HREF.findall(html):  # links only: form actions are POST targets
            target = urlsplit(urljoin(path, ref.replace("&amp;", "&")))
            if not target.netloc and target.path.startswith("/") and not target.query:
                todo.append(target.path)
    return seen


def test_no_page_references_another_host(fleet: Any, client: Client) -> None:  # noqa: F811
    client.force_login(User.objects.create_superuser("root", password="root-pw-123!"))
    pages = crawl(client)
    # The crawl reached the pages that matter, and found assets to check.
    for path in ["/", "/admin/", "/api/docs/", "/api/v1/", "/alerts/", "/audit/"]:
        assert path in pages, sorted(pages)
    assert any(p.startswith("/circuits/") for p in pages), sorted(pages)
    assert any(p.startswith("/admin/circuits/") for p in pages), sorted(pages)
    assert len(pages) < MAX_PAGES, "the crawl was cut short"
    offending = {p: [r for r in refs if outside(r)] for p, refs in pages.items()}
    assert not {p: r for p, r in offending.items() if r}

    assets = {
        urlsplit(urljoin(p, r)).path
        for p, refs in pages.items() for r in refs
        if urlsplit(urljoin(p, r)).path.startswith("/static/")
    }  # fmt: skip
    assert any("drf_spectacular_sidecar/swagger-ui-dist" in a for a in assets), assets
    assert client.get("/api/redoc/").status_code == 404  # its template loads Google fonts
    for asset in sorted(assets):
        response = client.get(asset)
        assert response.status_code == 200, asset
        if asset.endswith(".css"):
            body = b"".join(
                response.streaming_content if response.streaming else [response.content]
            )
            bad = [u for u in references(body.decode(errors="replace"), css=True) if outside(u)]
            assert not bad, (asset, bad)


def test_the_crawler_sees_an_outside_reference() -> None:
    page = '<script src="https://cdn.example.com/x.js"></script><a href="/ok/">ok</a>'
    assert [r for r in references(page) if outside(r)] == ["https://cdn.example.com/x.js"]
    assert not outside("/static/app.css") and not outside("http://testserver/x")
    assert outside("//cdn.example.com/a.css")
    assert references("@import 'https://fonts.example/x.css'; a{}", css=True)
