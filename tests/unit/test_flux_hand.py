"""The Flux hands (workers/owners/flux.py) against in-memory stand-ins of Backstop's own
`Objects` and `Kube` interfaces and a real Redis store: what is frozen in each mode, what
a re-run of the job does, which image automations count, when a freeze ends, and what
thawing puts back."""

import copy
from datetime import UTC, datetime

import pytest

from config.owners import OwnersPolicy
from config.policy import Policy
from core.integrations.kubernetes import Conflict, NotFound
from core.integrations.objects import GIT_REPOSITORY, HELM_RELEASE, IMAGE_UPDATE, KUSTOMIZATION
from core.models import Workload
from core.owners import FLUX_RECONCILE, FROZEN_BY, Claim
from core.records import Rollback, WorkloadRecord
from core.store import Store
from workers.owners import Situation, Unfreezable
from workers.owners.flux import (
    REQUESTED_AT,
    HelmReleaseHand,
    KustomizationHand,
    overlaps,
    short,
    spec_digest,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
WEB = Workload("default", "shop", "Deployment", "web")
BAD = "main@sha1:" + "b" * 40
FIX = "main@sha1:" + "c" * 40


def merged(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


class Objects:
    """In-memory owner objects, keyed by (kind, namespace, name), with resourceVersions."""

    def __init__(self, *objects: dict):
        self.store: dict[tuple, dict] = {}
        self.writes: list[tuple] = []
        for obj in objects:
            self.put(obj)

    def put(self, obj: dict) -> None:
        meta = obj["metadata"]
        meta.setdefault("resourceVersion", "1")
        self.store[(obj["kind"], meta["namespace"], meta["name"])] = obj

    def get(self, ref, namespace, name) -> dict:
        try:
            return copy.deepcopy(self.store[(ref.kind, namespace, name)])
        except KeyError:
            raise NotFound(f"{ref.kind} {namespace}/{name}") from None

    def all(self, ref, namespace=None) -> list[dict]:
        return [copy.deepcopy(o) for (kind, _, _), o in self.store.items() if kind == ref.kind]

    def merge(self, ref, namespace, name, body) -> dict:
        live = self.get(ref, namespace, name)
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != live["metadata"]["resourceVersion"]:
            raise Conflict("moved")
        body = copy.deepcopy(body)
        body.get("metadata", {}).pop("resourceVersion", None)
        patched = merged(live, body)
        patched["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1)
        self.put(patched)
        self.writes.append((ref.kind, name, body))
        return copy.deepcopy(patched)


class Kube:
    """The workloads, as Backstop's Kube reads and merge-patches them."""

    def __init__(self, objects: Objects):
        self.objects = objects

    def get(self, kind, namespace, name) -> dict:
        return self.objects.get(_Kind(kind), namespace, name)

    def patch(self, kind, namespace, name, body, *, patch_type, status=False) -> dict:
        assert patch_type == "merge"
        return self.objects.merge(_Kind(kind), namespace, name, body)


class _Kind:
    def __init__(self, kind):
        self.kind = kind


def obj(api_version, kind, name, spec=None, status=None, namespace="shop", **meta) -> dict:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"namespace": namespace, "name": name, **meta},
        "spec": spec or {},
        "status": status or {},
    }


def git(revision=BAD) -> dict:
    return obj(
        GIT_REPOSITORY.api_version,
        "GitRepository",
        "repo",
        {"url": "x"},
        {"artifact": {"revision": revision}},
    )


def kustomization(**spec) -> dict:
    body = {"path": "./apps", "sourceRef": {"kind": "GitRepository", "name": "repo"}, **spec}
    status = {"lastAppliedRevision": BAD}
    return obj(KUSTOMIZATION.api_version, "Kustomization", "apps", body, status)


def automation(name="web", path="apps", source="repo", **spec) -> dict:
    body = {"sourceRef": {"kind": "GitRepository", "name": source}, "update": {"path": path}}
    return obj(IMAGE_UPDATE.api_version, "ImageUpdateAutomation", name, {**body, **spec})


def deployment() -> dict:
    return obj("apps/v1", "Deployment", "web", {"replicas": 1})


def helm_release() -> dict:
    chart = {
        "spec": {"chart": "charts/web", "sourceRef": {"kind": "GitRepository", "name": "repo"}}
    }
    return obj(
        HELM_RELEASE.api_version,
        "HelmRelease",
        "web",
        {"chart": chart, "values": {"image": "shop/web:2"}},
    )


@pytest.fixture
def store(redis_client) -> Store:
    return Store(redis_client, Policy())


def situation(objects, store, **owners) -> Situation:
    policy = OwnersPolicy.model_validate(owners)
    return Situation(Kube(objects), objects, store, policy, lambda: NOW, lambda s: None)  # type: ignore[arg-type]


def rollback(rollback_id="rb-1") -> Rollback:
    return Rollback(
        id=rollback_id, decision_id="d", workload=WorkloadRecord.of(WEB), bad_revision="2"
    )


KS_CLAIM = Claim("kustomization", "shop", "apps", "labels kustomize.toolkit.fluxcd.io/name")
HR_CLAIM = Claim("helmrelease", "shop", "web", "labels helm.toolkit.fluxcd.io/name")


def test_workload_mode_marks_only_the_workload(store):
    objects = Objects(git(), kustomization(), deployment())
    (record,) = KustomizationHand(situation(objects, store)).freeze(KS_CLAIM, WEB, rollback())
    marks = objects.store[("Deployment", "shop", "web")]["metadata"]["annotations"]
    assert marks == {FLUX_RECONCILE: "disabled", FROZEN_BY: "rb-1"}
    assert not objects.store[("Kustomization", "shop", "apps")]["spec"].get("suspend")
    assert (record.kind, record.how, record.source) == (
        "Deployment",
        "reconcile disabled on the workload",
        BAD,
    )
    assert record.stash == {"owner": ["Kustomization", "shop", "apps"], "source": ["shop", "repo"]}


def test_kustomization_mode_suspends_and_a_rerun_recognises_its_own_freeze(store):
    objects = Objects(git(), kustomization(), deployment())
    hand = KustomizationHand(situation(objects, store, kustomization={"suspend": "kustomization"}))
    (record,) = hand.freeze(KS_CLAIM, WEB, rollback())
    ks = objects.store[("Kustomization", "shop", "apps")]
    assert ks["spec"]["suspend"] is True and ks["metadata"]["annotations"][FROZEN_BY] == "rb-1"
    # The job died before saving the record: its re-run finds its own mark and records it.
    (again,) = hand.freeze(KS_CLAIM, WEB, rollback())
    assert again.id == record.id and again.how == "suspended"
    # Suspended under another mark (someone else's): not this rollback's to record or resume.
    assert hand.freeze(KS_CLAIM, WEB, rollback("rb-2")) == []


def test_an_active_freeze_is_joined_not_made_again(store):
    objects = Objects(git(), kustomization(), deployment())
    hand = KustomizationHand(situation(objects, store))
    (record,) = hand.freeze(KS_CLAIM, WEB, rollback())
    store.freezes.save(record)
    writes = len(objects.writes)
    (joined,) = hand.freeze(KS_CLAIM, WEB, rollback("rb-2"))
    assert joined.rollback_id == "rb-1" and len(objects.writes) == writes


def test_image_automations_writing_the_same_git_under_overlapping_paths_are_suspended(store):
    objects = Objects(
        git(),
        kustomization(),
        deployment(),
        automation("same"),
        automation("root", path=""),
        automation("elsewhere", path="infra"),
        automation("other-repo", source="other"),
        automation("paused", suspend=True),
    )
    frozen = KustomizationHand(situation(objects, store)).freeze(KS_CLAIM, WEB, rollback())
    assert sorted(r.name for r in frozen if r.kind == "ImageUpdateAutomation") == ["root", "same"]
    assert objects.store[("ImageUpdateAutomation", "shop", "same")]["spec"]["suspend"] is True
    assert "suspend" not in objects.store[("ImageUpdateAutomation", "shop", "elsewhere")]["spec"]


def test_image_automation_switched_off_blocks_before_anything_changes(store):
    objects = Objects(git(), kustomization(), deployment(), automation())
    hand = KustomizationHand(situation(objects, store, image_automation={"enabled": False}))
    with pytest.raises(Unfreezable, match=r"owners\.image_automation\.enabled is off"):
        hand.freeze(KS_CLAIM, WEB, rollback())
    assert objects.writes == []


def test_the_freeze_ends_when_the_git_repository_moves_past_the_bad_revision(store):
    objects = Objects(git(), kustomization(), deployment())
    hand = KustomizationHand(situation(objects, store))
    (record,) = hand.freeze(KS_CLAIM, WEB, rollback())
    assert hand.moved_past(record) == ""
    objects.put(git(FIX))
    assert hand.moved_past(record) == f"Git moved from {short(BAD)} to {short(FIX)}"


def test_thawing_the_workload_removes_the_marks_and_asks_for_a_reconcile(store):
    objects = Objects(git(), kustomization(), deployment())
    hand = KustomizationHand(situation(objects, store))
    (record,) = hand.freeze(KS_CLAIM, WEB, rollback())
    hand.thaw(record)
    assert not objects.store[("Deployment", "shop", "web")]["metadata"].get("annotations")
    ks = objects.store[("Kustomization", "shop", "apps")]
    assert ks["metadata"]["annotations"][REQUESTED_AT] == NOW.isoformat()
    hand.thaw(record)  # idempotent
    del objects.store[("Deployment", "shop", "web")]
    hand.thaw(record)  # gone: nothing to do


def test_a_helmrelease_freeze_also_ends_when_its_spec_changes(store):
    objects = Objects(git(), helm_release())
    hand = HelmReleaseHand(situation(objects, store))
    (record,) = hand.freeze(HR_CLAIM, WEB, rollback())
    hr = objects.store[("HelmRelease", "shop", "web")]
    assert hr["spec"]["suspend"] is True and record.stash["spec"] == spec_digest(hr)
    assert hand.moved_past(record) == ""
    objects.merge(HELM_RELEASE, "shop", "web", {"spec": {"values": {"image": "shop/web:3"}}})
    assert hand.moved_past(record) == "HelmRelease shop/web has new values or chart"
    hand.thaw(record)
    assert "suspend" not in objects.store[("HelmRelease", "shop", "web")]["spec"]


def test_a_kustomization_confirms_by_its_inventory_once_it_has_one(store):
    hand = KustomizationHand(situation(Objects(), store))
    listed = {"inventory": {"entries": [{"id": "shop_web_apps_Deployment", "v": "v1"}]}}
    other = {"inventory": {"entries": [{"id": "shop_api_apps_Deployment", "v": "v1"}]}}
    assert hand.holds({"status": listed}, WEB)
    assert not hand.holds({"status": other}, WEB)
    assert hand.holds({"status": {}}, WEB)
    assert not hand.confirm(KS_CLAIM, WEB)  # no such Kustomization


@pytest.mark.parametrize(
    ("one", "other", "expected"),
    [
        ("./apps", "apps", True),
        ("apps/web", "apps", True),
        ("", "apps/web", True),
        ("apps", "apps-two", False),
        ("infra", "./apps", False),
    ],
)
def test_paths_overlap_when_one_holds_the_other(one, other, expected):
    assert overlaps(one, other) is expected
