"""Is the workload running what Backstop restored? Its live template against the one
Backstop announced before patching (`RolloutStore.expect_rollback`).

Asked twice: by a re-run of a rollback whose earlier attempt may have patched before it
died (`applied_earlier`), and at the end of verification, since another writer — a GitOps
reconciler, a pipeline, a human — may have put the bad template back while Backstop waited
(`still_reverted`). And once the revert rolled out, the revision it created is recorded as
Backstop's own rollout (`record_created_revision`).
"""

from datetime import datetime

from config.policy import WatchPolicy
from core.integrations.kubernetes import Kube
from core.models import Workload
from core.records import Rollback, Rollout, WorkloadRecord
from core.revisions import images
from core.store import Store
from workers.preflight import Revisions, read_revisions
from workers.revert import pod_template, template_hash


def applied_earlier(
    store: Store, rollback: Rollback, workload: Workload, revisions: Revisions | None
) -> bool:
    """Did an earlier attempt of this rollback patch the workload before it died?"""
    expected = store.rollouts.expected_rollback(workload)
    if revisions is None or expected is None:
        return False
    return (
        expected.get("decision_id") == rollback.decision_id
        and expected.get("bad_revision") == rollback.bad_revision
        and _live_hash(workload, revisions) == expected.get("template_hash")
    )


def still_reverted(kube: Kube, store: Store, workload: Workload) -> bool:
    """Does the workload still run the template Backstop restored?"""
    return restored(store, workload, read_revisions(kube, workload))


def restored(store: Store, workload: Workload, revisions: Revisions) -> bool:
    """Is the live revision the template Backstop restored? True when Backstop no longer
    knows which one that was (its note expires after an hour)."""
    expected = store.rollouts.expected_rollback(workload)
    if expected is None or not expected.get("template_hash"):
        return True
    return _live_hash(workload, revisions) == expected["template_hash"]


def _live_hash(workload: Workload, revisions: Revisions) -> str | None:
    current = revisions.children.get(revisions.current) if revisions.current else None
    return template_hash(workload.kind, current) if current is not None else None


def record_created_revision(
    kube: Kube,
    store: Store,
    workload: Workload,
    rollback: Rollback,
    now: datetime,
    watch: WatchPolicy,
) -> str | None:
    """The revision the revert created, recorded as Backstop's own rollout; None when the
    live revision is still the bad one, or a template Backstop did not restore."""
    revisions = read_revisions(kube, workload)
    if revisions.current is None or revisions.current == rollback.bad_revision:
        return None
    if not restored(store, workload, revisions):
        return None  # someone else's revision
    child = revisions.children.get(revisions.current, {})
    store.rollouts.record_observed(
        Rollout(
            workload=WorkloadRecord.of(workload),
            revision=revisions.current,
            previous_revision=rollback.bad_revision,
            by_backstop=True,
            rollback_of=rollback.bad_revision,
            started_at=now,
            images=images(pod_template(workload.kind, child)) if child else [],
            sources=["backstop"],
        ),
        merge_window=watch.ci_merge_window,
    )
    return revisions.current
