"""The quarantine review: ends the quarantines whose time is up, and those whose Jira issue
is done (workers.jobs.review_quarantines, every `quarantine.review_interval` while any is
active).

A quarantine past its expiry already keeps nothing out (core/quarantine.py); the review
records its end. A quarantine whose rollback's Jira issue reached a status of the `done`
category is ended `issue_done`, by `jira`: the root cause was handled where the team
tracks it. Jira unreachable or refusing leaves the quarantine as it is until the next
review; nothing else is asked of it.
"""

import logging
from datetime import datetime

from config.chat import ChatPolicy
from config.quarantine import QuarantinePolicy
from core import queues
from core.errors import PermanentError, TransientError
from core.integrations.jira import Tickets
from core.store import Store

log = logging.getLogger("backstop.quarantine")


def review_quarantines(
    store: Store,
    tickets: Tickets | None,
    policy: QuarantinePolicy,
    now: datetime,
    chat: ChatPolicy | None = None,
) -> dict:
    """End what is due; how many ended, and why, and how many stay active. Each end is
    told to the chat targets that hear of `quarantine_released` (workers/chat.py)."""
    ended = {"expired": 0, "issue_done": 0}
    chat = ChatPolicy() if chat is None else chat
    for quarantine in store.quarantine.active():
        if now >= quarantine.expires_at:
            why = f"expired at {quarantine.expires_at.isoformat()}"
            _end(store, quarantine.id, "expired", "backstop", why, now, ended, chat)
            continue
        key = store.incidents.jira_of(quarantine.rollback_id)
        if not (key and tickets is not None and policy.release_when_done):
            continue
        try:
            category = tickets.status_category(issue_key=key)
        except (TransientError, PermanentError) as exc:
            log.warning("quarantine %s: Jira %s unread: %s", quarantine.id, key, exc)
            continue
        if category == "done":
            _end(store, quarantine.id, "issue_done", "jira", f"{key} is done", now, ended, chat)
    return {"ended": ended, "active": len(store.quarantine.active())}


def _end(store, quarantine_id, end, who, reason, now, ended: dict, chat: ChatPolicy) -> None:
    found, changed = store.quarantine.end(quarantine_id, end, by=who, reason=reason, at=now)
    if changed:
        ended[end] += 1
        fields = {"quarantine_id": quarantine_id, "end": end}
        log.info("quarantine ended: %s", reason, extra={"fields": fields})
        queues.notify_chat(
            store.redis, chat, rollback_id=found.rollback_id, event="quarantine_released"
        )
