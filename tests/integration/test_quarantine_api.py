"""Quarantined revisions over HTTP on real Redis: the list, the pre-deploy check (gate and
webhook tokens, API credentials), the release (roles, statuses, audit) and the rollback
that quarantines a revision on the real control plane."""

import json
from datetime import timedelta

import pytest
from rq.registry import ScheduledJobRegistry

from config.policy import Policy
from core import queues
from core.records import Incident, Quarantine, WorkloadRecord, utcnow
from receiver.app import create_app
from tests import samples
from tests.conftest import API_TOKEN
from tests.secrets import GATE_TOKEN, WEBHOOK_TOKEN
from tests.sessions import logged_in
from tests.workloads import bad_release

pytestmark = pytest.mark.integration

API = {"Authorization": f"Bearer {API_TOKEN}", "X-Backstop-Actor": "alice"}
GATE = {"Authorization": f"Bearer {GATE_TOKEN}"}
CHECK = "/api/v1/quarantine/check"


@pytest.fixture
def app(make_settings, users_file):
    settings = make_settings(
        users_file=users_file, jira_url="https://jira.example.com", gate_token=GATE_TOKEN
    )
    return create_app(settings, policy=Policy())


@pytest.fixture
def store(app):
    return app.extensions["backstop"].store


def quarantine(name="checkout", *, hours_ago=1, **fields) -> Quarantine:
    now = utcnow()
    values = {
        "id": f"rb-{name}",
        "workload": WorkloadRecord(
            cluster="default", namespace="shop", kind="Deployment", name=name
        ),
        "revision": "7",
        "images": [f"shop/{name}:2.1"],
        "decision_id": f"d-{name}",
        "reason": "rolled back: verified",
        "quarantined_at": now - timedelta(hours=hours_ago),
        "expires_at": now + timedelta(days=14),
    }
    return samples.quarantine(**{**values, **fields})


@pytest.fixture
def seeded(store):
    """checkout (with a Jira issue) and cart in force; an expired one; a released one."""
    store.quarantine.add(quarantine("checkout", hours_ago=2))
    store.quarantine.add(quarantine("cart", hours_ago=1))
    store.quarantine.add(quarantine("old", hours_ago=400, expires_at=utcnow()))
    released = quarantine("gone", hours_ago=3, end="released", ended_by="api:bob")
    store.quarantine.add(released)
    incident = Incident(id="rb-checkout", key="k")
    incident.jira.ref = "OPS-9"
    store.incidents.save(incident)
    return store


def release(client, quarantine_id, body=None, headers=API):
    return client.post(
        f"/api/v1/quarantine/{quarantine_id}/release",
        data=json.dumps(body if body is not None else {"reason": "fixed in 2.2"}),
        headers=headers,
        content_type="application/json",
    )


def test_the_list_and_the_release_need_api_credentials(app, seeded):
    client = app.test_client()
    assert client.get("/api/v1/quarantine").status_code == 401
    assert client.get("/api/v1/quarantine", headers=GATE).status_code == 401
    assert release(client, "rb-checkout", headers=GATE).status_code == 401
    assert client.get(f"{CHECK}?image=x").status_code == 401


def test_quarantines_in_force_are_listed_newest_first_with_jira_and_links(app, seeded):
    listed = app.test_client().get("/api/v1/quarantine", headers=API).get_json()["quarantine"]
    assert [q["workload"]["name"] for q in listed] == ["cart", "checkout"]
    checkout = listed[1]
    assert checkout["status"] == "active" and checkout["jira"] == "OPS-9"
    assert checkout["links"] == {
        "rollback": "/api/v1/rollbacks/rb-checkout",
        "dashboard": "/rollbacks/rb-checkout",
        "release": "/api/v1/quarantine/rb-checkout/release",
        "jira": "https://jira.example.com/browse/OPS-9",
    }
    everything = app.test_client().get("/api/v1/quarantine?all=true", headers=API).get_json()
    statuses = {q["workload"]["name"]: q["status"] for q in everything["quarantine"]}
    assert statuses == {
        "cart": "active",
        "checkout": "active",
        "gone": "released",
        "old": "expired",
    }
    assert app.test_client().get("/api/v1/quarantine?all=maybe", headers=API).status_code == 400


