"""The watcher's relist on its own Kube interface: pages, an expired continue token, and
no ReplicaSet LIST for a revision the store already holds."""

from datetime import UTC, datetime

import pytest

from config.policy import Policy
from core.integrations.kubernetes import Gone, Page
from core.models import Workload
from core.store import Store
from workers.briefs import brief
from workers.watcher import Watcher

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def deployment(name: str, revision: str = "1") -> dict:
    """A Deployment as the API lists it, rolled out (replicas 0), with the noise briefs drop."""
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"uid-{name}",
            "generation": 1,
            "annotations": {
                "deployment.kubernetes.io/revision": revision,
                "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 1000 + "}",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"spec": {"containers": [{"name": name, "image": f"shop/{name}:1"}]}},
        },
        "status": {"observedGeneration": 1},
    }


def replica_set(owner: dict) -> dict:
    name = owner["metadata"]["name"]
    return {
        "metadata": {
            "name": f"{name}-abc",
            "namespace": "shop",
            "labels": {"app": name, "pod-template-hash": "abc"},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "creationTimestamp": "2026-11-01T11:00:00Z",
            "ownerReferences": [{"uid": owner["metadata"]["uid"], "controller": True}],
        },
        "spec": owner["spec"],
    }


class FakeKube:
    """Serves `objects` in pages by our own interface, counting LISTs; the continue tokens
    named in `expire` answer 410 Gone once."""

    def __init__(self, objects: list[dict], *, expire: tuple[str, ...] = ()):
        self.objects = objects
        self.expire = set(expire)
        self.pages_served: list[str | None] = []
        self.children_listed: list[str] = []

    def list_page(self, kind, namespace=None, *, limit=None, token=None, brief=None, **_):
        if token in self.expire:
            self.expire.discard(token)
            raise Gone("Kubernetes API 410: continue token expired")
        self.pages_served.append(token)
        start = int(token or 0)
        end = start + (limit or len(self.objects))
        items = [brief(o) if brief else o for o in self.objects[start:end]]
        return Page(items, "42", str(end) if end < len(self.objects) else None)

    def owned(self, kind, owner, *, brief=None):
        self.children_listed.append(owner["metadata"]["name"])
        rs = replica_set(owner)
        return [brief(rs) if brief else rs]


@pytest.fixture
def store(redis_client):
    return Store(redis_client, Policy())


def watcher(kube: FakeKube, store: Store, page_size: int = 2) -> Watcher:
    return Watcher(kube, store, Policy(), lambda: NOW, page_size=page_size)  # type: ignore[arg-type]


def test_a_relist_reads_every_page_and_records_each_workload_once(store):
    kube = FakeKube([deployment(f"svc-{i}") for i in range(5)])
    assert watcher(kube, store).sync("Deployment", None) == "42"
    assert kube.pages_served == [None, "2", "4"]
    for i in range(5):
        [rollout] = store.rollouts.for_workload(
            Workload("default", "shop", "Deployment", f"svc-{i}")
        )
        assert rollout.revision == "1" and rollout.images == [f"shop/svc-{i}:1"]
        assert rollout.completed_at == NOW


def test_an_expired_continue_token_lists_again_from_the_start(store):
    kube = FakeKube([deployment(f"svc-{i}") for i in range(5)], expire=("4",))
    assert watcher(kube, store).sync("Deployment", None) == "42"
    assert kube.pages_served == [None, "2", None, "2", "4"]
    for i in range(5):
        history = store.rollouts.for_workload(Workload("default", "shop", "Deployment", f"svc-{i}"))
        assert [r.revision for r in history] == ["1"]


def test_a_first_page_gone_is_not_retried_here():
    kube = FakeKube([deployment("svc")], expire=(None,))  # type: ignore[arg-type]
    with pytest.raises(Gone):
        list(watcher(kube, None).pages("Deployment", None))  # type: ignore[arg-type]


def test_a_known_revision_costs_no_replica_set_list(store):
    objects = [deployment(f"svc-{i}") for i in range(4)]
    first = FakeKube(objects)
    watcher(first, store).sync("Deployment", None)
    assert len(first.children_listed) == 4
    # A restarted watcher (nothing in memory) finds every revision stored: no LIST at all.
    again = FakeKube(objects)
    watcher(again, store).sync("Deployment", None)
    assert again.children_listed == []
    # A new revision of one workload is looked up, and only that one.
    objects[2] = deployment("svc-2", revision="2")
    changed = FakeKube(objects)
    watcher(changed, store).sync("Deployment", None)
    assert changed.children_listed == ["svc-2"]


def test_an_expected_rollback_takes_the_full_path(store):
    objects = [deployment("svc")]
    watcher(FakeKube(objects), store).sync("Deployment", None)
    workload = Workload("default", "shop", "Deployment", "svc")
    store.rollouts.expect_rollback(workload, template_hash="abc", bad_revision="0", decision_id="d")
    again = FakeKube(objects)
    watcher(again, store).sync("Deployment", None)
    assert again.children_listed == ["svc"]
    assert store.rollouts.by_revision(workload, "1").by_backstop


def test_a_brief_keeps_what_the_watcher_reads_and_drops_the_rest():
    full = deployment("svc")
    short = brief(full)
    assert "managedFields" not in short["metadata"]
    assert short["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}
    assert short["spec"]["template"] == full["spec"]["template"]
    assert short["spec"]["selector"] == full["spec"]["selector"] and short["status"]
    revision = {"metadata": {"name": "cr"}, "revision": 3, "data": {"spec": {"x": 1}}}
    assert brief(revision) == {"metadata": {"name": "cr"}, "revision": 3}
