"""Decisions: one per processed alert episode (its id is the episode's), with history."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import msgspec
import redis

from core.models import Workload
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
# Decisions saved `later` inside `batched()`, not written yet: per thread (a receiver
# worker's threads each decide their own webhook), None outside a batch.
_PENDING: ContextVar[list["_Row"] | None] = ContextVar("backstop_decisions", default=None)


class DecisionStore:
    """Decisions in Redis, bounded in count (MAX_DECISIONS, at most TRIM_SLACK over)."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def save(self, decision: Decision, *, later: bool = False) -> None:
        """Write a decision (new or updated) and its indexes. `later`, inside `batched()`:
        with the batch's other decisions, in one transaction when the batch ends."""
        pending = _PENDING.get()
        if later and pending is not None:
            pending.append(_Row.of(decision))  # as it is now, whatever happens to it next
            return
        self._write([_Row.of(decision)])

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Hold the decisions saved `later` in this block (this thread's) and write them
        together when it ends: a webhook of ten new alerts then costs one round trip and a
        dozen commands for its decisions, not ten transactions of thirteen (P1-fresh).
        Reads of a decision (`get`, `get_many`) write what is held first. A block left by
        an exception writes nothing: what its caller decided was not recorded, and an
        episode accepted but never decided is decided again (core/store/ingest.lua)."""
        if _PENDING.get() is not None:  # nested: the outer block writes
            yield
            return
        token = _PENDING.set([])
        try:
            yield
            self._write_pending()
        finally:
            _PENDING.reset(token)

    def _write_pending(self) -> None:
        pending = _PENDING.get()
        if pending:
            held = list(pending)
            pending.clear()
            self._write(held)

    def _write(self, rows: list["_Row"]) -> None:
        """Write decisions and their indexes in one transaction; trim past the cap."""
        latest = {row.id: row for row in rows}  # a decision saved twice: its last save
        pipe = self.redis.pipeline(transaction=True)
        pipe.mset({keys.DECISION + i: row.json for i, row in latest.items()})
        pipe.zadd(keys.DECISIONS, {i: row.created for i, row in latest.items()})
        # One index per outcome, so "awaiting approval" lists and 24-hour counts by outcome
        # never have to read every decision.
        for outcome in OUTCOMES:
            mine = {i: row.created for i, row in latest.items() if row.outcome == outcome}
            others = [i for i, row in latest.items() if row.outcome != outcome]
            if mine:
                pipe.zadd(keys.decisions_with(outcome), mine)
            if others:
                pipe.zrem(keys.decisions_with(outcome), *others)
        # And one per workload, so a workload's decisions (pre-flight's blamed revisions,
        # the API's filter) are read without reading everyone else's.
        self._index_about(pipe, [(i, row.created, row.about) for i, row in latest.items()])
        pipe.zcard(keys.DECISIONS)
        stored = pipe.execute()[-1]
        if stored > MAX_DECISIONS + TRIM_SLACK:
            self._trim()

    @staticmethod
    def _index_about(
        pipe: redis.client.Pipeline, decisions: list[tuple[str, int, str | None]]
    ) -> int:
        """Add decisions (id, created ms, workload key) that name a workload to its index,
        keeping the newest only; returns how many named one."""
        about: dict[str, dict[str, int]] = {}
        for decision_id, created, workload_key in decisions:
            if workload_key is not None:
                about.setdefault(keys.decisions_about(workload_key), {})[decision_id] = created
        for key, members in about.items():
            pipe.zadd(key, members)
            pipe.zremrangebyrank(key, 0, -MAX_PER_WORKLOAD - 1)
        return sum(len(members) for members in about.values())

    def _trim(self) -> None:
        """Evict the oldest decisions beyond MAX_DECISIONS, with their index entries."""
        excess = self.redis.zcard(keys.DECISIONS) - MAX_DECISIONS
        if excess <= 0:
            return
        old_ids = [
            i.decode() for i in cast(list[bytes], self.redis.zrange(keys.DECISIONS, 0, excess - 1))
        ]
        # Read before they go: which workloads' indexes name them. Only that field is
        # decoded: validating each whole decision cost a full store's every twentieth
        # webhook of new alerts 200 parses (P1-fresh).
        raws = cast(list[bytes | None], self.redis.mget([keys.DECISION + i for i in old_ids]))
        about = {key for key in map(_named_workload, raws) if key is not None}
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
            entries = [(d.id, ms(d.created_at), _workload_key(d)) for d in page]
            indexed += self._index_about(pipe, entries)
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
        self._write_pending()
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
        self._write_pending()
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


@dataclass(frozen=True)
class _Row:
    """A decision as written: its JSON and what its indexes need."""

    id: str
    json: str
    created: int  # ms
    outcome: str
    about: str | None  # the workload's key, when it names one

    @classmethod
    def of(cls, decision: Decision) -> "_Row":
        return cls(
            decision.id,
            decision.model_dump_json(),
            ms(decision.created_at),
            decision.outcome,
            _workload_key(decision),
        )


def _workload_key(decision: Decision) -> str | None:
    return None if decision.workload is None else decision.workload.workload().key


class _WorkloadName(msgspec.Struct):
    cluster: str
    namespace: str
    kind: str
    name: str


class _Named(msgspec.Struct):
    """The one field of a stored decision that eviction needs (the rest is skipped)."""

    workload: _WorkloadName | None = None


_NAMED = msgspec.json.Decoder(_Named)


def _named_workload(raw: bytes | None) -> str | None:
    """The key of the workload a stored decision names, if it names one and reads."""
    if not raw:
        return None
    try:
        workload = _NAMED.decode(raw).workload
    except msgspec.MsgspecError:  # not a decision as written here: no index to clean
        return None
    if workload is None:
        return None
    return Workload(workload.cluster, workload.namespace, workload.kind, workload.name).key
