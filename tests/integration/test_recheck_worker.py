"""A deferred episode is re-checked by a real RQ worker with its scheduler."""

import os
import time
from datetime import UTC, datetime

from config.policy import Policy
from core import queues
from receiver.app import create_app
from testbed.processes import run_burst_worker
from tests import samples
from tests.conftest import wait_for


def test_deferred_episode_is_rechecked_by_the_worker(
    make_settings, webhook_headers, tmp_path, redis_url, redis_client
):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("mode: dry-run\ndefaults:\n  min_firing: 2s\n")
    policy = Policy.model_validate({"defaults": {"min_firing": "2s"}})
    client = create_app(make_settings(), policy=policy).test_client()
    client.post(
        "/webhooks/deployments",
        headers=webhook_headers,
        json=samples.deployment_event(minutes_ago=5),
    )
    answer = client.post(
        "/webhooks/alertmanager", headers=webhook_headers, json=samples.kill_switch(minutes_ago=0)
    ).get_json()
    [deferred] = answer["decisions"]
    assert deferred["outcome"] == "deferred"
    # The scheduled re-check must be due before the burst worker starts.
    registry = queues.queue(redis_client, queues.DECISIONS).scheduled_job_registry
    due = registry.get_scheduled_time(queues.recheck_job_id(deferred["id"]))
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.2)
    run_burst_worker({**os.environ, "REDIS_URL": redis_url, "BACKSTOP_CONFIG": str(policy_file)})
    api = {"Authorization": "Bearer test-api-token"}
    decision = wait_for(
        lambda: client.get(f"/api/v1/decisions/{deferred['id']}", headers=api).get_json(), timeout=5
    )
    assert decision["outcome"] == "dry_run"
    assert [step["outcome"] for step in decision["history"]] == ["deferred", "dry_run"]


def test_a_recheck_is_never_due_before_its_time(redis_client):
    # RQ keeps whole seconds, truncated; a re-check that ran early would stay deferred.
    at = datetime(2030, 1, 1, 12, 0, 0, 600_000, tzinfo=UTC)
    job_id = queues.schedule_recheck(redis_client, episode_id="ep", at=at)
    registry = queues.queue(redis_client, queues.DECISIONS).scheduled_job_registry
    assert registry.get_scheduled_time(job_id) >= at
