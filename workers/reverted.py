"""Is the workload running what Backstop restored? Its live template against the one
Backstop announced before patching (`RolloutStore.expect_rollback`).

Asked twice: by a re-run of a rollback whose earlier attempt may have patched before it
died (`applied_earlier`), and at the end of verification, since another writer — a GitOps
reconciler, a pipeline, a human — may have put the bad template back while Backstop waited
(`still_reverted`).
"""

from core.integrations.kubernetes import Kube
from core.models import Workload
from core.records import Rollback
from core.store import Store
from workers.preflight import Revisions, read_revisions
from workers.revert import template_hash


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
    """Does the workload still run the template Backstop restored? True when Backstop no
    longer knows which one that was (its note expires after an hour)."""
    expected = store.rollouts.expected_rollback(workload)
    if expected is None or not expected.get("template_hash"):
        return True
    return _live_hash(workload, read_revisions(kube, workload)) == expected["template_hash"]


def _live_hash(workload: Workload, revisions: Revisions) -> str | None:
    current = revisions.children.get(revisions.current) if revisions.current else None
    return template_hash(workload.kind, current) if current is not None else None
