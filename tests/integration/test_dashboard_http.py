"""The dashboard over HTTP on real Redis: login, sessions, CSRF, roles, pages, job actions.

The browser tests (tests/browser) drive the same pages in Chromium; these pin the rules
that keep the dashboard safe, one at a time.
"""

import re
from datetime import timedelta

import pytest
import redis

from config.policy import Policy
from core import queues, registries
from core.models import AlertEvent, Workload
from core.records import (
    AuditEntry,
    Decision,
    DecisionStep,
    Incident,
    Rollback,
    RollbackStep,
    Rollout,
    WorkloadRecord,
    utcnow,
)
from core.store import Store, keys
from core.store.chat import ChatDelivery
from receiver.app import StartupError, create_app
from tests.conftest import API_TOKEN
from tests.secrets import DASHBOARD_PASSWORDS

PASSWORDS = DASHBOARD_PASSWORDS
PAGES = [
    "/",
    "/alerts",
    "/rollbacks",
    "/deployments",
    "/jobs",
    "/approvals",
    "/audit",
    "/owners/frozen",
]
CHECKOUT = Workload("default", "shop", "Deployment", "checkout")


@pytest.fixture
def app(make_settings, users_file):
    return create_app(make_settings(users_file=users_file), policy=Policy())


@pytest.fixture
def store(app):
    return app.extensions["backstop"].store


def nonce_of(client, path="/login") -> str:
    return re.search(r'name="nonce" value="([^"]+)"', client.get(path).text).group(1)


def log_in(client, **fields):
    return client.post("/login", data={"nonce": nonce_of(client), **fields})


def logged_in(app, name: str):
    client = app.test_client()
    answer = log_in(client, username=name, password=PASSWORDS[name])
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(client) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)


# -- login and sessions ----------------------------------------------------------------------


