"""R6: no state-changing endpoint is reachable without credentials (R6 in docs/reliability.md).

Every route of the app (`app.url_map`) and every method but HEAD and OPTIONS is called with
no credentials and with wrong ones: a wrong bearer token, wrong basic auth, the other
kind's token, a forged session cookie, an ended session; state changes also with a live
session but no CSRF header, and as a viewer. Each is refused (401/403, or a redirect to
/login for a dashboard page) and leaves Redis exactly as it was. A route that is public by
design is in PUBLIC, with its reason and its own check; any other route that answers is a
failure, so a new unauthenticated route cannot slip in.

The second half of R6, no secret in any log, is tests/logscan.py (checked at the end of
every pytest run); the last test here proves that check fails a run that logs a secret.
"""

import base64
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from werkzeug.security import generate_password_hash

from config.policy import Policy
from core import queues
from core.store import keys
from receiver import access
from receiver.app import create_app
from tests import samples
from tests.secrets import API_TOKEN, WEBHOOK_TOKEN

ROOT = Path(__file__).resolve().parents[2]
SAFE = ("HEAD", "OPTIONS")
ROLES = ("operator", "viewer")

# Public by design: (endpoint, method) -> why. Each has its own test below.
PUBLIC = {
    ("health.healthz", "GET"): "liveness probe for the kubelet",
    ("health.readyz", "GET"): "readiness probe for the kubelet",
    ("health.prometheus_metrics", "GET"): "scraped by Prometheus; counts only, no records",
    ("static", "GET"): "the dashboard's CSS, JS and icon",
    ("login.login_form", "GET"): "the login page itself",
    ("login.login", "POST"): "logging in cannot need a login; refused without good ones",
    ("login.logout", "POST"): "without a session there is nothing to end; changes nothing",
    ("admission.validate", "POST"): "the API server's admission call (no credentials unless "
    "BACKSTOP_ADMISSION_TOKEN); a 404 unless BACKSTOP_ADMISSION; reads only, answering "
    "allow or deny about the object sent (tests/integration/test_admission.py)",
}
# Reads that accept the webhook credentials too (in-cluster controllers hold those) and
# treat POST as a read (Flagger's webhooks POST): refused without credentials like any
# other route, but a session needs no CSRF token and a viewer may call them.
READ_ONLY_POSTS = {"gates.gate"}
WEBHOOK_CREDENTIALS_ACCEPTED = {
    "webhooks.alertmanager",
    "webhooks.grafana",
    "webhooks.deployments",
    "gates.gate",
    "quarantine_check.check",  # a pipeline asks with what it has (docs/quarantine.md)
}

pytestmark = pytest.mark.integration


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def app(make_settings, tmp_path):
    """The app in approve mode: there is a decision awaiting a human to approve; and an
    operator and a viewer in its users file (sessions last only while their user does)."""
    users = tmp_path / "users.yaml"
    hashed = generate_password_hash(secrets.token_urlsafe(16))
    users.write_text(
        "users:\n"
        + "".join(f"- {{name: {r}, role: {r}, password_hash: '{hashed}'}}\n" for r in ROLES)
    )
    return create_app(make_settings(users_file=users), policy=Policy(mode="approve"))


@pytest.fixture
def store(app):
    return app.extensions["backstop"].store


@pytest.fixture
def state(app, store, redis_client, webhook_headers):
    """Real things an unguarded route would change: a decision awaiting approval, a failed
    and a queued job, a paused workload; and the ids to name them in URLs."""
    client = app.test_client()
    assert (
        client.post(
            "/webhooks/deployments", json=samples.deployment_event(), headers=webhook_headers
        ).status_code
        == 202
    )
    answer = client.post(
        "/webhooks/alertmanager", json=samples.kill_switch(), headers=webhook_headers
    ).get_json()
    [decision] = answer["decisions"]
    assert decision["outcome"] == "awaiting_approval", decision
    incidents = queues.queue(redis_client, queues.INCIDENTS)
    incidents.enqueue_call("workers.jobs.page", kwargs={"no_such_argument": 1}, job_id="broken")
    SimpleWorker([incidents], connection=redis_client, serializer=JSONSerializer).work(burst=True)
    incidents.enqueue_call("workers.jobs.page", kwargs={"decision_id": "x"}, job_id="waiting")
    store.automation.pause(workload=None, actor="test", reason="seeded", now=samples_now())
    store.freezes.save(seeded_freeze())
    store.quarantine.add(seeded_quarantine())
    return {
        "decision_id": decision["id"],
        "rollback_id": "rollback-seeded",
        "namespace": "shop",
        "name": "checkout",
        "snapshot_id": "seeded",
        "ext": "png",
        "filename": "backstop.css",
        "freeze_id": seeded_freeze().id,
        "quarantine_id": seeded_quarantine().id,
    }


def seeded_quarantine():
    """An active quarantine, which an unguarded release would end."""
    return samples.quarantine(id="rollback-seeded", decision_id="seeded")


