"""Pages about decisions, coalesced: one per workload, reason and window.

Many decisions that would each page for the same workload (or, for a workload in a cluster
Backstop does not guard or none at all, the same cluster/namespace) and reason within
`coalesce_window` share one page job and one PagerDuty incident (dedup_key
`backstop-page-<group>`); the page says how many decisions it covers. Once
`max_pages_per_window` groups were opened in a window, further ones join one overflow page
per reason, so a flood of alerts about distinct workloads pages a few times, not once per
alert. Windows are fixed (aligned to the epoch), so decisions on either side of a boundary
page twice.
"""

import hashlib
from datetime import datetime, timedelta

import redis

from config.policy import Policy
from core import queues
from core.records import Decision
from core.store import Store

# A group's count stays readable this long after its window: a page retried for hours
# (PagerDuty down) still says how many decisions it covers.
KEEP_AFTER_WINDOW = timedelta(days=1)


def page_scope(decision: Decision) -> str:
    """What a page is about: the workload; for a workload Backstop does not guard
    (unknown_cluster) or none at all, the cluster/namespace the alert names."""
    if decision.workload is not None and decision.reason != "unknown_cluster":
        return decision.workload.workload().key
    labels = decision.labels
    if decision.workload is not None:
        return f"{decision.workload.cluster}/{decision.workload.namespace}"
    return f"{labels.get('cluster', '')}/{labels.get('namespace', '')}"


def request_page(
    store: Store, connection: redis.Redis, policy: Policy, decision: Decision, now: datetime
) -> str:
    """Count the decision into its page group and make sure that group's page job exists;
    returns the job id."""
    paging = policy.incidents.pagerduty
    window = paging.coalesce_window
    seconds = max(1, int(window.total_seconds()))
    bucket = f"{seconds}s{int(now.timestamp()) // seconds}"
    scope = hashlib.blake2b(page_scope(decision).encode(), digest_size=8).hexdigest()
    group, first = store.pages.join(
        group=f"{decision.reason}-{scope}-{bucket}",
        overflow=f"{decision.reason}-overflow-{bucket}",
        bucket=bucket,
        decision_id=decision.id,
        ttl=window + KEEP_AFTER_WINDOW,
        max_groups=paging.max_pages_per_window,
    )
    # Unique job id: enqueued again by every decision of the group, created once.
    return queues.enqueue_page(connection, decision_id=first, group=group)
