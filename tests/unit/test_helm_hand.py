"""The Helm CLI hand (workers/owners/helm.py) against in-memory stand-ins of Backstop's own
`Objects` and `Kube` interfaces (tests/helm_releases.py) and a real Redis store."""

import pytest

from config.owners import OwnersPolicy
from config.policy import Policy
from core.errors import TransientError
from core.integrations.kubernetes import Conflict
from core.owners import Claim
from core.records import Rollback, WorkloadRecord
from core.store import Store
from tests.helm_releases import (
    BAD_RS,
    CLAIM,
    GOOD_RS,
    NOW,
    WEB,
    Kube,
    Secrets,
    release,
    replica_set,
    secret,
    wire,
)
from workers.owners import Situation, Unfreezable, registry
from workers.owners.helm import ROLLBACK_MARK, HelmHand, images


@pytest.fixture
def store(redis_client) -> Store:
    return Store(redis_client, Policy())


def hand(objects: Secrets, store, kube=None, **owners) -> HelmHand:
    policy = OwnersPolicy.model_validate(owners)
    kube = kube or Kube(GOOD_RS, BAD_RS)
    return HelmHand(Situation(kube, objects, store, policy, lambda: NOW, lambda s: None))  # type: ignore[arg-type]


def rollback(rollback_id="rb-1") -> Rollback:
    return Rollback(
        id=rollback_id, decision_id="d", workload=WorkloadRecord.of(WEB), bad_revision="2"
    )


def installed(*statuses_images: tuple[str, str]) -> Secrets:
    """Revisions 1, 2, ... with these (status, image)s."""
    return Secrets(*(secret(release(n, s, i)) for n, (s, i) in enumerate(statuses_images, start=1)))


# -- confirm --------------------------------------------------------------------------------


def test_confirmed_when_the_deployed_release_renders_this_very_workload(store):
    objects = installed(("superseded", "shop/web:1"), ("deployed", "shop/web:2"))
    assert hand(objects, store).confirm(CLAIM, WEB)
    explicit = Secrets(secret(release(1, "deployed", "shop/web:1", namespace="shop")))
    assert hand(explicit, store).confirm(CLAIM, WEB)


@pytest.mark.parametrize(
    "doc",
    [
        {"name": "api"},
        {"kind": "StatefulSet"},
        {"kind": "Rollout"},  # same name and kind's group differ: argoproj.io, not apps
        {"namespace": "other"},
    ],
    ids=["other-name", "other-kind", "other-group", "other-namespace"],
)
def test_not_confirmed_when_the_deployed_release_renders_another_object(store, doc):
    objects = Secrets(secret(release(1, "deployed", "shop/web:1", **doc)))
    assert not hand(objects, store).confirm(CLAIM, WEB)


def test_not_confirmed_without_a_deployed_release_or_with_an_impossible_name(store):
    assert not hand(Secrets(), store).confirm(CLAIM, WEB)  # uninstalled: annotations remain
    superseded_only = installed(("superseded", "shop/web:1"), ("uninstalled", "shop/web:2"))
    assert not hand(superseded_only, store).confirm(CLAIM, WEB)
    lying_label = secret(release(1, "superseded", "shop/web:1"), labels={"status": "deployed"})
    assert not hand(Secrets(lying_label), store).confirm(CLAIM, WEB)
    corrupt = secret(release(1, "deployed", "shop/web:1"), data=wire(b"nope"))
    assert not hand(Secrets(corrupt), store).confirm(CLAIM, WEB)
    weird = Claim("helm", "shop", "Web,owner!=helm", "annotation", certain=False)
    assert not hand(installed(("deployed", "shop/web:1")), store).confirm(weird, WEB)


# -- freeze ---------------------------------------------------------------------------------


def test_nothing_to_freeze_unless_the_policy_forbids_recording_the_release(store):
    objects = installed(("superseded", "shop/web:1"), ("deployed", "shop/web:2"))
    assert hand(objects, store).freeze(CLAIM, WEB, rollback()) == []
    off = hand(objects, store, helm={"record_release": False})
    with pytest.raises(Unfreezable, match=r"owners\.helm\.record_release is off"):
        off.freeze(CLAIM, WEB, rollback())
    assert objects.writes == []
    assert type(registry.hand_for("helm", off.situation)) is HelmHand


# -- the record -----------------------------------------------------------------------------


def test_the_rollback_is_recorded_as_helm_rollback_would_and_only_once(store):
    current = release(2, "deployed", "shop/web:2")
    current["info"]["first_deployed"] = "2026-11-30T08:00:00Z"  # kept from the current one
    objects = Secrets(secret(release(1, "superseded", "shop/web:1"), labels={"team": "shop"}))
    objects.put(secret(current))
    helm = hand(objects, store)
    detail = helm.recorded(CLAIM, WEB, rollback(), "1")
    assert (
        detail
        == "Helm release shop/web: revision 3 records the rollback to revision 1 (2 superseded)"
    )
    one, two, three = (objects.release(n) for n in (1, 2, 3))
    assert {k: three[k] for k in ("chart", "config", "manifest", "hooks")} == {
        k: one[k] for k in ("chart", "config", "manifest", "hooks")
    }
    assert (three["name"], three["namespace"], three["version"]) == ("web", "shop", 3)
    assert three["info"] == {
        "first_deployed": "2026-11-30T08:00:00Z",
        "last_deployed": "2026-12-05T12:00:00.000000Z",
        "deleted": "",
        "description": "Rollback to 1",
        "status": "deployed",
        "notes": "notes 1",
    }
    stored = objects.items["sh.helm.release.v1.web.v3"]
    assert stored["type"] == "helm.sh/release.v1"
    assert stored["metadata"]["labels"] == {
        "name": "web",
        "owner": "helm",
        "status": "deployed",
        "version": "3",
        "createdAt": str(int(NOW.timestamp())),
        "team": "shop",  # the target's release label, as `helm rollback` copies it
    }
    assert stored["metadata"]["annotations"] == {ROLLBACK_MARK: "rb-1"}
    assert two["info"]["status"] == "superseded"
    labels = objects.items["sh.helm.release.v1.web.v2"]["metadata"]["labels"]
    assert labels["status"] == "superseded" and labels["modifiedAt"] == str(int(NOW.timestamp()))
    assert one["info"]["status"] == "superseded"  # untouched
    writes = list(objects.writes)
    again = helm.recorded(CLAIM, WEB, rollback(), "1")
    assert again == "Helm release shop/web: revision 3 records this rollback (written earlier)"
    assert objects.writes == writes and "sh.helm.release.v1.web.v4" not in objects.items


