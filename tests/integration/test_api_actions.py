"""The decisions, deployments and automation API, and the CI deployments webhook."""

import json

import pytest

from config.policy import Policy
from core import queues
from core.models import Workload
from core.records import Rollback, WorkloadRecord
from core.store import Store
from receiver.app import create_app
from tests import samples
from tests.conftest import API_TOKEN

API = {"Authorization": f"Bearer {API_TOKEN}", "X-Backstop-Actor": "alice"}


@pytest.fixture
def make_client(make_settings):
    def build(**policy):
        return create_app(make_settings(), policy=Policy.model_validate(policy)).test_client()

    return build


def post_json(client, path, body, headers):
    return client.post(
        path, data=json.dumps(body), headers=headers, content_type="application/json"
    )


def report_deploy(client, headers, minutes_ago=10, **fields):
    body = samples.deployment_event(
        minutes_ago,
        version="v1.4.0",
        commit="abc123",
        author="dev@example.com",
        url="https://ci/run/42",
        images=["registry/checkout:v1.4.0"],
        **fields,
    )
    return post_json(client, "/webhooks/deployments", body, headers)


def test_ci_deployment_is_recorded_and_listed(make_client, webhook_headers):
    client = make_client()
    answer = report_deploy(client, webhook_headers)
    assert answer.status_code == 202
    rollout = answer.get_json()["rollout"]
    assert rollout["revision"] == "3" and rollout["sources"] == ["ci"]
    assert rollout["workload"] == {
        "cluster": "default",
        "namespace": "shop",
        "kind": "Deployment",
        "name": "checkout",
    }
    listed = client.get("/api/v1/deployments?namespace=shop&name=checkout", headers=API)
    [stored] = listed.get_json()["deployments"]
    assert stored["commit"] == "abc123" and stored["url"] == "https://ci/run/42"
    assert stored["previous_commit"] == "" and stored["repository"] == ""
    answer = report_deploy(
        client,
        webhook_headers,
        minutes_ago=5,
        revision=4,
        previous_commit="abc122",
        repository="https://github.com/shop/checkout",
        pipeline_url="https://ci/pipelines/43",
    )
    later = answer.get_json()["rollout"]
    assert later["repository"] == "https://github.com/shop/checkout"
    assert (later["previous_commit"], later["pipeline_url"]) == (
        "abc122",
        "https://ci/pipelines/43",
    )
    assert client.get("/api/v1/deployments?namespace=other", headers=API).get_json() == {
        "deployments": []
    }


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "checkout"}, "namespace"),
        ({"namespace": "shop", "name": "c", "kind": "Pod"}, "kind"),
        ({"namespace": "shop", "name": "c", "started_at": "yesterday"}, "started_at"),
        ({"namespace": "shop", "name": "c", "colour": "blue"}, "colour"),
        ({"namespace": "shop", "name": "c", "images": "one"}, "images"),
        ({"namespace": "shop", "name": "c", "repository": "javascript:alert(1)"}, "repository"),
        ({"namespace": "shop", "name": "c", "pipeline_url": "file:///etc/passwd"}, "pipeline_url"),
    ],
)
def test_bad_ci_events_are_400_with_the_field(
    make_client, webhook_headers, body, path, redis_client
):
    answer = post_json(make_client(), "/webhooks/deployments", body, webhook_headers)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["details"][0]["path"] == path
    assert redis_client.dbsize() == 0


def test_ci_deployments_need_the_webhook_token(make_client):
    assert report_deploy(make_client(), {}).status_code == 401


def test_alert_after_a_ci_deployment_is_a_dry_run_with_reasons(make_client, webhook_headers):
    client = make_client()
    report_deploy(client, webhook_headers)
    answer = post_json(client, "/webhooks/alertmanager", samples.kill_switch(), webhook_headers)
    [decision] = answer.get_json()["decisions"]
    assert decision["outcome"] == "dry_run"
    assert decision["workload"] == "default/shop/Deployment/checkout"
    full = client.get(f"/api/v1/decisions/{decision['id']}", headers=API).get_json()
    assert full["rollout"]["revision"] == "3" and full["policy"]["mode"] == "dry-run"
    assert full["evidence"]["candidates"][0]["revision"] == "3"
    listed = client.get("/api/v1/decisions?outcome=dry_run", headers=API).get_json()
    assert [d["id"] for d in listed["decisions"]] == [decision["id"]]
    assert client.get("/api/v1/decisions/nope", headers=API).status_code == 404


def test_pause_is_audited_and_skips_decisions(make_client, webhook_headers):
    client = make_client(mode="enforce")
    report_deploy(client, webhook_headers)
    paused = post_json(client, "/api/v1/automation/pause", {"reason": "game day"}, API)
    assert paused.get_json() == {"paused": "global"}
    state = client.get("/api/v1/automation", headers=API).get_json()
    assert state["paused"]["reason"] == "game day" and state["paused"]["by"] == "api:alice"
    answer = post_json(client, "/webhooks/alertmanager", samples.kill_switch(), webhook_headers)
    assert answer.get_json()["decisions"][0]["reason"] == "paused"
    post_json(client, "/api/v1/automation/resume", {}, API)
    assert client.get("/api/v1/automation", headers=API).get_json()["paused"] is None
    audit = client.get("/api/v1/audit", headers=API).get_json()["audit"]
    assert [(a["action"], a["actor"], a["target"]) for a in audit] == [
        ("resume", "api:alice", "global"),
        ("pause", "api:alice", "global"),
    ]


