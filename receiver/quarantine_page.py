"""What the dashboard's quarantine page lists: the quarantines in force, newest first, then
those that ended or ran out lately, each with its Jira issue.

The page only reads. Its release form posts to the API's audited release
(receiver/quarantine.py), with the session's CSRF token, as every dashboard button does.
"""

from core import quarantine as rules
from core.records import Quarantine, utcnow
from receiver import owners
from receiver.state import AppState

MAX_IN_FORCE = 500  # in force at once is rare; the page still stops somewhere


def listing(state: AppState, limit: int) -> dict:
    """The page's context: `in_force`, `ended` (at most `limit`), each one's `status`
    (active, expired, or how it ended) and `jira` (key, URL) by rollback id."""
    store, now = state.store, utcnow()
    in_force = sorted(
        (q for q in store.quarantine.active() if rules.in_force(q, now)),
        key=lambda q: q.quarantined_at,
        reverse=True,
    )[:MAX_IN_FORCE]
    # Expired ones stay "active" in Redis until the review records their end: they keep
    # nothing out, so they are listed with the ended ones, not offered for release.
    ended = [q for q in store.quarantine.recent(limit=limit * 2) if not rules.in_force(q, now)]
    ended = ended[:limit]
    return {
        "in_force": in_force,
        "ended": ended,
        "status": {q.id: rules.status(q, now) for q in in_force + ended},
        "jira": _jira(state, in_force + ended),
    }


def _jira(state: AppState, quarantines: list[Quarantine]) -> dict[str, tuple]:
    """(key, URL on the configured Jira) of each quarantine's rollback, one read each."""
    found: dict[str, tuple] = {}
    for quarantine in quarantines:
        if quarantine.rollback_id not in found:
            key = owners.jira_key(state.store, quarantine.rollback_id)
            found[quarantine.rollback_id] = (key, owners.jira_url(state.settings.jira_url, key))
    return found
