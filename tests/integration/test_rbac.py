"""deploy/base/rbac.yaml is enough for the worker and the watcher, and no more."""

import threading
from pathlib import Path

import pytest
import yaml
from kubernetes import client, utils

from core.integrations.kubernetes import Kube
from core.records import utcnow
from tests.conftest import wait_for
from tests.workloads import FAST, bad_release, deployment
from workers.watcher import Watcher

pytestmark = pytest.mark.integration

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "base" / "rbac.yaml"


@pytest.fixture(scope="module")
def tokens(kube):
    """Apply the manifests; tokens of the worker's and the watcher's ServiceAccounts."""
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        try:
            core.create_namespace({"metadata": {"name": "backstop"}})
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        for document in yaml.safe_load_all(RBAC.read_text()):
            try:
                utils.create_from_dict(api, document)
            except utils.FailToCreateError as exc:
                if any(e.status != 409 for e in exc.api_exceptions):
                    raise
    return {
        name: kube.service_account_token("backstop", f"backstop-{name}")
        for name in ("worker", "watcher")
    }


def test_worker_and_watcher_work_with_exactly_their_roles(kube, make_stack, tokens):
    stack = make_stack(FAST)
    workload = bad_release(stack)
    watcher_api = kube.api_client(tokens["watcher"])
    stop = threading.Event()
    watcher = Watcher(Kube(watcher_api), stack.store, stack.policy, utcnow, watch_seconds=2)
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: stack.store.rollouts.by_revision(workload, "2"), message="revision 2")
        worker_api = kube.api_client(tokens["worker"])
        rollback = stack.roll_back(stack.alert(workload), stack.executor(Kube(worker_api)))
        assert (rollback.status, rollback.target_revision) == ("verified", "1"), rollback.reason
        assert stack.store.rollbacks.evidence(rollback.id)["pods"]
        assert wait_for(lambda: stack.store.rollouts.by_revision(workload, "3"))
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.mark.parametrize(
    ("who", "call"),
    [
        ("worker", lambda apps, ns: apps.delete_namespaced_deployment("checkout", ns)),
        ("worker", lambda apps, ns: apps.create_namespaced_deployment(ns, deployment("x", "x:1"))),
        (
            "watcher",
            lambda apps, ns: apps.patch_namespaced_deployment(
                "checkout", ns, {"spec": {"replicas": 5}}
            ),
        ),
        ("watcher", lambda apps, ns: apps.read_namespaced_deployment("checkout", ns)),
    ],
)
def test_nothing_beyond_the_roles(kube, make_stack, tokens, who, call):
    stack = make_stack(FAST)
    stack.apps.create_namespaced_deployment(stack.namespace, deployment("checkout", "c:1"))
    with kube.api_client(tokens[who]) as api, pytest.raises(client.ApiException) as denied:
        call(client.AppsV1Api(api), stack.namespace)
    assert denied.value.status == 403
