"""The deployment watcher on the real control plane: every rollout recorded exactly once."""

import threading
from datetime import timedelta

import pytest
from kubernetes import client

from config.policy import Policy
from core.integrations.kubernetes import Kube
from core.models import Workload
from core.records import utcnow
from core.store import Store
from core.store.rollouts import rollout_for
from tests.conftest import wait_for
from tests.workloads import deployment, set_image, workload_body
from workers.watcher import Watcher

pytestmark = pytest.mark.integration


@pytest.fixture
def apps(kube):
    with kube.api_client() as api:
        yield client.AppsV1Api(api)


@pytest.fixture
def policy(kube_namespace):
    return Policy.model_validate({"watch": {"namespaces": [kube_namespace]}})


@pytest.fixture
def store(redis_client, policy):
    return Store(redis_client, policy)


@pytest.fixture
def start_watcher(kube, store, policy):
    """Start a watcher thread; every one started is stopped after the test."""
    running = []

    def start() -> tuple[Watcher, threading.Event]:
        stop = threading.Event()
        api = kube.api_client()
        watcher = Watcher(Kube(api), store, policy, utcnow, watch_seconds=2)
        thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, thread, api))
        return watcher, stop

    yield start
    for stop, thread, api in running:
        stop.set()
        thread.join(timeout=30)
        api.close()


def revisions(store: Store, workload: Workload) -> list[str]:
    return sorted(r.revision for r in store.rollouts.for_workload(workload) if r.revision)


def test_rollouts_are_recorded_with_revisions_images_and_completion(
    apps, kube_namespace, store, start_watcher
):
    start_watcher()
    assert wait_for(store.rollouts.last_heartbeat, message="the watcher's heartbeat")
    workload = Workload("default", kube_namespace, "Deployment", "checkout")
    apps.create_namespaced_deployment(kube_namespace, deployment("checkout", "shop/checkout:1"))
    first = wait_for(lambda: store.rollouts.by_revision(workload, "1"), message="revision 1")
    assert first.images == ["shop/checkout:1"] and first.sources == ["watcher"]
    assert first.change_cause == "ship shop/checkout:1" and first.previous_revision is None
    assert wait_for(lambda: store.rollouts.by_revision(workload, "1").completed_at)

    set_image(apps, kube_namespace, "checkout", "shop/checkout:2")
    second = wait_for(lambda: store.rollouts.by_revision(workload, "2"), message="revision 2")
    assert second.previous_revision == "1" and second.images == ["shop/checkout:2"]
    assert second.started_at >= first.started_at
    replica_sets = apps.list_namespaced_replica_set(kube_namespace).items
    revision = "deployment.kubernetes.io/revision"
    hashes = {rs.metadata.annotations[revision]: rs for rs in replica_sets}
    assert first.template_hash == hashes["1"].metadata.labels["pod-template-hash"]
    assert second.template_hash == hashes["2"].metadata.labels["pod-template-hash"] != ""
    completed = wait_for(lambda: store.rollouts.by_revision(workload, "2").completed_at)
    assert completed >= second.started_at
    assert revisions(store, workload) == ["1", "2"]


def test_a_stalled_rollout_is_not_complete(kube, apps, kube_namespace, store, start_watcher):
    start_watcher()
    workload = Workload("default", kube_namespace, "Deployment", "cart")
    apps.create_namespaced_deployment(kube_namespace, deployment("cart", "shop/cart:1"))
    wait_for(
        lambda: (
            store.rollouts.by_revision(workload, "1").completed_at
            if store.rollouts.by_revision(workload, "1")
            else None
        )
    )
    kube.hold_unready("shop/cart:bad")
    try:
        set_image(apps, kube_namespace, "cart", "shop/cart:bad")
        bad = wait_for(lambda: store.rollouts.by_revision(workload, "2"), message="revision 2")
        assert bad.completed_at is None
        # Still not complete a little later: the new pods never become ready.
        assert store.rollouts.by_revision(workload, "2").completed_at is None
    finally:
        kube.release("shop/cart:bad")
    assert wait_for(lambda: store.rollouts.by_revision(workload, "2").completed_at)


