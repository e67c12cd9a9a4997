"""The intake pipeline the receiver calls: dedup and record, then hand on what is new.

Everything here is source-agnostic: it sees only normalized AlertEvents.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from workers.models import AlertEvent
from workers.store import DUPLICATE, FIRST_RESOLVED, NEW_FIRING, Store


@dataclass
class IntakeResult:
    """What became of one webhook's alerts."""

    accepted: int = 0
    duplicates: int = 0
    firing: list[AlertEvent] = field(default_factory=list)
    resolved: list[AlertEvent] = field(default_factory=list)


def ingest(store: Store, events: list[AlertEvent], *, now: datetime | None = None) -> IntakeResult:
    """Dedup and record a batch of events; return the counts and the events to act on."""
    verdicts = store.record_notifications(events, now=now or datetime.now(UTC))
    result = IntakeResult()
    for event, verdict in zip(events, verdicts, strict=True):
        if verdict == DUPLICATE:
            result.duplicates += 1
            continue
        result.accepted += 1
        if verdict == NEW_FIRING:
            result.firing.append(event)
        elif verdict == FIRST_RESOLVED:
            result.resolved.append(event)
    return result
