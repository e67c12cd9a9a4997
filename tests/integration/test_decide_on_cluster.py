"""From a real rollout to a decision: watcher + receiver on the real control plane."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import requests
from kubernetes import client

from config.policy import Policy
from core import queues
from core.integrations.kubernetes import Kube
from core.models import Workload
from core.records import utcnow
from core.store import Store
from receiver.app import create_app
from testbed.servers import Gunicorn
from tests import samples
from tests.conftest import WEBHOOK_TOKEN, wait_for
from tests.workloads import deployment, set_image
from workers.watcher import Watcher

pytestmark = pytest.mark.integration


@pytest.fixture
def rolled_out(kube, kube_namespace, redis_client):
    """A Deployment at revision 2, recorded by a running watcher (stopped afterwards)."""
    policy = Policy.model_validate({"watch": {"namespaces": [kube_namespace]}})
    store = Store(redis_client, policy)
    stop = threading.Event()
    with kube.api_client() as api:
        watcher = Watcher(Kube(api), store, policy, utcnow, watch_seconds=2)
        thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
        thread.start()
        apps = client.AppsV1Api(api)
        apps.create_namespaced_deployment(kube_namespace, deployment("checkout", "shop/c:1"))
        workload = Workload("default", kube_namespace, "Deployment", "checkout")
        wait_for(lambda: store.rollouts.by_revision(workload, "1"), message="revision 1")
        set_image(apps, kube_namespace, "checkout", "shop/c:2")
        wait_for(lambda: store.rollouts.by_revision(workload, "2"), message="revision 2")
        yield workload
        stop.set()
        thread.join(timeout=30)


def alert_for(workload: Workload, name="CheckoutHigh5xx") -> dict:
    alert = samples.am_alert(
        name,
        starts_at=datetime.now(UTC).isoformat(),
        namespace=workload.namespace,
        deployment=workload.name,
        backstop_rollback="true",
    )
    return samples.alertmanager(alert)


def test_dry_run_then_enforce(rolled_out, make_settings, webhook_headers, redis_client):
    policy = {"defaults": {"min_firing": "0s"}}
    dry = create_app(make_settings(), policy=Policy.model_validate(policy)).test_client()
    answer = dry.post(
        "/webhooks/alertmanager", headers=webhook_headers, json=alert_for(rolled_out)
    ).get_json()
    [decision] = answer["decisions"]
    assert (decision["outcome"], decision["workload"]) == ("dry_run", rolled_out.key)
    assert queues.queue(redis_client, queues.ROLLBACKS).job_ids == [
        queues.rollback_job_id(rolled_out, "2", mode="dry-run")
    ]

    enforce = create_app(
        make_settings(), policy=Policy.model_validate({**policy, "mode": "enforce"})
    ).test_client()
    answer = enforce.post(
        "/webhooks/alertmanager",
        headers=webhook_headers,
        json=alert_for(rolled_out, "CheckoutLatencyP99"),
    ).get_json()
    [decision] = answer["decisions"]
    assert decision["outcome"] == "rollback"
    job = queues.queue(redis_client, queues.ROLLBACKS).fetch_job(
        queues.rollback_job_id(rolled_out, "2")
    )
    assert job.kwargs["bad_revision"] == "2" and job.kwargs["workload"] == rolled_out.key


def test_concurrent_duplicate_webhooks_make_one_job(
    rolled_out, receiver_env, redis_url, redis_client, tmp_path
):
    config = tmp_path / "policy.yaml"
    config.write_text("mode: enforce\ndefaults:\n  min_firing: 0s\n")
    env = {**receiver_env, "REDIS_URL": redis_url, "BACKSTOP_CONFIG": str(config)}
    body = json.dumps(alert_for(rolled_out))
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
    with Gunicorn("receiver.app:create_app()", env, workers=3) as web:

        def deliver(_):
            return requests.post(
                f"{web.url}/webhooks/alertmanager", data=body, headers=headers, timeout=10
            ).json()

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(deliver, range(64)))
    outcomes = [d["outcome"] for a in answers for d in a["decisions"]]
    assert outcomes == ["rollback"]
    assert sum(a["duplicates"] for a in answers) == 63
    assert queues.queue(redis_client, queues.ROLLBACKS).job_ids == [
        queues.rollback_job_id(rolled_out, "2")
    ]
