"""Decisions: one per processed alert episode (its id is the episode's), with history."""

from datetime import datetime

import redis

from workers.records import Decision
from workers.store import keys, records

MAX_DECISIONS = 100_000


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class DecisionStore:
    """Decisions in Redis, bounded in count."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def save(self, decision: Decision) -> None:
        """Write a decision (new or updated) and its indexes."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.DECISION + decision.id, decision.model_dump_json())
        pipe.zadd(keys.DECISIONS, {decision.id: _ms(decision.created_at)})
        if decision.outcome == "awaiting_approval":
            pipe.zadd(keys.AWAITING, {decision.id: _ms(decision.created_at)})
        else:
            pipe.zrem(keys.AWAITING, decision.id)
        pipe.execute()
        self._trim()

    def _trim(self) -> None:
        excess = self.redis.zcard(keys.DECISIONS) - MAX_DECISIONS
        if excess <= 0:
            return
        old = [i.decode() for i in self.redis.zrange(keys.DECISIONS, 0, excess - 1)]
        pipe = self.redis.pipeline(transaction=False)
        for decision_id in old:
            pipe.delete(keys.DECISION + decision_id)
            pipe.zrem(keys.AWAITING, decision_id)
        pipe.zrem(keys.DECISIONS, *old)
        pipe.execute()

    def get(self, decision_id: str) -> Decision | None:
        """One decision by id."""
        return records.get(self.redis, keys.DECISION, Decision, decision_id)

    def recent(
        self,
        *,
        outcome: str | None = None,
        reason: str | None = None,
        workload: str | None = None,
        limit: int = 50,
    ) -> list[Decision]:
        """Decisions, newest first, optionally filtered by outcome, reason, workload key."""

        def keep(decision: Decision) -> bool:
            return (
                (outcome is None or decision.outcome == outcome)
                and (reason is None or decision.reason == reason)
                and (
                    workload is None
                    or (
                        decision.workload is not None
                        and decision.workload.workload().key == workload
                    )
                )
            )

        index = keys.AWAITING if outcome == "awaiting_approval" else keys.DECISIONS
        return records.newest(self.redis, index, keys.DECISION, Decision, limit=limit, keep=keep)