def test_pages_send_strangers_to_the_login_page_and_back(app):
    client = app.test_client()
    for page in PAGES:
        answer = client.get(page + "?x=1")
        assert answer.status_code == 303
        assert answer.headers["Location"].startswith("/login?next=")
    nonce = nonce_of(client)
    answer = client.post(
        "/login",
        data={
            "nonce": nonce,
            "username": "alice",
            "password": "alice-operator-pw",
            "next": "/jobs",
        },
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/jobs"


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_login_never_redirects_off_site(app, target):
    client = app.test_client()
    answer = client.post(
        "/login",
        data={"nonce": nonce_of(client), "token": API_TOKEN, "next": target},
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def test_the_api_token_logs_in_as_an_operator(app):
    client = app.test_client()
    assert log_in(client, token=API_TOKEN).status_code == 303
    page = client.get("/")
    assert page.status_code == 200 and "token · operator" in page.text
    assert "Pause automation" in page.text


def test_wrong_credentials_are_refused_without_saying_which_part(app):
    client = app.test_client()
    for fields in (
        {"username": "alice", "password": "nope"},
        {"username": "nobody", "password": "nope"},
        {"token": "not-the-token"},
        {"username": "alice", "password": ""},
    ):
        answer = log_in(client, **fields)
        assert answer.status_code == 401
        assert "Wrong name, password or token." in answer.text
        assert "backstop_session" not in answer.headers.get("Set-Cookie", "")


def test_a_login_form_posted_from_elsewhere_is_refused(app):
    client = app.test_client()
    answer = client.post("/login", data={"nonce": "forged", "token": API_TOKEN})
    assert answer.status_code == 400
    assert client.get("/").status_code == 303  # still not logged in


def test_repeated_failures_are_throttled_even_for_the_right_password(app):
    client = app.test_client()
    for _ in range(app.extensions["backstop"].settings.login_max_failures_per_name):
        assert log_in(client, username="alice", password="guess").status_code == 401
    answer = log_in(client, username="alice", password=PASSWORDS["alice"])
    assert answer.status_code == 429
    # Another name is not locked out by alice's attacker.
    assert log_in(client, username="victor", password=PASSWORDS["victor"]).status_code == 303


def test_sessions_are_stored_hashed_and_end_at_logout(app, redis_client):
    client = logged_in(app, "alice")
    cookie = client.get_cookie("backstop_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    stored = [k.decode() for k in redis_client.keys(keys.SESSION + "*")]
    assert len(stored) == 1 and cookie.value not in stored[0]
    assert redis_client.ttl(stored[0]) > 11 * 3600

    # Logging out needs the session's CSRF token too (no cross-site logout).
    client.post("/logout", data={"csrf": "wrong"})
    assert client.get("/").status_code == 200
    answer = client.post("/logout", data={"csrf": csrf_of(client)})
    assert answer.status_code == 303 and answer.headers["Location"] == "/login"
    assert redis_client.keys(keys.SESSION + "*") == []
    stolen = app.test_client()
    stolen.set_cookie("backstop_session", cookie.value)
    assert stolen.get("/").status_code == 303


def test_cookies_are_secure_behind_https(make_settings, users_file):
    app = create_app(
        make_settings(users_file=users_file, public_url="https://backstop.example"),
        policy=Policy(),
    )
    client = logged_in(app, "alice")
    assert client.get_cookie("backstop_session").secure


def test_a_users_file_with_a_plain_password_stops_the_start(make_settings, tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  - name: bob\n    role: operator\n    password_hash: hunter2\n")
    with pytest.raises(StartupError) as caught:
        create_app(make_settings(users_file=path), policy=Policy())
    assert "users.0.password_hash" in str(caught.value) and "hunter2" not in str(caught.value)


# -- the API from a session: CSRF and roles --------------------------------------------------


def test_a_session_reads_the_api_without_csrf_but_acts_only_with_it(app, store):
    client = logged_in(app, "alice")
    assert client.get("/api/v1/automation").get_json()["paused"] is None

    refused = client.post("/api/v1/automation/pause", json={"reason": "forged"})
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "csrf_failed"
    assert store.automation.paused(None) is None

    headers = {"X-CSRF-Token": csrf_of(client)}
    answer = client.post("/api/v1/automation/pause", json={"reason": "game day"}, headers=headers)
    assert answer.status_code == 200
    assert store.automation.paused(None)["by"] == "user:alice"
    [entry, login] = store.automation.audit_log(limit=2)
    assert (entry.actor, entry.action, entry.reason) == ("user:alice", "pause", "game day")
    assert (login.actor, login.action) == ("user:alice", "login")


def test_a_viewer_reads_everything_and_changes_nothing(app, store):
    client = logged_in(app, "victor")
    for page in PAGES:
        answer = client.get(page)
        assert answer.status_code == 200, page
        assert 'data-api="' not in answer.text, page  # no action forms for viewers
    headers = {"X-CSRF-Token": csrf_of(client)}
    for path, body in (
        ("/api/v1/automation/pause", {"reason": "x"}),
        ("/api/v1/automation/resume", {}),
        ("/api/v1/automation/circuit/reset", {}),
        ("/api/v1/jobs/any/retry", {}),
        ("/api/v1/decisions/any/approve", {}),
        ("/api/v1/owners/frozen/any/lift", {"reason": "x"}),
    ):
        answer = client.post(path, json=body, headers=headers)
        assert answer.status_code == 403, path
        assert answer.get_json()["error"]["code"] == "forbidden"
    assert store.automation.paused(None) is None


def test_the_bearer_token_still_needs_no_csrf(client, api_headers):
    answer = client.post("/api/v1/automation/pause", json={"reason": "script"}, headers=api_headers)
    assert answer.status_code == 200


# -- pages with data -------------------------------------------------------------------------


def seed(store: Store) -> tuple[Decision, Rollback]:
    now = utcnow()
    events = [
        AlertEvent(
            source="alertmanager",
            fingerprint=fingerprint,
            status="firing",
            labels={"alertname": "High5xx", "namespace": "shop", "deployment": "checkout"},
            annotations={},
            starts_at=now - timedelta(minutes=5),
        )
        for fingerprint in ("f1", "f2")
    ]
    store.episodes.record_notifications(events, now=now)
    first, second = (event.episode_id for event in events)
    decision = Decision(
        id=first,
        episode_id=first,
        alertname="High5xx",
        labels={"namespace": "shop", "deployment": "checkout"},
        starts_at=now - timedelta(minutes=5),
        workload=WorkloadRecord.of(CHECKOUT),
        outcome="awaiting_approval",
        reason="approval_required",
        created_at=now,
        # A human's stated reason on a step (an approval's, a denial's) is outside text.
        history=[
            DecisionStep(at=now, outcome="skipped", reason="paused", by="api:bob", note="<b>x</b>")
        ],
    )
    store.decisions.save(decision)
    store.decisions.save(
        decision.model_copy(
            update={"id": second, "episode_id": second, "outcome": "skipped", "reason": "paused"}
        )
    )
    steps = [
        RollbackStep(
            name=name,
            status="ok",
            started_at=now + timedelta(seconds=i),
            finished_at=now + timedelta(seconds=i, milliseconds=250),
            detail=f"{name} <done>",
        )
        for i, name in enumerate(("lock", "preflight", "evidence", "patch", "rollout", "verify"))
    ]
    rollback = Rollback(
        id="rollback-abc-2",
        decision_id=first,
        workload=WorkloadRecord.of(CHECKOUT),
        bad_revision="2",
        target_revision="1",
        status="verified",
        reason="the prior version is healthy",
        steps=steps,
        verification={"mode": "rollout_only", "held": None, "detail": "rollout only"},
        created_at=now,
    )
    store.rollbacks.save(rollback)
    store.rollbacks.save_evidence(
        rollback.id,
        {
            "pods": [
                {
                    "name": "checkout-x",
                    "phase": "Running",
                    "logs": {"checkout": {"current": "panic: <script>boom</script>"}},
                }
            ],
            "events": [
                {
                    "type": "Warning",
                    "reason": "BackOff",
                    "object": "Pod/checkout-x",
                    "message": "back-off",
                    "count": 3,
                }
            ],
        },
    )
    store.incidents.save(
        Incident(id=rollback.id, key="backstop-1", jira={"state": "delivered", "ref": "OPS-7"})
    )
    store.automation.audit(AuditEntry(actor="api:bob", action="pause", reason="<b>x</b>"))
    return decision, rollback


def test_every_page_renders_the_records_escaped(app, store):
    decision, rollback = seed(store)
    client = logged_in(app, "alice")
    for page in [*PAGES, f"/decisions/{decision.id}", f"/rollbacks/{rollback.id}"]:
        answer = client.get(page)
        assert answer.status_code == 200, page
        assert "<script>boom" not in answer.text and "<b>x</b>" not in answer.text, page
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["Cache-Control"] == "no-store"
    detail = client.get(f"/rollbacks/{rollback.id}").text
    assert "&lt;script&gt;boom" in detail and "OPS-7" in detail
    shown = client.get(f"/decisions/{decision.id}").text
    assert '<q class="step-note">&lt;b&gt;x&lt;/b&gt;</q>' in shown
    assert detail.count("<meter") == 6  # one timeline bar per step
    approvals = client.get("/approvals").text
    assert f'data-api="/api/v1/decisions/{decision.id}/approve"' in approvals
    paused = client.get("/alerts?outcome=skipped").text
    assert "<code>paused</code>" in paused and "approval_required" not in paused
    for workload, rows in (
        ("shop/checkout", 2),
        ("checkout", 2),
        ("Deployment/check", 2),
        ("shop/cart", 0),
    ):
        page = client.get(f"/alerts?workload={workload}").text
        assert page.count("data-episode=") == rows, workload
    overview = client.get("/").text
    assert re.search(r"Decisions: awaiting_approval</dt><dd><a [^>]*>1<", overview)


def test_what_chat_was_told_is_shown_escaped_on_the_rollback_and_decision_pages(app, store):
    decision, rollback = seed(store)
    now = utcnow()
    failed = ChatDelivery(
        state="failed", attempts=3, detail="HTTP 404 <b>no_service</b>", updated_at=now
    )
    store.chat.save_delivery(rollback.id, "teams", "verified:1", failed)
    for key, at in (("verified:1", now), ("started:1", now - timedelta(seconds=30))):
        sent = ChatDelivery(state="sent", updated_at=at)
        store.chat.save_delivery(rollback.id, "slack-bot", key, sent)
    client = logged_in(app, "alice")
    page = client.get(f"/rollbacks/{rollback.id}").text
    told = page.split('data-testid="chat"', 1)[1].split("</dd>", 1)[0]
    # By target, then as they happened.
    assert told.index("started:1") < told.index("verified:1") < told.index("teams")
    assert '<span class="badge sent">sent</span>' in told and "3 attempts" in told
    assert "&lt;b&gt;no_service&lt;/b&gt;" in told and "<b>" not in told
    # A decision still waiting for approval: what chat was told of the wait, which is kept
    # under the id of the rollback it would run.
    rollout = Rollout(
        workload=WorkloadRecord.of(CHECKOUT), revision="7", images=["x"], started_at=utcnow()
    )
    waiting = decision.model_copy(update={"id": "d-wait", "rollout": rollout})
    store.decisions.save(waiting)
    would_run = queues.rollback_job_id(CHECKOUT, "7")
    store.chat.save_delivery(would_run, "slack-bot", "awaiting_approval:d-wait", failed)
    shown = client.get("/decisions/d-wait").text
    assert 'data-testid="chat"' in shown and "awaiting_approval:d-wait" in shown
    assert 'data-testid="chat"' not in client.get(f"/decisions/{decision.id}").text


def test_unknown_records_get_an_html_404(app):
    client = logged_in(app, "alice")
    answer = client.get("/rollbacks/missing")
    assert answer.status_code == 404 and answer.mimetype == "text/html"
    assert "no rollback missing" in answer.text


def test_dashboard_answers_503_when_redis_is_down(make_settings, users_file):
    app = create_app(
        make_settings(users_file=users_file, redis_url="redis://127.0.0.1:1/0"), policy=Policy()
    )
    client = app.test_client()
    client.set_cookie("backstop_session", "x" * 43)
    answer = client.get("/")
    assert answer.status_code == 503 and "Redis is unavailable" in answer.text


# -- jobs: list, retry, cancel ---------------------------------------------------------------


def failed_job(connection: redis.Redis, job_id: str) -> None:
    """A job that really ran in an RQ worker and failed: Backstop's page job, called with an
    argument it does not take, raises TypeError."""
    target = queues.queue(connection, queues.INCIDENTS)
    target.enqueue_call("workers.jobs.page", kwargs={"no_such_argument": 1}, job_id=job_id)
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    SimpleWorker([target], connection=connection, serializer=JSONSerializer).work(burst=True)


def test_jobs_are_listed_retried_and_cancelled_through_the_api(app, redis_client, store):
    failed_job(redis_client, "page-broken")
    client = logged_in(app, "alice")
    headers = {"X-CSRF-Token": csrf_of(client)}

    [listed] = client.get("/api/v1/jobs?registry=failed").get_json()["jobs"]
    assert listed["id"] == "page-broken" and "TypeError" in listed["error"]
    assert "page-broken" in client.get("/jobs?registry=failed").text

    answer = client.post("/api/v1/jobs/page-broken/retry", json={}, headers=headers)
    assert answer.status_code == 202 and answer.get_json()["status"] == "queued"
    counts = registries.counts(redis_client)[queues.INCIDENTS]
    assert counts["failed"] == 0 and counts["queued"] == 1
    again = client.post("/api/v1/jobs/page-broken/retry", json={}, headers=headers)
    assert again.status_code == 409

    answer = client.post("/api/v1/jobs/page-broken/cancel", json={"reason": "x"}, headers=headers)
    assert answer.status_code == 200 and answer.get_json()["status"] == "canceled"
    assert registries.counts(redis_client)[queues.INCIDENTS]["queued"] == 0
    assert (
        client.post("/api/v1/jobs/page-broken/cancel", json={}, headers=headers).status_code == 409
    )
    assert client.post("/api/v1/jobs/nope/retry", json={}, headers=headers).status_code == 404

    actions = [(e.action, e.target) for e in store.automation.audit_log(limit=2)]
    assert actions == [("job_cancel", "job/page-broken"), ("job_retry", "job/page-broken")]
    state = client.get("/api/v1/queues").get_json()
    assert state["queues"][queues.INCIDENTS]["canceled"] == 1 and state["workers"] == []


def test_the_rollbacks_page_shows_jobs_waiting_for_a_worker(app, redis_client, store):
    request = queues.RollbackRequest.new(decision_id="ep-9", workload=CHECKOUT, bad_revision="5")
    job_id = queues.enqueue_rollback(redis_client, request)
    client = logged_in(app, "alice")
    page = client.get("/rollbacks").text
    assert "Waiting for a worker" in page and f'data-rollback="{job_id}"' in page
    assert "No worker is running" in client.get("/").text


def test_a_rollback_page_shows_its_graphs_inline_readable_with_the_session(app, store):
    from core.snapshots import Snapshot

    _, rollback = seed(store)
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    store.snapshots.save(
        Snapshot(
            id="snap1", name="error_ratio", expr="rate(x[5m])", png=png, csv=b"t,v\n", points=2
        )
    )
    incident = store.incidents.get(rollback.id)
    incident.snapshots = [
        {
            "id": "snap1",
            "name": "error_ratio",
            "expr": "rate(x[5m])",
            "file": "snapshot-1",
            "points": 2,
            "error": "",
        }
    ]
    store.incidents.save(incident)
    client = logged_in(app, "victor")
    page = client.get(f"/rollbacks/{rollback.id}").text
    assert '<img src="/snapshots/snap1.png"' in page and "/snapshots/snap1.csv" in page
    image = client.get("/snapshots/snap1.png")
    assert image.status_code == 200 and image.data == png
    assert app.test_client().get("/snapshots/snap1.png").status_code == 401


def test_a_rollback_page_names_the_owner_pre_flight_found_escaped(app, store):
    from core.records import OwnerRecord

    _, rollback = seed(store)
    rollback.owner = OwnerRecord(
        kind="argocd", namespace="argocd", name="<script>app", found_by="annotation x"
    )
    store.rollbacks.save(rollback)
    page = logged_in(app, "alice").get(f"/rollbacks/{rollback.id}").text
    assert 'data-testid="owner">argocd argocd/&lt;script&gt;app' in page
    assert "<script>app" not in page
