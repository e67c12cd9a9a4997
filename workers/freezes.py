"""The freeze review: ends each active freeze whose time has come, and thaws its owner.

A freeze (core/records.py FrozenOwner) keeps an owner (Argo CD, Flux, Helm) from putting a
rolled-back version back (docs/owners.md). The review ends it, in this order of precedence:

- `lifted`: a human asked for it (API or dashboard); ended by them, with their reason;
- `expired`: its `expires_at` passed (the policy's `owners.freeze_ttl`);
- `moved_past`: the hand that froze it says the owner's source moved past the bad
  revision (`Hand.moved_past`), with the hand's sentence as the reason.

Ending thaws the owner first (`Hand.thaw`, idempotent). A thaw that fails transiently
leaves the freeze active, to be tried again at the next review; one that fails for good
(the owner object was deleted, say) ends it all the same, the error in its `end_reason`:
nothing left to thaw, or nothing a retry would fix, and a human reads why in the audit log.
Each end is audited. One freeze failing in any way never stops the review of the others.

The review runs as the RQ job `workers.jobs.review_freezes`, which schedules itself again
on its interval while any freeze is active (see `next_review`). The hands are looked up
through a callable, so this module knows nothing of which hand thaws what.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.errors import PermanentError, TransientError
from core.records import AuditEntry, FreezeEnd, FrozenOwner, utcnow
from core.store import Store
from workers.owners import Hand

log = logging.getLogger("backstop.freezes")

HandFor = Callable[[FrozenOwner], Hand]
OUTCOMES = ("lifted", "expired", "moved_past", "kept", "retrying", "failed")
# The audit action of each way a freeze ends.
ACTIONS = {"lifted": "lift_freeze", "expired": "freeze_expired", "moved_past": "freeze_moved_past"}


@dataclass(frozen=True)
class Ending:
    """Why and by whom a freeze is to end."""

    end: FreezeEnd
    actor: str
    reason: str


def due_ending(freeze: FrozenOwner, now: datetime) -> Ending | None:
    """The end a freeze is due without asking its owner: a human's lift, or its expiry."""
    if freeze.lift_requested_by:
        return Ending("lifted", freeze.lift_requested_by, freeze.lift_reason)
    if now >= freeze.expires_at:
        return Ending("expired", "backstop", f"expired at {freeze.expires_at.isoformat()}")
    return None


def review_freezes(
    store: Store, hand_for: HandFor, *, clock: Callable[[], datetime] = utcnow
) -> dict:
    """Review every active freeze once; a summary: how many ended each way, how many are
    kept, retrying (a transient thaw error) or failed (an unexpected error), and how many
    remain active."""
    summary = dict.fromkeys(("reviewed", *OUTCOMES), 0)
    for freeze in store.freezes.active():
        summary["reviewed"] += 1
        try:
            outcome = review_one(store, hand_for, freeze, now=clock())
        except Exception:  # one bad freeze never stops the review of the others
            log.exception("freeze %s not reviewed", freeze.id)
            outcome = "failed"
        summary[outcome] += 1
    summary["active"] = len(store.freezes.active())
    return summary


def review_one(store: Store, hand_for: HandFor, freeze: FrozenOwner, *, now: datetime) -> str:
    """Review one freeze: end it (thawing its owner) when it is due; its outcome."""
    ending = due_ending(freeze, now)
    hand: Hand | None = None
    if ending is None:
        hand = hand_for(freeze)
        try:
            sentence = hand.moved_past(freeze)
        except (TransientError, PermanentError) as exc:
            # Not knowing is no reason to thaw: the freeze holds until it expires.
            log.warning("freeze %s: could not tell whether its source moved: %s", freeze.id, exc)
            return "kept"
        if not sentence:
            return "kept"
        ending = Ending("moved_past", "backstop", sentence)
    thaw_error = ""
    try:
        (hand or hand_for(freeze)).thaw(freeze)
    except TransientError as exc:
        log.warning("freeze %s: thaw failed, retried at the next review: %s", freeze.id, exc)
        return "retrying"
    except PermanentError as exc:
        thaw_error = f"{type(exc).__name__}: {exc}"
        log.warning("freeze %s: thaw failed for good, ending it: %s", freeze.id, thaw_error)
    return end_freeze(store, freeze, ending, now=now, thaw_error=thaw_error)


def end_freeze(
    store: Store, freeze: FrozenOwner, ending: Ending, *, now: datetime, thaw_error: str = ""
) -> str:
    """Record a freeze's end and audit it; "kept" when it had ended meanwhile (nothing is
    written twice)."""
    reason = ending.reason
    if thaw_error:
        reason = f"{reason} (thaw failed: {thaw_error})" if reason else f"thaw failed: {thaw_error}"

    def end(current: FrozenOwner) -> None:
        current.end, current.ended_at = ending.end, now
        current.ended_by, current.end_reason = ending.actor, reason

    ended, changed = store.freezes.change_active(freeze.id, end)
    if not changed or ended is None:
        return "kept"
    store.automation.audit(
        AuditEntry(
            at=now,
            actor=ending.actor,
            action=ACTIONS[ending.end],
            target=freeze.id,
            reason=reason,
            details={
                "owner": ended.describe(),
                "workload": ended.workload.workload().key,
                "rollback_id": ended.rollback_id,
                **({"thaw_error": thaw_error} if thaw_error else {}),
            },
        )
    )
    log.info("freeze %s ended (%s): %s", freeze.id, ending.end, reason)
    return ending.end


def next_review(now: datetime, interval: timedelta) -> datetime:
    """When the next review is due (of freezes, or of quarantines: workers/quarantines.py):
    the next multiple of `interval` (whole seconds, at least one) since the epoch. Every
    review running within one interval picks the same time, hence the same job id, so
    several chains of reviews (one per rollback that froze something, one per lift) merge
    into one instead of running side by side forever."""
    step = max(1, int(interval.total_seconds()))
    return datetime.fromtimestamp((int(now.timestamp()) // step + 1) * step, UTC)