def test_workload_pause(make_client, webhook_headers):
    client = make_client(mode="enforce")
    body = {"reason": "investigating", "workload": {"namespace": "shop", "name": "checkout"}}
    assert post_json(client, "/api/v1/automation/pause", body, API).status_code == 200
    state = client.get("/api/v1/automation", headers=API).get_json()
    assert list(state["paused_workloads"]) == ["default/shop/Deployment/checkout"]
    resume = {"workload": {"namespace": "shop", "name": "checkout"}}
    assert post_json(client, "/api/v1/automation/resume", resume, API).get_json()["was_paused"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": ""},
        {"reason": "x", "workload": {"namespace": "s"}},
        {"reason": "x", "extra": 1},
        {"reason": "x", "workload": {"namespace": "s", "name": "n", "kind": "Pod"}},
    ],
)
def test_bad_pause_requests_are_400(make_client, body):
    assert post_json(make_client(), "/api/v1/automation/pause", body, API).status_code == 400


def test_approve_and_deny_through_the_api(make_client, webhook_headers):
    client = make_client(mode="approve")
    report_deploy(client, webhook_headers)
    answer = post_json(client, "/webhooks/alertmanager", samples.kill_switch(), webhook_headers)
    [decision] = answer.get_json()["decisions"]
    assert decision["outcome"] == "awaiting_approval"
    waiting = client.get("/api/v1/decisions?outcome=awaiting_approval", headers=API).get_json()
    assert len(waiting["decisions"]) == 1
    approved = post_json(
        client,
        f"/api/v1/decisions/{decision['id']}/approve",
        {"reason": "confirmed on the dashboard"},
        API,
    )
    assert approved.status_code == 200 and approved.get_json()["outcome"] == "rollback"
    again = post_json(client, f"/api/v1/decisions/{decision['id']}/deny", {}, API)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"
    missing = client.post("/api/v1/decisions/nope/approve", headers=API)
    assert missing.status_code == 409


def test_circuit_reset(make_client):
    client = make_client()
    assert client.post("/api/v1/automation/circuit/reset", headers=API).get_json() == {
        "circuit": "closed"
    }
    state = client.get("/api/v1/automation", headers=API).get_json()["circuit"]
    assert state["state"] == "closed" and state["reset_by"] == "api:alice"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/decisions"),
        ("GET", "/api/v1/automation"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/deployments"),
        ("POST", "/api/v1/automation/pause"),
        ("POST", "/api/v1/automation/resume"),
        ("POST", "/api/v1/automation/circuit/reset"),
        ("POST", "/api/v1/decisions/x/approve"),
        ("POST", "/api/v1/decisions/x/deny"),
    ],
)
def test_every_api_route_needs_the_token(make_client, method, path, redis_client):
    assert make_client().open(path, method=method).status_code == 401
    assert redis_client.dbsize() == 0


def test_retrying_a_rollback(make_client, redis_client):
    client = make_client()
    store = Store(redis_client, Policy())
    workload = WorkloadRecord.of(Workload("default", "shop", "Deployment", "checkout"))
    for rollback_id, status in (("rollback-a-3", "blocked"), ("rollback-b-3", "verified")):
        store.rollbacks.save(
            Rollback(
                id=rollback_id,
                decision_id="d",
                workload=workload,
                bad_revision="3",
                status=status,
                reason="x",
            )
        )
    answer = client.post("/api/v1/rollbacks/rollback-a-3/retry", headers=API)
    assert answer.status_code == 202 and answer.get_json()["status"] == "running"
    assert answer.get_json()["reason"] == "retried by api:alice"
    job = queues.queue(redis_client, queues.ROLLBACKS).fetch_job("rollback-a-3")
    assert job.kwargs == {
        "decision_id": "d",
        "workload": "default/shop/Deployment/checkout",
        "bad_revision": "3",
        "mode": "enforce",
    }
    refused = client.post("/api/v1/rollbacks/rollback-b-3/retry", headers=API)
    assert refused.status_code == 409
    assert client.post("/api/v1/rollbacks/nope/retry", headers=API).status_code == 404
    listed = client.get("/api/v1/rollbacks?status=running", headers=API).get_json()
    assert [r["id"] for r in listed["rollbacks"]] == ["rollback-a-3"]
    detail = client.get("/api/v1/rollbacks/rollback-b-3", headers=API).get_json()
    assert detail["status"] == "verified" and detail["incident"] is None
    audit = client.get("/api/v1/audit", headers=API).get_json()["audit"]
    assert audit[0]["action"] == "retry" and audit[0]["target"] == "rollback/rollback-a-3"
