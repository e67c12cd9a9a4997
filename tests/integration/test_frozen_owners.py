"""Frozen owners over HTTP on real Redis: the API (list, lift: credentials, roles, CSRF,
statuses, audit, the review it schedules) and the dashboard page (rows, lift form, escaping).
"""

import json
from datetime import timedelta

import pytest
from rq.registry import ScheduledJobRegistry

from config.policy import Policy
from core import queues
from core.records import FrozenOwner, Incident, OwnerRecord, WorkloadRecord, utcnow
from receiver.app import create_app
from tests.conftest import API_TOKEN
from tests.sessions import logged_in

pytestmark = pytest.mark.integration

API = {"Authorization": f"Bearer {API_TOKEN}", "X-Backstop-Actor": "alice"}
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def app(make_settings, users_file):
    settings = make_settings(users_file=users_file, jira_url="https://jira.example.com")
    return create_app(settings, policy=Policy())


@pytest.fixture
def store(app):
    return app.extensions["backstop"].store


def freeze(name="shop", *, minutes_ago=60, **fields) -> FrozenOwner:
    now = utcnow()
    values = {
        "id": FrozenOwner.key("argoproj.io/v1alpha1", "Application", "argocd", name),
        "api_version": "argoproj.io/v1alpha1",
        "kind": "Application",
        "namespace": "argocd",
        "name": name,
        "how": "auto-sync disabled",
        "owner": OwnerRecord(kind="argocd", namespace="argocd", name=name, found_by="test"),
        "workload": WorkloadRecord(
            cluster="default", namespace="shop", kind="Deployment", name="checkout"
        ),
        "rollback_id": f"rollback-{name}",
        "bad_revision": "7",
        "reason": f"rollback rollback-{name} of default/shop/Deployment/checkout revision 7",
        "frozen_at": now - timedelta(minutes=minutes_ago),
        "expires_at": now + timedelta(days=3),
    }
    return FrozenOwner(**{**values, **fields})


@pytest.fixture
def seeded(store):
    """Two active freezes (shop with a Jira issue, cart without), one ended."""
    store.freezes.save(freeze("shop", minutes_ago=60))
    store.freezes.save(freeze("cart", minutes_ago=30))
    ended = freeze("old", minutes_ago=600)
    ended.end, ended.ended_at, ended.ended_by, ended.end_reason = (
        "expired",
        utcnow(),
        "backstop",
        "expired at noon",
    )
    store.freezes.save(ended)
    incident = Incident(id="rollback-shop", key="k")
    incident.jira.ref = "OPS-7"
    store.incidents.save(incident)
    return store


def lift(client, freeze_id, body=None, headers=API, raw=None):
    data = raw if raw is not None else json.dumps(body if body is not None else {"reason": "ok"})
    return client.post(
        f"/api/v1/owners/frozen/{freeze_id}/lift",
        data=data,
        headers=headers,
        content_type="application/json",
    )


def scheduled_reviews(redis_client) -> list[str]:
    registry = ScheduledJobRegistry(queue=queues.queue(redis_client, queues.DECISIONS))
    return [i for i in registry.get_job_ids() if i.startswith("freeze-review-")]


# -- the API ---------------------------------------------------------------------------------


def test_the_api_needs_credentials(app, seeded):
    client = app.test_client()
    assert client.get("/api/v1/owners/frozen").status_code == 401
    assert lift(client, freeze().id, headers={}).status_code == 401
    assert seeded.freezes.get(freeze().id).lift_requested_by == ""