@pytest.mark.parametrize("token", [GATE_TOKEN, WEBHOOK_TOKEN, API_TOKEN])
def test_a_pipeline_checks_its_images_before_it_deploys(app, seeded, token):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    refused = client.get(
        f"{CHECK}?image=shop/checkout:2.2&image=docker.io/shop/checkout:2.1", headers=headers
    )
    assert refused.status_code == 200
    body = refused.get_json()
    assert body["allowed"] is False
    [objection] = body["quarantined"]
    assert objection["image"] == "docker.io/shop/checkout:2.1"
    assert objection["rollback_id"] == "rb-checkout" and objection["jira"] == "OPS-9"
    fixed = client.get(f"{CHECK}?image=shop/checkout:2.2", headers=headers).get_json()
    assert fixed == {"allowed": True, "images": ["shop/checkout:2.2"], "quarantined": []}
    # Expired and released quarantines keep nothing out.
    for image in ("shop/old:2.1", "shop/gone:2.1"):
        assert client.get(f"{CHECK}?image={image}", headers=headers).get_json()["allowed"]


def test_the_check_can_be_narrowed_to_a_workload(app, seeded):
    client = app.test_client()
    url = f"{CHECK}?image=shop/checkout:2.1&workload="
    assert not client.get(url + "shop/Deployment/checkout", headers=GATE).get_json()["allowed"]
    assert client.get(url + "shop/Deployment/cart", headers=GATE).get_json()["allowed"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?workload=shop/Deployment/checkout",
        "?image=",
        "?image=" + "a" * 1001,
        "?image=x&workload=" + "w" * 801,
        "?" + "&".join(["image=x"] * 51),
    ],
)
def test_a_bad_check_is_a_400_with_a_json_error(app, seeded, query):
    answer = app.test_client().get(CHECK + query, headers=GATE)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_query"


def test_a_release_ends_the_quarantine_and_is_audited(app, seeded):
    client = app.test_client()
    answer = release(client, "rb-checkout")
    assert answer.status_code == 200, answer.text
    body = answer.get_json()
    assert body["status"] == "released" and body["ended_by"] == "api:alice"
    assert body["end_reason"] == "fixed in 2.2" and body["links"]["release"] is None
    assert client.get(f"{CHECK}?image=shop/checkout:2.1", headers=GATE).get_json()["allowed"]
    [entry] = [e for e in seeded.automation.audit_log(limit=10) if e.action == "release_quarantine"]
    assert (entry.actor, entry.target, entry.reason) == ("api:alice", "rb-checkout", "fixed in 2.2")
    again = release(client, "rb-checkout")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"
    assert release(client, "rb-unknown").status_code == 404
    assert release(client, "rb-cart", body={}).status_code == 400
    assert release(client, "rb-cart", body={"reason": "  "}).status_code == 400


def test_only_operators_release(app, seeded):
    viewer, csrf = logged_in(app, "victor")
    assert viewer.get("/api/v1/quarantine").status_code == 200
    refused = release(viewer, "rb-cart", headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 403
    assert seeded.quarantine.get("rb-cart").active


def test_a_verified_rollback_quarantines_the_bad_revision(make_stack):
    stack = make_stack()
    workload = bad_release(stack)
    decision = stack.alert(workload)
    rollback = stack.roll_back(decision)
    assert rollback.status == "verified", rollback.reason
    found = stack.store.quarantine.get(rollback.id)
    assert found is not None and found.active and found.revision == "2"
    assert found.images == ["shop/checkout:2"] and found.decision_id == decision.id
    assert found.template_hash == stack.store.rollouts.by_revision(workload, "2").template_hash
    # Running it again (a retry) never revives nor duplicates it.
    assert not stack.store.quarantine.add(found)
    # Its review (Jira done, expiry) is scheduled.
    registry = ScheduledJobRegistry(queue=queues.queue(stack.redis, queues.DECISIONS))
    assert [j for j in registry.get_job_ids() if j.startswith("quarantine-review-")]