def test_restart_neither_duplicates_nor_misses(apps, kube_namespace, store, start_watcher):
    workload = Workload("default", kube_namespace, "Deployment", "search")
    _, stop = start_watcher()
    apps.create_namespaced_deployment(kube_namespace, deployment("search", "shop/search:1"))
    wait_for(lambda: store.rollouts.by_revision(workload, "1"), message="revision 1")
    stop.set()  # the watcher goes down...
    set_image(apps, kube_namespace, "search", "shop/search:2")  # ...a rollout happens...
    set_image(apps, kube_namespace, "search", "shop/search:3")
    start_watcher()  # ...and a new watcher lists again
    wait_for(lambda: store.rollouts.by_revision(workload, "3"), message="revision 3")
    start_watcher()  # even two watchers at once record each rollout once
    wait_for(lambda: store.rollouts.by_revision(workload, "3").completed_at)
    # Revision 2 was never observed: it came and went while no watcher ran. What counts is
    # that nothing is duplicated and the current revision is known.
    history = store.rollouts.for_workload(workload)
    assert len(history) == len({r.revision for r in history})
    assert {"1", "3"} <= set(revisions(store, workload))


def test_a_ci_event_merges_with_the_watchers_record(
    apps, kube_namespace, store, start_watcher, policy
):
    workload = Workload("default", kube_namespace, "Deployment", "payments")
    # CI reports the deployment (without knowing the revision) before the watcher sees it.
    store.rollouts.record_ci(
        rollout_for(
            workload,
            started_at=utcnow(),
            version="v2.0.0",
            commit="deadbeef",
            previous_commit="cafe1234",
            repository="https://github.com/shop/payments",
            pipeline_url="https://ci/pipelines/7",
            author="dev@example.com",
            url="https://ci/run/7",
            sources=["ci"],
        ),
        merge_window=policy.watch.ci_merge_window,
    )
    start_watcher()
    apps.create_namespaced_deployment(kube_namespace, deployment("payments", "shop/pay:2"))
    merged = wait_for(lambda: store.rollouts.by_revision(workload, "1"), message="revision 1")
    assert merged.sources == ["ci", "watcher"]
    assert (merged.commit, merged.version, merged.url) == ("deadbeef", "v2.0.0", "https://ci/run/7")
    assert (merged.previous_commit, merged.repository, merged.pipeline_url) == (
        "cafe1234",
        "https://github.com/shop/payments",
        "https://ci/pipelines/7",
    )
    assert len(store.rollouts.for_workload(workload)) == 1
    # A CI event naming the revision afterwards joins the same record.
    again = store.rollouts.record_ci(
        rollout_for(
            workload, revision="1", started_at=utcnow(), author="release-bot", sources=["ci"]
        ),
        merge_window=timedelta(minutes=10),
    )
    assert again.id == merged.id and again.author == "release-bot"


def test_backstops_own_rollback_is_marked(apps, kube_namespace, store, start_watcher):
    workload = Workload("default", kube_namespace, "Deployment", "web")
    start_watcher()
    apps.create_namespaced_deployment(kube_namespace, deployment("web", "shop/web:1"))
    wait_for(lambda: store.rollouts.by_revision(workload, "1"), message="revision 1")
    set_image(apps, kube_namespace, "web", "shop/web:2")
    wait_for(lambda: store.rollouts.by_revision(workload, "2"), message="revision 2")
    replica_sets = apps.list_namespaced_replica_set(kube_namespace).items
    first = next(
        rs
        for rs in replica_sets
        if rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    )
    store.rollouts.expect_rollback(
        workload,
        template_hash=first.metadata.labels["pod-template-hash"],
        bad_revision="2",
        decision_id="d1",
    )
    set_image(apps, kube_namespace, "web", "shop/web:1")  # what an undo applies
    third = wait_for(lambda: store.rollouts.by_revision(workload, "3"), message="revision 3")
    assert third.by_backstop and third.rollback_of == "2"
    assert third.previous_revision == "2"