def test_a_rerun_after_a_crash_between_writing_and_superseding_completes_it(store):
    objects = installed(("superseded", "shop/web:1"), ("deployed", "shop/web:2"))
    written = secret({**release(1, "deployed", "shop/web:1"), "version": 3})
    written["metadata"]["annotations"] = {ROLLBACK_MARK: "rb-1"}
    objects.put(written)
    detail = hand(objects, store).recorded(CLAIM, WEB, rollback(), "1")
    assert detail.endswith("revision 3 records this rollback (written earlier); 2 superseded")
    assert objects.release(2)["info"]["status"] == "superseded"
    assert "sh.helm.release.v1.web.v4" not in objects.items


def test_the_target_is_the_newest_live_release_with_the_target_images(store):
    objects = installed(
        ("superseded", "shop/web:1"),  # 1
        ("superseded", "shop/web:1"),  # 2: new values, same image
        ("failed", "shop/web:1"),  # 3: never ran in full
        ("deployed", "shop/web:2"),  # 4: the bad one
        ("pending-upgrade", "shop/web:5"),  # 5: an upgrade under way elsewhere
    )
    detail = hand(objects, store).recorded(CLAIM, WEB, rollback(), "1")
    assert detail.endswith("revision 6 records the rollback to revision 2 (4 superseded)")
    assert objects.release(6)["info"]["description"] == "Rollback to 2"
    assert objects.release(6)["config"] == objects.release(2)["config"]


def test_init_container_images_count_too(store):
    first = release(1, "superseded", "shop/web:1", init="shop/migrate:1")
    second = release(2, "superseded", "shop/web:1", init="shop/migrate:2")
    objects = Secrets(secret(first), secret(second), secret(release(3, "deployed", "shop/web:2")))
    target = replica_set("1", "shop/web:1", "aaa")
    target["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "migrate", "image": "shop/migrate:1"}
    ]
    helm = hand(objects, store, Kube(target, BAD_RS))
    assert helm.recorded(CLAIM, WEB, rollback(), "1").endswith(
        "rollback to revision 1 (3 superseded)"
    )


def test_no_matching_release_writes_nothing_and_says_why(store):
    objects = installed(("superseded", "shop/web:0"), ("deployed", "shop/web:2"))
    detail = hand(objects, store).recorded(CLAIM, WEB, rollback(), "1")
    assert detail == (
        "Helm release shop/web: history not updated: no release before revision 2 renders "
        "Deployment web with web=shop/web:1"
    )
    assert objects.writes == []


def test_a_renumbered_target_is_found_by_the_template_this_rollback_restores(store):
    """The Deployment controller renumbers the reused ReplicaSet moments after the revert."""
    objects = installed(("superseded", "shop/web:1"), ("deployed", "shop/web:2"))
    kube = Kube(replica_set("3", "shop/web:1", "aaa"), BAD_RS)
    helm = hand(objects, store, kube)
    assert "history not updated: revision 1's pod template" in helm.recorded(
        CLAIM, WEB, rollback(), "1"
    )
    store.rollouts.expect_rollback(WEB, template_hash="aaa", bad_revision="2", decision_id="d")
    detail = helm.recorded(CLAIM, WEB, rollback(), "1")
    assert detail.endswith("revision 3 records the rollback to revision 1 (2 superseded)")


def test_a_revision_written_meanwhile_or_an_api_failure_is_said_not_raised(store):
    objects = installed(("superseded", "shop/web:1"), ("deployed", "shop/web:2"))
    objects.fail = Conflict("exists")
    assert (
        hand(objects, store)
        .recorded(CLAIM, WEB, rollback(), "1")
        .endswith("history not updated: revision 3 was written meanwhile")
    )
    objects.fail = TransientError("Kubernetes API 503: unavailable")
    assert hand(objects, store).recorded(CLAIM, WEB, rollback(), "1") == (
        "Helm release shop/web: history not updated (Kubernetes API 503: unavailable)"
    )
    assert objects.release(2)["info"]["status"] == "deployed"


def test_the_image_map_reads_containers_by_name_and_tolerates_malformed_parts():
    template = {"spec": {"containers": [{"name": "a", "image": "x"}, "junk"], "initContainers": 3}}
    assert images(template) == {"initContainers": {}, "containers": {"a": "x"}}
    assert images(None) == {"initContainers": {}, "containers": {}}


def test_an_aborted_rollout_whose_template_stays_bad_is_not_recorded(store):
    objects = installed(("superseded", "shop/web:1"), ("deployed", "shop/web:2"))
    aborted = rollback()
    aborted.aborted_only = True
    detail = hand(objects, store).recorded(CLAIM, WEB, aborted, "1")
    assert detail.endswith("history not updated: the Rollout was aborted, its template not undone")
    assert objects.writes == []
