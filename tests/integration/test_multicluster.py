"""One Backstop, two real clusters: the session's control plane is cluster `a`, a second one
started here is cluster `b`, both reached through one kubeconfig with two contexts.

The watcher records each cluster's rollouts under its own name; an alert labelled with a
cluster rolls back that cluster's workload only, through a real `backstop worker`; an
alert for a cluster Backstop does not guard changes nothing anywhere.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from contextlib import ExitStack, contextmanager

import pytest
import yaml
from kubernetes import client, config

from config.policy import Policy
from core import queues
from core.clusters import Clusters
from core.models import Workload
from core.records import utcnow
from core.store import Store
from receiver.app import create_app
from testbed.kube import kubebuild
from testbed.kube.kube import ControlPlane
from testbed.kube.procs import free_port
from testbed.processes import run_burst_worker, terminate
from tests import samples
from tests.conftest import wait_for
from tests.workloads import FAST, deployment, set_image
from workers.watcher import watch_clusters

pytestmark = pytest.mark.integration

NAMES = ("a", "b")
# Variables that would otherwise tell a worker how to reach a cluster besides the policy.
KUBE_ENV = ("KUBECONFIG", "BACKSTOP_KUBE_CONTEXT", "KUBERNETES_SERVICE_HOST")


@pytest.fixture(scope="module")
def plane_b(tmp_path_factory):
    """A second, independent control plane (etcd, apiserver, controllers, pod helper)."""
    plane = ControlPlane(tmp_path_factory.mktemp("kube-b"), binaries=kubebuild.ensure_binaries())
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


def _current(kubeconfig) -> tuple[dict, dict]:
    """The cluster and user entries of a kubeconfig's current context."""
    document = yaml.safe_load(kubeconfig.read_text())
    context = next(
        c["context"] for c in document["contexts"] if c["name"] == document["current-context"]
    )
    cluster = next(c["cluster"] for c in document["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in document["users"] if u["name"] == context["user"])
    return cluster, user


def write_kubeconfig(path, entries: dict[str, tuple[dict, dict]]) -> None:
    """One kubeconfig with a context, cluster and user per name."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, (c, _) in entries.items()],
        "users": [{"name": n, "user": u} for n, (_, u) in entries.items()],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in entries],
        "current-context": next(iter(entries)),
    }
    path.write_text(json.dumps(document))
    path.chmod(0o600)


@pytest.fixture(scope="module")
def kubeconfig(kube, plane_b, tmp_path_factory):
    """One kubeconfig, contexts `a` (the session's cluster) and `b` (the second plane)."""
    path = tmp_path_factory.mktemp("multicluster") / "kubeconfig"
    write_kubeconfig(path, {"a": _current(kube.kubeconfig), "b": _current(plane_b.kubeconfig)})
    return path


@pytest.fixture
def apis(kubeconfig):
    """Admin API clients of both clusters, by name."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(config.new_client_from_config(str(kubeconfig), context=name))
            for name in NAMES
        }


@pytest.fixture
def namespace(apis):
    """The same fresh namespace in both clusters, deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    for api in apis.values():
        client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    for api in apis.values():
        client.CoreV1Api(api).delete_namespace(name)


def policy_for(namespace: str, kubeconfig, **clusters) -> Policy:
    """FAST enforce policy guarding a and b (plus `clusters`), local cluster `a`."""
    reach = {name: {"context": name, "kubeconfig": str(kubeconfig)} for name in NAMES}
    return Policy.model_validate(
        {
            **FAST,
            "cluster": "a",
            "clusters": {**reach, **clusters},
            "watch": {"namespaces": [namespace]},
        }
    )


@contextmanager
def watching(policy: Policy, store: Store, make_settings):
    """`watch_clusters` in a thread for the duration of the block."""
    clusters = Clusters(policy, make_settings(kubeconfig=None, kube_context=None))
    stop = threading.Event()
    thread = threading.Thread(
        target=watch_clusters,
        args=(clusters, store, policy, utcnow, stop),
        kwargs={"watch_seconds": 2},
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        clusters.close()


def release(api, namespace: str, image: str) -> None:
    """Deployment `checkout` at a healthy revision 1 (`<image>:1`), then revision 2."""
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("checkout", f"{image}:1"))
    wait_for(
        lambda: (
            apps.read_namespaced_deployment("checkout", namespace).status.available_replicas == 2
        ),
        message="revision 1 available",
    )
    set_image(apps, namespace, "checkout", f"{image}:2")


def live(api, namespace: str) -> tuple[str | None, str]:
    """The Deployment's revision (None until the controller numbers it) and image."""
    obj = client.AppsV1Api(api).read_namespaced_deployment("checkout", namespace)
    revision = (obj.metadata.annotations or {}).get("deployment.kubernetes.io/revision")
    return revision, obj.spec.template.spec.containers[0].image


def checkout(cluster: str, namespace: str) -> Workload:
    """The test Deployment `checkout` in `cluster`."""
    return Workload(cluster, namespace, "Deployment", "checkout")


@pytest.fixture
def released(apis, namespace, redis_client, kubeconfig, make_settings):
    """`checkout` at a bad revision 2 in both clusters (images shop/a-… and shop/b-…),
    recorded by the watcher of both; the policy and store used."""
    policy = policy_for(namespace, kubeconfig)
    store = Store(redis_client, policy)
    with watching(policy, store, make_settings):
        for name in NAMES:
            release(apis[name], namespace, f"shop/{name}-checkout")
        for name in NAMES:
            wait_for(
                lambda n=name: store.rollouts.by_revision(checkout(n, namespace), "2"),
                message=f"revision 2 in cluster {name}",
            )
    return policy, store


def worker_env(redis_url: str, policy: Policy, tmp_path) -> dict[str, str]:
    """A worker's environment: the policy file is its only way to any cluster."""
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy.model_dump(mode="json", exclude_none=True)))
    env = {k: v for k, v in os.environ.items() if k not in KUBE_ENV}
    return {**env, "REDIS_URL": redis_url, "BACKSTOP_CONFIG": str(path)}


def post_alert(web, headers: dict, namespace: str, **labels) -> dict:
    """A kill-switch alert about `checkout` through the receiver; its one decision."""
    body = samples.kill_switch(minutes_ago=0, namespace=namespace, **labels)
    answer = web.post("/webhooks/alertmanager", headers=headers, json=body)
    assert answer.status_code == 202, answer.get_json()
    [decision] = answer.get_json()["decisions"]
    return decision


def test_the_watcher_records_each_cluster_under_its_name(released, namespace):
    _, store = released
    for name in NAMES:
        first = store.rollouts.by_revision(checkout(name, namespace), "1")
        second = store.rollouts.by_revision(checkout(name, namespace), "2")
        assert first.images == [f"shop/{name}-checkout:1"]
        assert second.images == [f"shop/{name}-checkout:2"]
        assert second.workload.cluster == name


@pytest.mark.parametrize(("target", "other"), [("b", "a"), ("a", "b")])
def test_an_alert_rolls_back_only_its_own_cluster(
    released, namespace, apis, make_settings, webhook_headers, redis_url, tmp_path, target, other
):
    policy, store = released
    web = create_app(make_settings(), policy=policy).test_client()
    decision = post_alert(web, webhook_headers, namespace, cluster=target)
    assert decision["outcome"] == "rollback", decision
    assert decision["workload"] == checkout(target, namespace).key

    run_burst_worker(worker_env(redis_url, policy, tmp_path))

    rollback = store.rollbacks.get(queues.rollback_job_id(checkout(target, namespace), "2"))
    assert (rollback.status, rollback.target_revision) == ("verified", "1"), rollback.reason
    assert live(apis[target], namespace) == ("3", f"shop/{target}-checkout:1")
    # The same-named Deployment in the other cluster is untouched.
    assert live(apis[other], namespace) == ("2", f"shop/{other}-checkout:2")


def test_an_alert_for_an_unknown_cluster_acts_nowhere(
    released,
    namespace,
    apis,
    make_settings,
    webhook_headers,
    api_headers,
    redis_client,
    redis_url,
    tmp_path,
):
    policy, store = released
    # CI reports a rollout in cluster c, so correlation alone would blame it.
    web = create_app(make_settings(), policy=policy).test_client()
    event = samples.deployment_event(minutes_ago=1, namespace=namespace, cluster="c", revision=2)
    answer = web.post("/webhooks/deployments", headers=webhook_headers, json=event)
    assert answer.status_code == 202, answer.get_json()

    decision = post_alert(web, webhook_headers, namespace, cluster="c")
    assert (decision["outcome"], decision["reason"]) == ("skipped", "unknown_cluster")
    assert decision["workload"] == checkout("c", namespace).key
    assert queues.queue(redis_client, queues.ROLLBACKS).job_ids == []
    # Nothing was rolled back, but a human is paged.
    incidents = queues.queue(redis_client, queues.INCIDENTS)
    pages = [incidents.fetch_job(i) for i in incidents.job_ids if i.startswith("page-")]
    assert [job.kwargs["decision_id"] for job in pages] == [decision["id"]]

    run_burst_worker(worker_env(redis_url, policy, tmp_path))
    for name in NAMES:
        assert live(apis[name], namespace) == ("2", f"shop/{name}-checkout:2")
    answer = web.get(f"/api/v1/decisions/{decision['id']}", headers=api_headers).get_json()
    assert answer["reason"] == "unknown_cluster"
    assert store.incidents.get(f"decision-{decision['id']}").status == "unknown_cluster"


def test_a_rollback_job_for_a_cluster_no_longer_configured_fails_and_pages(
    released, namespace, apis, kubeconfig, make_settings, webhook_headers, redis_url, tmp_path
):
    """Defence in depth: the receiver decided while cluster `c` was configured (as another
    name for `a`); the worker's policy no longer has it. The job fails permanently with the
    reason, changes nothing in any cluster, and files an incident (which pages)."""
    policy, store = released
    before = policy_for(namespace, kubeconfig, c={"context": "a", "kubeconfig": str(kubeconfig)})
    web = create_app(make_settings(), policy=before).test_client()
    event = samples.deployment_event(minutes_ago=1, namespace=namespace, cluster="c", revision=2)
    assert web.post("/webhooks/deployments", headers=webhook_headers, json=event).status_code == 202
    decision = post_alert(web, webhook_headers, namespace, cluster="c")
    assert decision["outcome"] == "rollback", decision

    run_burst_worker(worker_env(redis_url, policy, tmp_path))

    rollback = store.rollbacks.get(queues.rollback_job_id(checkout("c", namespace), "2"))
    assert rollback.status == "failed"
    assert rollback.reason.startswith("unknown_cluster: cluster 'c' is not configured")
    assert store.incidents.get(rollback.id).status == "failed"
    for name in NAMES:
        assert live(apis[name], namespace) == ("2", f"shop/{name}-checkout:2")


def test_an_unreachable_cluster_does_not_stop_the_others(
    apis, namespace, redis_client, kubeconfig, make_settings, tmp_path
):
    # Nothing listens at cluster `down`'s address; cluster `b`'s kubeconfig is not there yet
    # (a Secret not mounted yet): `a` is watched meanwhile, `b` as soon as it can be.
    down = tmp_path / "down-kubeconfig"
    cluster = {"server": f"https://127.0.0.1:{free_port()}", "insecure-skip-tls-verify": True}
    write_kubeconfig(down, {"down": (cluster, {"token": "none"})})
    late = tmp_path / "late-kubeconfig"
    policy = policy_for(
        namespace,
        kubeconfig,
        down={"context": "down", "kubeconfig": str(down)},
        b={"context": "b", "kubeconfig": str(late)},
    )
    store = Store(redis_client, policy)
    with watching(policy, store, make_settings):
        for name in NAMES:
            client.AppsV1Api(apis[name]).create_namespaced_deployment(
                namespace, deployment("checkout", f"shop/{name}-checkout:1")
            )
        wait_for(
            lambda: store.rollouts.by_revision(checkout("a", namespace), "1"),
            message="revision 1 in cluster a",
        )
        assert store.rollouts.by_revision(checkout("b", namespace), "1") is None
        shutil.copy(kubeconfig, late)
        wait_for(
            lambda: store.rollouts.by_revision(checkout("b", namespace), "1"),
            timeout=60,
            message="revision 1 in cluster b, once its kubeconfig is there",
        )
        assert store.rollouts.for_workload(checkout("down", namespace)) == []


def test_backstop_watch_with_leader_election_watches_every_cluster(
    kube, apis, namespace, redis_client, redis_url, kubeconfig, tmp_path
):
    """The CLI: the Lease lives in the local cluster (KUBECONFIG), the leader watches both."""
    policy = policy_for(namespace, kubeconfig)
    env = worker_env(redis_url, policy, tmp_path)
    env.update(
        {
            "KUBECONFIG": str(kube.kubeconfig),
            "BACKSTOP_LEADER_ELECTION_NAMESPACE": namespace,
            "BACKSTOP_LEADER_ELECTION_NAME": "watcher",
        }
    )
    log = open(tmp_path / "watch.log", "wb")  # noqa: SIM115 - the child writes to it
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "watch"],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    store = Store(redis_client, policy)
    try:
        for name in NAMES:
            client.AppsV1Api(apis[name]).create_namespaced_deployment(
                namespace, deployment("checkout", f"shop/{name}-checkout:1")
            )
        for name in NAMES:
            wait_for(
                lambda n=name: store.rollouts.by_revision(checkout(n, namespace), "1"),
                timeout=60,
                message=f"revision 1 in cluster {name} (log: {tmp_path / 'watch.log'})",
            )
        leases = client.CoordinationV1Api(apis["a"])
        assert leases.read_namespaced_lease("watcher", namespace).spec.holder_identity
        # SIGTERM: it stops by itself (terminate() would SIGKILL after 20 s: not 0 then),
        # without waiting for its open watches, and hands the Lease back on the way out.
        terminate(process)
        assert process.returncode == 0
        assert not leases.read_namespaced_lease("watcher", namespace).spec.holder_identity
    finally:
        terminate(process)
        log.close()