def test_statefulset_revisions_come_from_controller_revisions(
    apps, kube_namespace, store, start_watcher
):
    start_watcher()
    workload = Workload("default", kube_namespace, "StatefulSet", "ledger")
    body = workload_body("ledger", "shop/ledger:1")
    body["spec"].update({"replicas": 2, "serviceName": "ledger"})
    apps.create_namespaced_stateful_set(kube_namespace, body)
    first = wait_for(lambda: store.rollouts.by_revision(workload, "1"), message="revision 1")
    assert first.images == ["shop/ledger:1"]
    assert wait_for(lambda: store.rollouts.by_revision(workload, "1").completed_at)
    apps.patch_namespaced_stateful_set(
        "ledger",
        kube_namespace,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "ledger", "image": "shop/ledger:2"}]}}
            }
        },
    )
    second = wait_for(lambda: store.rollouts.by_revision(workload, "2"), message="revision 2")
    assert second.previous_revision == "1" and second.images == ["shop/ledger:2"]
    # A StatefulSet's pods carry their ControllerRevision's name as controller-revision-hash.
    ledger = apps.read_namespaced_stateful_set("ledger", kube_namespace)
    assert second.template_hash == ledger.status.update_revision
    assert wait_for(lambda: store.rollouts.by_revision(workload, "2").completed_at)


def test_daemonset_revisions_come_from_controller_revisions(
    apps, kube_namespace, store, start_watcher
):
    start_watcher()
    workload = Workload("default", kube_namespace, "DaemonSet", "agent")
    apps.create_namespaced_daemon_set(kube_namespace, workload_body("agent", "ops/agent:1"))
    assert wait_for(lambda: store.rollouts.by_revision(workload, "1"), message="revision 1")
    apps.patch_namespaced_daemon_set(
        "agent",
        kube_namespace,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "agent", "image": "ops/agent:2"}]}}
            }
        },
    )
    second = wait_for(lambda: store.rollouts.by_revision(workload, "2"), message="revision 2")
    assert second.previous_revision == "1" and second.images == ["ops/agent:2"]
    # A DaemonSet's pods carry the hash alone, as its ControllerRevisions do.
    revisions = apps.list_namespaced_controller_revision(kube_namespace).items
    [newest] = [r for r in revisions if r.revision == 2]
    assert second.template_hash == newest.metadata.labels["controller-revision-hash"]
    assert newest.metadata.name == f"agent-{second.template_hash}"
    assert wait_for(lambda: store.rollouts.by_revision(workload, "2").completed_at)


def test_a_relist_in_small_pages_records_every_workload_once(
    kube, apps, kube_namespace, store, policy
):
    names = [f"paged-{i}" for i in range(5)]
    for name in names:
        apps.create_namespaced_deployment(kube_namespace, deployment(name, f"shop/{name}:1", 0))
    annotated = "deployment.kubernetes.io/revision"
    wait_for(
        lambda: all(
            annotated in (d.metadata.annotations or {})
            for d in apps.list_namespaced_deployment(kube_namespace).items
        ),
        message="the controller's revisions",
    )
    with kube.api_client() as api:
        watcher = Watcher(Kube(api), store, policy, utcnow, page_size=2)
        pages = list(watcher.pages("Deployment", kube_namespace))
        assert [len(page.items) for page in pages] == [2, 2, 1]
        assert len({page.resource_version for page in pages}) == 1  # one consistent list
        assert all("managedFields" not in page.items[0]["metadata"] for page in pages)
        assert watcher.sync("Deployment", kube_namespace)  # the watch starts from its version
        watcher.sync("Deployment", kube_namespace)  # a second relist adds nothing
    for name in names:
        history = store.rollouts.for_workload(
            Workload("default", kube_namespace, "Deployment", name)
        )
        assert [(r.revision, r.images) for r in history] == [("1", [f"shop/{name}:1"])]
