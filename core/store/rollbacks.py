"""Rollback records, their evidence, and the per-workload lock that serializes rollbacks."""

import json
from datetime import datetime, timedelta
from typing import cast

import redis

from core.records import Rollback
from core.store import keys, records
from core.store.records import ms
from core.vocabulary import ROLLBACK_STATUSES

RETENTION = timedelta(days=30)
# Rollbacks kept, each with its evidence (about 75 KB together, bench/store.py): 5,000 keep
# a default install's Redis within 1 GiB at every cap. The oldest beyond it are deleted,
# record and evidence, not left to their TTL.
MAX_ROLLBACKS = 5_000

# Take the lock when free, or from an earlier attempt of the same rollback: RQ runs one job id
# at most once at a time, so that attempt is over (its worker died). Never from another.
_LOCK = (
    "local held = redis.call('GET', KEYS[1]) "
    "if held and string.sub(held, 1, string.len(ARGV[2])) ~= ARGV[2] then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) return 1"
)
# Release or extend the lock only while we still hold it (our token), never another's.
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
_EXTEND = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)


class RollbackStore:
    """Rollbacks in Redis, bounded in count and age."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._lock = client.register_script(_LOCK)
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)

    def save(self, rollback: Rollback) -> None:
        """Write a rollback record (new or updated) and its indexes, in one transaction:
        a rollback saves itself after every step, several times before its PATCH."""
        created = ms(rollback.created_at)
        pipe = self.redis.pipeline(transaction=True)
        records.save(
            self.redis,
            keys.ROLLBACK,
            keys.ROLLBACKS,
            rollback.id,
            rollback,
            score_ms=created,
            ttl=RETENTION,
            # One over the cap: the index keeps the id `_evict` needs to delete the record.
            cap=MAX_ROLLBACKS + 1,
            pipe=pipe,
        )
        # One index per status, for counts and lists by status without reading every record.
        for status in ROLLBACK_STATUSES:
            if status == rollback.status:
                pipe.zadd(keys.rollbacks_with(status), {rollback.id: created})
                oldest = created - int(RETENTION.total_seconds() * 1000)
                pipe.zremrangebyscore(keys.rollbacks_with(status), "-inf", oldest)
            else:
                pipe.zrem(keys.rollbacks_with(status), rollback.id)
        pipe.zcard(keys.ROLLBACKS)
        if pipe.execute()[-1] > MAX_ROLLBACKS:
            self._evict()

    def _evict(self) -> None:
        """Delete the oldest rollbacks beyond MAX_ROLLBACKS: records, evidence, index entries."""
        excess = self.redis.zcard(keys.ROLLBACKS) - MAX_ROLLBACKS
        if excess <= 0:
            return
        ids = cast(list[bytes], self.redis.zrange(keys.ROLLBACKS, 0, excess - 1))
        old = [i.decode() for i in ids]
        pipe = self.redis.pipeline(transaction=False)
        for rollback_id in old:
            pipe.delete(keys.ROLLBACK + rollback_id, keys.EVIDENCE + rollback_id)
        for status in ROLLBACK_STATUSES:
            pipe.zrem(keys.rollbacks_with(status), *old)
        pipe.zrem(keys.ROLLBACKS, *old)
        pipe.execute()

    def get(self, rollback_id: str) -> Rollback | None:
        """One rollback by id."""
        return records.get(self.redis, keys.ROLLBACK, Rollback, rollback_id)

    def recent(self, *, status: str | None = None, limit: int = 50) -> list[Rollback]:
        """Rollbacks, newest first, optionally with one status."""
        return records.newest(
            self.redis,
            keys.ROLLBACKS if status is None else keys.rollbacks_with(status),
            keys.ROLLBACK,
            Rollback,
            limit=limit,
            # The status index can lag a record that changed since; the record is the truth.
            keep=lambda r: status is None or r.status == status,
        )

    def counts(self, *, since: datetime) -> dict[str, int]:
        """How many rollbacks started since `since` have each status now."""
        return records.count_since(
            self.redis, {s: keys.rollbacks_with(s) for s in ROLLBACK_STATUSES}, since_ms=ms(since)
        )

    def save_evidence(self, rollback_id: str, evidence: dict) -> None:
        """Keep what was captured from the bad pods (bounded by the capture itself)."""
        self.redis.set(keys.EVIDENCE + rollback_id, json.dumps(evidence), ex=RETENTION)

    def evidence(self, rollback_id: str) -> dict | None:
        """The evidence captured for a rollback."""
        raw = self.redis.get(keys.EVIDENCE + rollback_id)
        return json.loads(raw) if raw else None

    # -- the workload lock -----------------------------------------------------------------

    def lock(self, workload_key: str, owner: str, token: str, ttl: timedelta) -> bool:
        """Take the workload's rollback lock for `owner` (a rollback id); False when another
        rollback holds it. `token` (which must start with `owner`) identifies this attempt."""
        return bool(
            self._lock(
                keys=[keys.LOCK + workload_key],
                args=[token, owner, int(ttl.total_seconds() * 1000)],
            )
        )

    def extend(self, workload_key: str, token: str, ttl: timedelta) -> bool:
        """Keep holding the lock; False when it expired and was lost."""
        return bool(
            self._extend(
                keys=[keys.LOCK + workload_key], args=[token, int(ttl.total_seconds() * 1000)]
            )
        )

    def unlock(self, workload_key: str, token: str) -> None:
        """Release the lock if it is still ours."""
        self._release(keys=[keys.LOCK + workload_key], args=[token])