def test_active_freezes_are_listed_newest_first_with_jira_key_and_links(app, seeded):
    answer = app.test_client().get("/api/v1/owners/frozen", headers=API)
    assert answer.status_code == 200
    listed = answer.get_json()["frozen"]
    assert [f["name"] for f in listed] == ["cart", "shop"]
    shop = listed[1]
    assert shop["active"] and shop["jira"] == "OPS-7" and shop["how"] == "auto-sync disabled"
    assert shop["links"] == {
        "rollback": "/api/v1/rollbacks/rollback-shop",
        "dashboard": "/rollbacks/rollback-shop",
        "lift": f"/api/v1/owners/frozen/{shop['id']}/lift",
        "jira": "https://jira.example.com/browse/OPS-7",
    }
    assert listed[0]["jira"] is None and listed[0]["links"]["jira"] is None


def test_all_lists_the_ended_ones_too_bounded(app, seeded):
    client = app.test_client()
    listed = client.get("/api/v1/owners/frozen?all=true", headers=API).get_json()["frozen"]
    assert [(f["name"], f["active"]) for f in listed] == [
        ("cart", True),
        ("shop", True),
        ("old", False),
    ]
    assert listed[2]["end"] == "expired" and listed[2]["links"]["lift"] is None
    one = client.get("/api/v1/owners/frozen?all=true&limit=1", headers=API).get_json()
    assert [f["name"] for f in one["frozen"]] == ["cart"]
    for query in ("all=maybe", "limit=0", "limit=5000"):
        bad = client.get(f"/api/v1/owners/frozen?{query}", headers=API)
        assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_query"


def test_a_lift_is_recorded_audited_and_reviewed_at_once(app, seeded, redis_client):
    before = utcnow()
    answer = lift(app.test_client(), freeze().id, {"reason": "  fixed forward in v1.5  "})
    assert answer.status_code == 202, answer.text
    body = answer.get_json()
    assert (
        body["lift_requested_by"] == "api:alice" and body["lift_reason"] == "fixed forward in v1.5"
    )
    stored = seeded.freezes.get(freeze().id)
    assert stored.active and stored.lift_requested_by == "api:alice"
    [entry] = seeded.automation.audit_log()
    assert (entry.actor, entry.action, entry.target, entry.reason) == (
        "api:alice",
        "lift_freeze_requested",
        freeze().id,
        "fixed forward in v1.5",
    )
    assert entry.details["request_id"]
    [job_id] = scheduled_reviews(redis_client)
    assert job_id == body["review_job_id"]
    due = ScheduledJobRegistry(
        queue=queues.queue(redis_client, queues.DECISIONS)
    ).get_scheduled_time(job_id)
    assert due - before <= timedelta(seconds=2)


def test_lifting_an_unknown_freeze_is_404_and_an_ended_one_409(app, seeded, redis_client):
    client = app.test_client()
    unknown = lift(client, "no.such.freeze")
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "not_found"
    assert lift(client, "x" * 700).status_code == 404
    ended = lift(client, freeze("old").id)
    assert ended.status_code == 409 and "already ended (expired)" in ended.text
    assert not seeded.freezes.get(freeze("old").id).active
    assert seeded.freezes.get(freeze("old").id).lift_requested_by == ""
    assert scheduled_reviews(redis_client) == [] and seeded.automation.audit_log() == []


@pytest.mark.parametrize(
    "raw",
    [
        "{}",
        '{"reason": ""}',
        '{"reason": "   "}',
        json.dumps({"reason": "x" * 1001}),
        '{"reason": "ok", "force": true}',
        '{"reason": 7}',
        "not json",
        "",
    ],
)
def test_a_lift_needs_a_reason_of_bounded_length(app, seeded, raw):
    answer = lift(app.test_client(), freeze().id, raw=raw)
    assert answer.status_code == 400, answer.text
    assert answer.get_json()["error"]["code"] in ("invalid_payload", "invalid_json")
    assert seeded.freezes.get(freeze().id).lift_requested_by == ""


