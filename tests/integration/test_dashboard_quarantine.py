"""The dashboard's quarantine page over HTTP on real Redis: what it lists (in force first,
then ended; hostile values escaped, links only http(s)), and its release form, which posts
to the API's audited release with the session's CSRF token: a reason required, operators
only."""

import json
import re
from datetime import timedelta

import pytest

from config.policy import Policy
from core.records import Incident, utcnow
from receiver.app import create_app
from tests import samples
from tests.sessions import logged_in

pytestmark = pytest.mark.integration

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def app(make_settings, users_file):
    settings = make_settings(users_file=users_file, jira_url="https://jira.example.com")
    return create_app(settings, policy=Policy())


@pytest.fixture
def store(app):
    return app.extensions["backstop"].store


def quarantine(name: str, *, hours_ago: float = 1, **fields):
    now = utcnow()
    values = {
        "id": f"rb-{name}",
        "images": [f"shop/{name}:2.1"],
        "digests": [f"docker.io/shop/{name}@sha256:{'ab' * 32}"],
        "reason": "rolled back: verified (kpis_recovered)",
        "quarantined_at": now - timedelta(hours=hours_ago),
    }
    return samples.quarantine(**{**values, **fields})


@pytest.fixture
def seeded(store):
    """checkout (Jira OPS-9) and cart in force, one expired, one released by bob."""
    store.quarantine.add(quarantine("checkout", hours_ago=2))
    store.quarantine.add(quarantine("cart", hours_ago=1))
    store.quarantine.add(quarantine("old", hours_ago=400, expires_at=utcnow()))
    store.quarantine.add(
        quarantine(
            "gone",
            hours_ago=3,
            end="released",
            ended_by="user:bob",
            end_reason="fixed in 2.2",
            ended_at=utcnow(),
        )
    )
    incident = Incident(id="rb-checkout", key="k")
    incident.jira.ref = "OPS-9"
    store.incidents.save(incident)
    return store


def form_url(page: str, quarantine_id: str) -> str:
    """Where the page's release form for `quarantine_id` posts."""
    row = re.search(rf'<tr data-quarantine="{quarantine_id}".*?</tr>', page, re.S).group(0)
    return re.search(r'data-api="([^"]+)"', row).group(1)


def post(client, url: str, body, csrf: str | None):
    headers = {"X-CSRF-Token": csrf} if csrf is not None else {}
    raw = body if isinstance(body, str) else json.dumps(body)
    return client.post(url, data=raw, headers=headers, content_type="application/json")


def releases(store) -> list:
    """The audit log's quarantine releases (logins are audited too)."""
    return [e for e in store.automation.audit_log() if e.action == "release_quarantine"]


def test_the_page_lists_quarantines_in_force_first_then_ended(app, seeded):
    operator, _ = logged_in(app, "alice")
    page = operator.get("/quarantine")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.text
    assert 'aria-current="page">Quarantine</a>' in text
    in_force, ended = text.split('data-testid="ended-quarantine-table"')
    assert re.findall(r'data-testid="quarantine-row"', in_force) and "rb-old" not in in_force
    assert in_force.index('data-quarantine="rb-cart"') < in_force.index('"rb-checkout"')
    assert "shop/checkout:2.1" in in_force and "sha256:" + "ab" * 32 in in_force
    assert 'href="https://jira.example.com/browse/OPS-9"' in in_force and ">OPS-9</a>" in in_force
    assert 'href="/rollbacks/rb-checkout"' in in_force
    assert in_force.count('data-testid="release"') == 2
    assert form_url(text, "rb-checkout") == "/api/v1/quarantine/rb-checkout/release"
    assert ended.count('data-testid="ended-quarantine-row"') == 2
    assert ">expired</code>" in ended and ">released</code>" in ended
    assert "user:bob" in ended and "fixed in 2.2" in ended
    assert 'data-testid="release"' not in ended