def test_without_clusters_only_the_local_cluster_is_guarded(
    make_settings, webhook_headers, redis_client
):
    """No `clusters:`: the local cluster (`cluster`, here `default`) acts as before; an alert
    labelled with any other cluster is skipped, even when CI reported a rollout there."""
    web = create_app(make_settings(), policy=Policy.model_validate(FAST)).test_client()
    for cluster in ("default", "other"):
        event = samples.deployment_event(minutes_ago=1, cluster=cluster)
        assert (
            web.post("/webhooks/deployments", headers=webhook_headers, json=event).status_code
            == 202
        )
    other = samples.kill_switch(minutes_ago=0, cluster="other")
    [decision] = web.post("/webhooks/alertmanager", headers=webhook_headers, json=other).get_json()[
        "decisions"
    ]
    assert (decision["outcome"], decision["reason"]) == ("skipped", "unknown_cluster")
    local = samples.alertmanager(
        samples.am_alert(
            fingerprint="f00d", starts_at=utcnow().isoformat(), backstop_rollback="true"
        )
    )
    [decision] = web.post("/webhooks/alertmanager", headers=webhook_headers, json=local).get_json()[
        "decisions"
    ]
    assert (decision["outcome"], decision["workload"]) == (
        "rollback",
        "default/shop/Deployment/checkout",
    )
    workload = Workload.from_key(decision["workload"])
    assert queues.queue(redis_client, queues.ROLLBACKS).job_ids == [
        queues.rollback_job_id(workload, "3")
    ]
