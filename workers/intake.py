"""The intake pipeline the receiver calls: dedup and record, then decide what is new.

Everything here is source-agnostic: it sees only normalized AlertEvents.
"""

from dataclasses import dataclass, field
from datetime import datetime

from workers.decisions import Engine
from workers.models import AlertEvent
from workers.records import Decision
from workers.store import FIRST_RESOLVED, NEW_FIRING, UNDECIDED


@dataclass
class IntakeResult:
    """What became of one webhook's alerts."""

    accepted: int = 0
    duplicates: int = 0
    decisions: list[Decision] = field(default_factory=list)


def ingest(
    engine: Engine, events: list[AlertEvent], *, now: datetime | None = None
) -> IntakeResult:
    """Dedup and record a batch of events, then decide about each new episode."""
    verdicts = engine.store.episodes.record_notifications(events, now=now or engine.clock())
    result = IntakeResult()
    for event, verdict in zip(events, verdicts, strict=True):
        facts = {
            "episode_id": event.episode_id,
            "labels": event.labels,
            "starts_at": event.starts_at,
        }
        if verdict in (NEW_FIRING, UNDECIDED):
            result.decisions.append(engine.on_firing(**facts))
        elif verdict == FIRST_RESOLVED:
            result.decisions.append(engine.on_resolved(**facts))
        else:
            result.duplicates += 1
            continue
        result.accepted += 1
    return result