def test_a_release_from_the_page_is_audited_with_its_reason(app, seeded):
    operator, csrf = logged_in(app, "alice")
    url = form_url(operator.get("/quarantine").text, "rb-checkout")
    answer = post(operator, url, {"reason": "  fixed in 2.2 (OPS-9)  "}, csrf)
    assert answer.status_code == 200, answer.text
    stored = seeded.quarantine.get("rb-checkout")
    assert (stored.end, stored.ended_by, stored.end_reason) == (
        "released",
        "user:alice",
        "fixed in 2.2 (OPS-9)",
    )
    [entry] = releases(seeded)
    assert (entry.actor, entry.action, entry.target, entry.reason) == (
        "user:alice",
        "release_quarantine",
        "rb-checkout",
        "fixed in 2.2 (OPS-9)",
    )
    text = operator.get("/quarantine").text
    in_force, ended = text.split('data-testid="ended-quarantine-table"')
    assert '"rb-checkout"' not in in_force and 'data-quarantine="rb-checkout"' in ended
    assert "fixed in 2.2 (OPS-9)" in ended


@pytest.mark.parametrize(
    ("body", "csrf", "status", "code", "says"),
    [
        ({"reason": "ok"}, None, 403, "csrf_failed", "X-CSRF-Token"),
        ({"reason": "ok"}, "x" * 43, 403, "csrf_failed", "X-CSRF-Token"),
        ({}, "page", 400, "invalid_payload", "reason"),
        ({"reason": "   "}, "page", 400, "invalid_payload", "reason"),
    ],
)
def test_a_release_without_the_csrf_token_or_a_reason_is_refused(
    app, seeded, body, csrf, status, code, says
):
    operator, token = logged_in(app, "alice")
    url = form_url(operator.get("/quarantine").text, "rb-checkout")
    answer = post(operator, url, body, token if csrf == "page" else csrf)
    assert answer.status_code == status, answer.text
    error = answer.get_json()["error"]
    assert error["code"] == code and says in error["message"], error
    assert seeded.quarantine.get("rb-checkout").active
    assert releases(seeded) == []


def test_a_viewer_sees_the_page_but_cannot_release(app, seeded):
    viewer, csrf = logged_in(app, "victor")
    text = viewer.get("/quarantine").text
    assert 'data-testid="release"' not in text and "operators release" in text
    refused = post(viewer, "/api/v1/quarantine/rb-checkout/release", {"reason": "ok"}, csrf)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    assert seeded.quarantine.get("rb-checkout").active


def test_hostile_values_from_redis_are_escaped_and_links_stay_http(app, store):
    evil = quarantine(
        "evil",
        images=[HOSTILE],
        digests=[HOSTILE],
        reason=HOSTILE,
        revision=HOSTILE,
    )
    evil.rollback_id = "javascript:alert(1)"
    evil.workload.name = HOSTILE
    store.quarantine.add(evil)
    ended = quarantine("evil-ended", end="released", ended_by=HOSTILE, end_reason=HOSTILE)
    store.quarantine.add(ended)
    incident = Incident(id="javascript:alert(1)", key="k")
    incident.jira.ref = '"><img src=x onerror=alert(1)>'
    store.incidents.save(incident)
    operator, _ = logged_in(app, "alice")
    page = operator.get("/quarantine")
    assert page.status_code == 200
    assert "<script>" not in page.text and "<img" not in page.text
    assert "&lt;script&gt;" in page.text and "&#34;&gt;&lt;img" in page.text
    hrefs = re.findall(r'href="([^"]*)"', page.text)
    assert not [h for h in hrefs if h.lower().startswith("javascript")], hrefs
    assert "https://jira.example.com/browse/%22%3E%3Cimg" in page.text


def test_the_page_says_when_nothing_is_quarantined(app):
    operator, _ = logged_in(app, "alice")
    text = operator.get("/quarantine").text
    assert 'data-testid="no-quarantine"' in text and 'data-testid="no-ended-quarantine"' in text


def test_the_page_sends_strangers_to_log_in(app):
    answer = app.test_client().get("/quarantine")
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/login")
