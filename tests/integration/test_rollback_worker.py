"""The rollback job in a real RQ worker process, and the logs: one request id ties a webhook
to its decision, rollback job and incident job across the receiver and the worker, and
every line is JSON (killed workers: tests/reliability/test_worker_killed.py)."""

import io
import json
import logging
import os
from dataclasses import dataclass

import pytest
import requests
from flask.testing import FlaskClient

from config.policy import Policy
from core.logs import JsonFormatter
from receiver.app import create_app
from testbed.processes import run_burst_worker
from tests import samples
from tests.conftest import wait_for
from tests.integration.test_dashboard_http import log_in
from tests.secrets import API_TOKEN

pytestmark = pytest.mark.integration

REQUEST_ID = "trace-me-0042"
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def receiver_log():
    """Backstop's receiver log lines of this test, as JSON objects."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("backstop")
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def json_lines(text: str) -> list[dict]:
    """Every line of a process's output, each of which must be a JSON object."""
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line that is not JSON: {line!r}")
    return parsed


@dataclass
class ClusterlessRollback:
    """A rollback decided by the receiver and run by a real worker process with no cluster
    configured (as under `make run` without KUBECONFIG): it fails, and its incident job runs."""

    web: FlaskClient
    decision: dict
    receiver_lines: list[dict]
    worker_lines: list[dict]


@pytest.fixture
def clusterless_rollback(make_settings, redis_url, tmp_path, webhook_headers, receiver_log):
    config = tmp_path / "policy.yaml"
    config.write_text("mode: enforce\ndefaults:\n  min_firing: 0s\n")
    app = create_app(
        make_settings(),
        policy=Policy.model_validate({"mode": "enforce", "defaults": {"min_firing": "0s"}}),
    )
    web = app.test_client()
    web.post(
        "/webhooks/deployments",
        headers=webhook_headers,
        json=samples.deployment_event(minutes_ago=5),
    )
    answer = web.post(
        "/webhooks/alertmanager",
        headers={**webhook_headers, "X-Request-Id": REQUEST_ID},
        json=samples.kill_switch(minutes_ago=0),
    )
    assert answer.headers["X-Request-Id"] == REQUEST_ID
    [decision] = answer.get_json()["decisions"]
    assert decision["outcome"] == "rollback"
    env = {
        k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    env.update({"REDIS_URL": redis_url, "BACKSTOP_CONFIG": str(config)})
    worker_lines = json_lines(run_burst_worker(env).stderr.decode())
    return ClusterlessRollback(web, decision, receiver_log(), worker_lines)


def test_without_a_cluster_a_rollback_fails_and_says_why(clusterless_rollback):
    """`make run` without KUBECONFIG: decisions still work; rollbacks fail, recorded."""
    rollbacks = clusterless_rollback.web.get("/api/v1/rollbacks", headers=BEARER)
    [rollback] = rollbacks.get_json()["rollbacks"]
    assert rollback["status"] == "failed" and "no Kubernetes configured" in rollback["reason"]


def test_a_request_id_leads_from_webhook_to_incident(clusterless_rollback):
    web, decision = clusterless_rollback.web, clusterless_rollback.decision
    # The receiver: the decision and the webhook line carry the request id.
    received = [
        line for line in clusterless_rollback.receiver_lines if line.get("request_id") == REQUEST_ID
    ]
    assert {line["message"] for line in received} >= {"decision rollback: enqueued", "webhook"}
    [decided] = [line for line in received if line["logger"] == "backstop.decisions"]
    assert decided["decision_id"] == decision["id"]
    stored = web.get(f"/api/v1/decisions/{decision['id']}", headers=BEARER).get_json()
    assert stored["request_id"] == REQUEST_ID
    assert log_in(web, token=API_TOKEN).status_code == 303
    page = web.get(f"/decisions/{decision['id']}")
    assert page.status_code == 200 and REQUEST_ID in page.text

    # The worker, its own process: every line JSON, RQ's own included.
    lines = clusterless_rollback.worker_lines
    assert any(line["logger"].startswith("rq.") for line in lines)
    traced = [line for line in lines if line.get("request_id") == REQUEST_ID]
    messages = {line["message"] for line in traced}
    assert {"job rollback started", "job incident started", "job incident finished"} <= messages
    [failed] = [line for line in traced if line["logger"] == "backstop.rollback"]
    assert failed["status"] == "failed" and failed["decision_id"] == decision["id"]
    rollback_id = failed["rollback_id"]
    [incident] = [line for line in traced if line["message"] == "job incident started"]
    assert incident["rollback_id"] == rollback_id
    assert incident["job_id"].startswith(f"incident-{rollback_id}")


def test_the_receiver_under_gunicorn_logs_only_json(receiver_server, webhook_headers):
    """Gunicorn's own lines (start, workers) and Backstop's, all JSON, the webhook's with
    the request id the caller gave."""
    answer = requests.post(
        f"{receiver_server.url}/webhooks/alertmanager",
        json=samples.alertmanager(samples.am_alert()),
        headers={**webhook_headers, "X-Request-Id": REQUEST_ID},
        timeout=10,
    )
    assert answer.status_code == 202

    def logged():
        lines = json_lines(receiver_server.log.read_text())
        return [line for line in lines if line.get("request_id") == REQUEST_ID] and lines

    lines = wait_for(logged, message="the webhook's log line")
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    traced = [line for line in lines if line.get("request_id") == REQUEST_ID]
    [webhook] = [line for line in traced if line["logger"] == "backstop.receiver.webhooks"]
    assert (webhook["message"], webhook["status"], webhook["accepted"]) == ("webhook", 202, 1)
