"""The Argo CD hand's own judgments: which history entry deployed a revision, whether an
Application lists a workload, whether an operation is Backstop's, and the owner policy."""

from datetime import UTC, datetime

import pytest

from config.owners import OwnersPolicy
from core.models import Workload
from workers.owners.argocd import _ours, entry_before, listed

WEB = Workload("default", "shop", "Deployment", "web")


def at(second: int) -> str:
    return f"2026-12-05T10:00:{second:02d}Z"


HISTORY = [
    {"id": 0, "revision": "a" * 40, "deployStartedAt": at(0), "deployedAt": at(2)},
    {"id": 1, "revision": "b" * 40, "deployStartedAt": at(10), "deployedAt": at(12)},
    {"id": 2, "revision": "c" * 40, "deployStartedAt": at(20), "deployedAt": at(21)},
]


@pytest.mark.parametrize(
    ("live_since", "wanted"),
    [
        (datetime(2026, 12, 5, 10, 0, 1, tzinfo=UTC), 0),  # went live during sync 0
        (datetime(2026, 12, 5, 10, 0, 10, 900_000, tzinfo=UTC), 1),  # same second as 1's start
        (datetime(2026, 12, 5, 10, 0, 19, tzinfo=UTC), 1),  # before sync 2 began
        (datetime(2026, 12, 5, 10, 5, 0, tzinfo=UTC), 2),
    ],
)
def test_the_entry_that_deployed_a_revision_is_the_last_started_before_it_went_live(
    live_since, wanted
):
    assert entry_before(HISTORY, live_since)["id"] == wanted


def test_no_entry_when_every_deploy_started_later_or_has_no_time():
    early = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    assert entry_before(HISTORY, early) is None
    assert entry_before([{"id": 0, "revision": "a"}], datetime.now(UTC)) is None


def test_deployed_at_stands_in_for_an_older_argo_cds_missing_start():
    history = [{"id": 0, "revision": "a", "deployedAt": at(5)}]
    assert entry_before(history, datetime(2026, 12, 5, 10, 0, 6, tzinfo=UTC))["id"] == 0


def app(resources, destination="shop") -> dict:
    return {"spec": {"destination": {"namespace": destination}}, "status": {"resources": resources}}


def test_an_application_lists_the_workload_by_group_kind_namespace_and_name():
    entry = {"group": "apps", "kind": "Deployment", "namespace": "shop", "name": "web"}
    assert listed(app([entry]), WEB)
    assert listed(app([{**entry, "namespace": ""}]), WEB)  # the destination namespace
    assert not listed(app([{**entry, "name": "api"}]), WEB)
    assert not listed(app([{**entry, "group": "argoproj.io"}]), WEB)
    assert not listed(app([{**entry, "namespace": "other"}]), WEB)
    assert not listed({"spec": {}}, WEB)


def test_an_operation_is_backstops_when_its_info_names_the_rollback():
    ours = {"info": [{"name": "Reason", "value": "Backstop rollback rb-1: revision 2 -> 1"}]}
    assert _ours(ours, "rb-1")
    assert not _ours(ours, "rb-2")
    assert not _ours({"initiatedBy": {"automated": True}}, "rb-1")
    assert not _ours(None, "rb-1")


def test_every_owner_kind_is_on_by_default_and_each_can_be_switched_off():
    policy = OwnersPolicy()
    assert all(policy.allows(k) for k in ("argocd", "kustomization", "helmrelease", "helm"))
    off = OwnersPolicy.model_validate({"kustomization": {"enabled": False}})
    assert not off.allows("kustomization") and off.allows("argocd")
    assert not policy.allows("unknown")