def test_sessions_lift_only_as_operators_with_the_csrf_token(app, seeded):
    viewer, viewer_csrf = logged_in(app, "victor")
    assert viewer.get("/api/v1/owners/frozen").status_code == 200
    refused = lift(viewer, freeze().id, headers={"X-CSRF-Token": viewer_csrf})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    operator, csrf = logged_in(app, "alice")
    no_csrf = lift(operator, freeze().id, headers={})
    assert no_csrf.status_code == 403 and no_csrf.get_json()["error"]["code"] == "csrf_failed"
    assert lift(operator, freeze().id, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    assert seeded.freezes.get(freeze().id).lift_requested_by == ""
    assert lift(operator, freeze().id, headers={"X-CSRF-Token": csrf}).status_code == 202
    assert seeded.freezes.get(freeze().id).lift_requested_by == "user:alice"


def test_the_api_answers_503_when_redis_is_down(make_settings):
    app = create_app(make_settings(redis_url="redis://127.0.0.1:1/0"), policy=Policy())
    client = app.test_client()
    assert client.get("/api/v1/owners/frozen", headers=API).status_code == 503
    assert lift(client, freeze().id).status_code == 503


# -- the dashboard ---------------------------------------------------------------------------


def test_the_page_lists_active_and_ended_freezes_with_a_lift_form_for_operators(app, seeded):
    operator, _ = logged_in(app, "alice")
    page = operator.get("/owners/frozen")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.text
    assert 'aria-current="page">Frozen owners</a>' in text
    assert text.count('data-testid="frozen-row"') == 2
    assert text.count('data-testid="thawed-row"') == 1
    assert 'href="https://jira.example.com/browse/OPS-7"' in text and ">OPS-7</a>" in text
    assert 'href="/rollbacks/rollback-shop"' in text
    assert f'data-api="/api/v1/owners/frozen/{freeze().id}/lift"' in text
    assert text.count('data-testid="lift"') == 2 and "expired at noon" in text
    viewer, _ = logged_in(app, "victor")
    seen = viewer.get("/owners/frozen").text
    assert 'data-testid="lift"' not in seen and "operators lift" in seen


def test_a_requested_lift_shows_instead_of_the_form(app, seeded):
    lift(app.test_client(), freeze().id, {"reason": "done"})
    operator, _ = logged_in(app, "alice")
    text = operator.get("/owners/frozen").text
    assert 'data-testid="lift-requested"' in text and "lift requested by api:alice" in text
    assert text.count('data-testid="lift"') == 1


def test_hostile_values_from_redis_are_escaped(app, store):
    hostile = freeze(
        "evil",
        kind=HOSTILE,
        how=HOSTILE,
        reason=HOSTILE,
        bad_revision=HOSTILE,
        lift_requested_by=HOSTILE,
        lift_reason=HOSTILE,
    )
    hostile.rollback_id, hostile.name = HOSTILE, HOSTILE
    hostile.id = FrozenOwner.key("v1", HOSTILE, "argocd", HOSTILE)
    store.freezes.save(hostile)
    incident = Incident(id=HOSTILE, key="k")
    incident.jira.ref = '"><img src=x onerror=alert(1)>'
    store.incidents.save(incident)
    operator, _ = logged_in(app, "alice")
    page = operator.get("/owners/frozen")
    assert page.status_code == 200
    assert "<script>" not in page.text and "<img" not in page.text
    assert "&lt;script&gt;" in page.text
    listed = app.test_client().get("/api/v1/owners/frozen", headers=API).get_json()["frozen"]
    assert listed[0]["jira"] == '"><img src=x onerror=alert(1)>'
    assert "<img" not in listed[0]["links"]["jira"] and "%3Cimg" in listed[0]["links"]["jira"]


def test_the_page_says_when_nothing_is_frozen(app):
    operator, _ = logged_in(app, "alice")
    text = operator.get("/owners/frozen").text
    assert 'data-testid="no-frozen"' in text and 'data-testid="no-thawed"' in text


def test_the_page_sends_strangers_to_log_in(app):
    answer = app.test_client().get("/owners/frozen")
    assert answer.status_code == 303 and answer.headers["Location"].startswith("/login")
