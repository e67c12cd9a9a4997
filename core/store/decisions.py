"""Decisions: one per processed alert episode (its id is the episode's), with history."""

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import cast

import redis

from core.records import Decision
from core.store import keys, records
from core.store.records import ms
from core.vocabulary import OUTCOMES

MAX_DECISIONS = 100_000
# The store may run this far over MAX_DECISIONS; then the excess goes in one batch. Evicting
# one decision per save at the cap cost every save a read, a parse and a dozen commands
# (P7: decisions 1.28x slower on a full store).
TRIM_SLACK = 200
# The newest decisions kept in each workload's index: pre-flight reads up to 1,000 of them
# to find the revisions an alert was blamed on.
MAX_PER_WORKLOAD = 2_000
BACKFILL_PAGE = 1_000


class DecisionStore:
    """Decisions in Redis, bounded in count (MAX_DECISIONS, at most TRIM_SLACK over)."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def save(self, decision: Decision) -> None:
        """Write a decision (new or updated) and its indexes."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.DECISION + decision.id, decision.model_dump_json())
        pipe.zadd(keys.DECISIONS, {decision.id: ms(decision.created_at)})
        # One index per outcome, so "awaiting approval" lists and 24-hour counts by outcome
        # never have to read every decision.
        for outcome in OUTCOMES:
            if outcome == decision.outcome:
                pipe.zadd(keys.decisions_with(outcome), {decision.id: ms(decision.created_at)})
            else:
                pipe.zrem(keys.decisions_with(outcome), decision.id)
        # And one per workload, so a workload's decisions (pre-flight's blamed revisions,
        # the API's filter) are read without reading everyone else's.
        self._index_about(pipe, [decision])
        pipe.zcard(keys.DECISIONS)
        stored = pipe.execute()[-1]
        if stored > MAX_DECISIONS + TRIM_SLACK:
            self._trim()

    @staticmethod
    def _index_about(pipe: redis.client.Pipeline, decisions: list[Decision]) -> int:
        """Add decisions that name a workload to its index, keeping the newest only;
        returns how many named one."""
        about: dict[str, dict[str, int]] = {}
        for decision in decisions:
            if decision.workload is not None:
                key = keys.decisions_about(decision.workload.workload().key)
                about.setdefault(key, {})[decision.id] = ms(decision.created_at)
        for key, members in about.items():
            pipe.zadd(key, members)
            pipe.zremrangebyrank(key, 0, -MAX_PER_WORKLOAD - 1)
        return sum(len(members) for members in about.values())

    def _trim(self) -> None:
        """Evict the oldest decisions beyond MAX_DECISIONS, with their index entries."""
        excess = self.redis.zcard(keys.DECISIONS) - MAX_DECISIONS
        if excess <= 0:
            return
        old = cast(list[bytes], self.redis.zrange(keys.DECISIONS, 0, excess - 1))
        # Read before they go: which workloads' indexes name them.
        about = {
            decision.workload.workload().key
            for decision in records.load(self.redis, keys.DECISION, Decision, old)
            if decision.workload is not None
        }
        old_ids = [i.decode() for i in old]
        pipe = self.redis.pipeline(transaction=False)
        for decision_id in old_ids:
            pipe.delete(keys.DECISION + decision_id)
        for outcome in OUTCOMES:
            pipe.zrem(keys.decisions_with(outcome), *old_ids)
        for workload_key in about:
            pipe.zrem(keys.decisions_about(workload_key), *old_ids)
        pipe.zrem(keys.DECISIONS, *old_ids)
        pipe.execute()

    def index_workloads(self) -> int:
        """Put every stored decision that names a workload in that workload's index, then
        mark the indexes complete; returns how many were indexed. Idempotent: this is the
        upgrade of a store written before the indexes existed, run on first use."""
        indexed = 0
        pages = records.scan_newest(
            self.redis, keys.DECISIONS, keys.DECISION, Decision, first_page=BACKFILL_PAGE
        )
        for page in pages:
            pipe = self.redis.pipeline(transaction=False)
            indexed += self._index_about(pipe, page)
            pipe.execute()
        self.redis.set(keys.DECISIONS_WORKLOAD_INDEXED, 1)
        return indexed

    def ensure_workload_index(self) -> int:
        """Build the per-workload indexes unless they are complete; how many were indexed.
        Workers call this at start, so no rollback's pre-flight pays for an upgrade."""
        if self.redis.exists(keys.DECISIONS_WORKLOAD_INDEXED):
            return 0
        return self.index_workloads()

    def _about(self, workload_key: str) -> str:
        """The index of one workload's decisions, built first if this store predates it."""
        self.ensure_workload_index()
        return keys.decisions_about(workload_key)

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
        keep: Callable[[Decision], bool] | None = None,
    ) -> list[Decision]:
        """Decisions, newest first, filtered by outcome, reason, workload key, and `keep`."""

        def wanted(decision: Decision) -> bool:
            return (
                (keep is None or keep(decision))
                and (outcome is None or decision.outcome == outcome)
                and (reason is None or decision.reason == reason)
                and (
                    workload is None
                    or (
                        decision.workload is not None
                        and decision.workload.workload().key == workload
                    )
                )
            )

        if workload is not None:
            index = self._about(workload)  # a superset of the workload's: `wanted` decides
        elif outcome is not None:
            index = keys.decisions_with(outcome)
        else:
            index = keys.DECISIONS
        return records.newest(self.redis, index, keys.DECISION, Decision, limit=limit, keep=wanted)

    def scan(
        self,
        *,
        outcome: str | None,
        first_page: int,
        scan: int,
        raw_filter: Callable[[bytes], bool] | None = None,
    ) -> Iterator[list[Decision]]:
        """Pages of decisions (of one outcome, or all), newest first, reading at most `scan`."""
        index = keys.DECISIONS if outcome is None else keys.decisions_with(outcome)
        return records.scan_newest(
            self.redis,
            index,
            keys.DECISION,
            Decision,
            first_page=first_page,
            scan=scan,
            raw_filter=raw_filter,
        )

    def get_many(self, decision_ids: list[str]) -> dict[str, Decision]:
        """The decisions with these ids that exist, by id."""
        found = records.load(
            self.redis, keys.DECISION, Decision, [i.encode() for i in decision_ids]
        )
        return {decision.id: decision for decision in found}

    def count_with(self, outcome: str) -> int:
        """How many decisions have `outcome` now (e.g. awaiting approval)."""
        return int(self.redis.zcard(keys.decisions_with(outcome)))

    def counts(self, *, since: datetime) -> dict[str, int]:
        """How many decisions made since `since` have each outcome now."""
        return records.count_since(
            self.redis, {o: keys.decisions_with(o) for o in OUTCOMES}, since_ms=ms(since)
        )