def seeded_freeze():
    """An active freeze, which an unguarded lift would change."""
    from datetime import timedelta

    from core.records import FrozenOwner, OwnerRecord, WorkloadRecord

    now = samples_now()
    return FrozenOwner(
        id="argoproj.io.application.argocd.shop",
        api_version="argoproj.io/v1alpha1",
        kind="Application",
        namespace="argocd",
        name="shop",
        how="auto-sync disabled",
        owner=OwnerRecord(kind="argocd", namespace="argocd", name="shop", found_by="seeded"),
        workload=WorkloadRecord(
            cluster="default", namespace="shop", kind="Deployment", name="checkout"
        ),
        rollback_id="rollback-seeded",
        bad_revision="7",
        reason="seeded",
        frozen_at=now,
        expires_at=now + timedelta(days=1),
    )


def samples_now():
    from core.records import utcnow

    return utcnow()


def writes(redis_client) -> tuple[int, int]:
    """Redis's write-command count since the last save (never, here) and its key count."""
    return redis_client.info("persistence")["rdb_changes_since_last_save"], redis_client.dbsize()


def routes(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, rule) for every route and method of the app but HEAD/OPTIONS."""
    return sorted(
        (rule.endpoint, method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - set(SAFE)
    )


def url_for_rule(app, endpoint: str, method: str, values: dict) -> str:
    """The route's URL with seeded values for its arguments; the job routes get the job
    their action applies to (retry: the failed one, cancel: the queued one)."""
    rule = next(r for r in app.url_map.iter_rules(endpoint) if method in r.methods)
    missing = rule.arguments - set(values) - {"job_id"}
    assert not missing, f"{rule.rule}: add a value for {missing} to the state fixture"
    job = "broken" if endpoint == "api.retry_job" else "waiting"
    with app.test_request_context():
        adapter = app.url_map.bind("localhost")
        args = {name: values.get(name, job) for name in rule.arguments}
        return adapter.build(endpoint, args, method=method)


def credential_variants(endpoint: str, method: str, live: dict, ended: str) -> dict:
    """Name -> (headers, cookie) of every wrong way in that applies to the route."""
    variants = {
        "no credentials": ({}, None),
        "wrong bearer token": ({"Authorization": "Bearer wrong-token"}, None),
        "wrong basic auth": ({"Authorization": basic("backstop", "wrong-token")}, None),
        "malformed authorization": ({"Authorization": "Bearer"}, None),
        "forged session cookie": ({}, "f" * 43),
        "ended session": ({}, ended),
    }
    if endpoint.startswith("webhooks."):  # the API's token and sessions never open webhooks
        variants["the API token"] = ({"Authorization": f"Bearer {API_TOKEN}"}, None)
        variants["live operator session"] = ({}, live["operator"][0])
    elif endpoint not in WEBHOOK_CREDENTIALS_ACCEPTED:  # the webhook token opens no API
        variants["the webhook token"] = ({"Authorization": f"Bearer {WEBHOOK_TOKEN}"}, None)
        variants["the webhook token as basic auth"] = (
            {"Authorization": basic("backstop", WEBHOOK_TOKEN)},
            None,
        )
    if method not in ("GET",) and endpoint not in READ_ONLY_POSTS:
        operator = live["operator"][0]
        viewer, viewer_csrf = live["viewer"]
        variants["session without CSRF header"] = ({}, operator)
        variants["session with a wrong CSRF header"] = ({"X-CSRF-Token": "w" * 43}, operator)
        variants["session with another session's CSRF"] = ({"X-CSRF-Token": viewer_csrf}, operator)
        variants["viewer session with its CSRF"] = ({"X-CSRF-Token": viewer_csrf}, viewer)
    return variants


def is_refused(endpoint: str, response) -> bool:
    """401/403, or for a dashboard page a redirect to the login page."""
    if response.status_code in (401, 403):
        return True
    location = response.headers.get("Location", "")
    return (
        endpoint.startswith("dashboard.")
        and response.status_code == 303
        and (location.startswith("/login"))
    )


@pytest.fixture
def sessions(app, store):
    """A live operator and viewer session, and the id of one that was ended."""
    live, state = {}, app.extensions["backstop"]
    for role in ROLES:
        session_id, session = access.start_session(state, user=role, via="password")
        live[role] = (session_id, session.csrf)
    ended, _ = access.start_session(state, user="operator", via="password")
    store.sessions.end(ended)
    return live, ended


def test_the_public_list_names_only_real_routes(app):
    """A stale entry would hide nothing, but would mislead whoever reads it."""
    assert set(PUBLIC) <= {(endpoint, method) for endpoint, method, _ in routes(app)}


def test_no_route_is_reachable_with_missing_or_wrong_credentials(
    app, state, sessions, redis_client
):
    live, ended = sessions
    client = app.test_client(use_cookies=False)
    reachable = []
    for endpoint, method, rule in routes(app):
        if (endpoint, method) in PUBLIC:
            continue
        url = url_for_rule(app, endpoint, method, state)
        for name, (headers, cookie) in credential_variants(endpoint, method, live, ended).items():
            headers = dict(headers)
            if cookie is not None:
                headers["Cookie"] = f"backstop_session={cookie}"
            before = writes(redis_client)
            response = client.open(url, method=method, headers=headers, json={"reason": "r6"})
            if not is_refused(endpoint, response) or writes(redis_client) != before:
                reachable.append(f"{method} {rule} with {name}: {response.status_code}")
    assert not reachable, "reachable without good credentials:\n" + "\n".join(reachable)


def test_the_read_only_posts_change_nothing_for_any_session(app, state, sessions, redis_client):
    """The gate's POST is a read (what READ_ONLY_POSTS says): even with a session and no
    CSRF header it changes nothing."""
    live, _ = sessions
    client = app.test_client(use_cookies=False)
    for endpoint in READ_ONLY_POSTS:
        url = url_for_rule(app, endpoint, "POST", state)
        for role in ("operator", "viewer"):
            before = writes(redis_client)
            headers = {"Cookie": f"backstop_session={live[role][0]}"}
            response = client.post(url, headers=headers, json={})
            assert response.status_code < 500 and writes(redis_client) == before


def test_public_routes_answer_and_change_nothing(app, state, redis_client):
    client = app.test_client(use_cookies=False)
    for endpoint, method in PUBLIC:
        if method != "GET":
            continue
        url = url_for_rule(app, endpoint, method, state)
        before = writes(redis_client)
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert writes(redis_client) == before, url


def test_the_admission_webhook_is_off_by_default_and_changes_nothing(app, redis_client):
    client = app.test_client(use_cookies=False)
    before = writes(redis_client)
    assert client.post("/admission/validate", json={"request": {"uid": "u"}}).status_code == 404
    assert writes(redis_client) == before


def test_login_without_good_credentials_starts_no_session(app, redis_client):
    """POST /login is public: without the form's nonce it stores nothing; with it and
    wrong credentials it only counts the failure (throttling) and starts no session."""
    client = app.test_client()
    before = writes(redis_client)
    assert client.post("/login", data={"token": "wrong"}).status_code == 400
    assert writes(redis_client) == before
    for fields in (
        {"token": "wrong"},
        {"token": WEBHOOK_TOKEN},
        {"username": "x", "password": "y"},
    ):
        page = client.get("/login").text  # every answer of the form sets a fresh nonce
        nonce = page.split('name="nonce" value="', 1)[1].split('"', 1)[0]
        answer = client.post("/login", data={"nonce": nonce, **fields})
        assert answer.status_code == 401 and "backstop_session" not in answer.headers.get(
            "Set-Cookie", ""
        )
    stored = {key.decode() for key in redis_client.scan_iter()}
    assert stored and all(key.startswith(keys.LOGIN_FAILURES) for key in stored), stored


def test_logout_without_a_session_or_its_csrf_changes_nothing(app, sessions, redis_client):
    live, ended = sessions
    client = app.test_client(use_cookies=False)
    attempts = [
        ({}, {}),
        ({"Cookie": "backstop_session=" + "f" * 43}, {"csrf": "x"}),
        ({"Cookie": f"backstop_session={ended}"}, {}),
        ({"Cookie": f"backstop_session={live['operator'][0]}"}, {}),  # no CSRF token
        ({"Cookie": f"backstop_session={live['operator'][0]}"}, {"csrf": live["viewer"][1]}),
    ]
    for headers, form in attempts:
        before = writes(redis_client)
        answer = client.post("/logout", headers=headers, data=form)
        assert answer.status_code == 303
        assert writes(redis_client) == before, (headers, form)


# -- the log scan ------------------------------------------------------------------------------

LEAKY_TESTS = """
import logging
from tests.secrets import API_TOKEN, WEBHOOK_TOKEN

def test_logs_a_token_to_a_file(tmp_path):
    (tmp_path / "worker.log").write_text(f"connecting with {WEBHOOK_TOKEN}\\n")

def test_logs_a_token_through_logging():
    logging.getLogger("backstop.receiver").warning("token %s", API_TOKEN)

def test_logs_nothing():
    pass
"""


def test_the_log_scan_fails_a_run_that_logs_a_secret(tmp_path):
    """A pytest run whose tests pass but put secrets into a log file and a log record
    exits non-zero, naming the files and the secrets' names, never their values."""
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS)
    with tempfile.TemporaryDirectory() as basetemp:  # not ours: its files would be scanned
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "tests.logscan",
                "-p",
                "no:cacheprovider",
                f"--basetemp={basetemp}",
                "--rootdir",
                str(tmp_path),
                str(tmp_path / "test_leaky.py"),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    output = result.stdout + result.stderr
    assert "3 passed" in output, output[-3000:]
    assert result.returncode == 1
    assert "WEBHOOK_TOKEN appears in " in output and "worker.log" in output
    assert "API_TOKEN appears in log record of backstop.receiver" in output
    assert WEBHOOK_TOKEN not in output and API_TOKEN not in output
