"""Deployment history: rollouts per workload, from the watcher and from CI, merged.

A rollout is identified by (workload, revision) once the revision is known. A CI event
without a revision joins the rollout that started closest to it within the merge window,
or stands alone until the watcher sees the revision and adopts it. Writes use optimistic
transactions on the workload's keys, so the watcher and several receivers can record the
same rollout concurrently without duplicating it.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import redis

from core.models import Workload
from core.records import Rollout, WorkloadRecord
from core.store import keys, records
from core.store.records import ms

PER_WORKLOAD = 50  # rollouts kept per workload
EVERY_WORKLOAD = 20_000  # rollouts kept in the global index
RETENTION = timedelta(days=90)  # history of a workload not deployed for this long expires
# What only CI reports about a rollout: kept when the watcher's record and CI's merge.
CI_FIELDS = (
    "version",
    "commit",
    "previous_commit",
    "repository",
    "pipeline_url",
    "author",
    "url",
)


@dataclass(frozen=True)
class Recorded:
    """What the store holds of one workload's revision (see RolloutStore.recorded)."""

    stored: bool  # a rollout of this revision is recorded
    completed: bool  # ... and its completion too
    rollback_expected: bool  # Backstop announced a rollback of the workload (expect_rollback)


class RolloutStore:
    """Rollouts in Redis."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    # -- reading ---------------------------------------------------------------------------

    def heartbeat(self, now: datetime) -> None:
        """The watcher is alive (it expires, so a dead watcher's last sign fades)."""
        self.redis.set(keys.WATCHER_HEARTBEAT, int(now.timestamp() * 1000), ex=3600)

    def last_heartbeat(self) -> datetime | None:
        """When the watcher last said it was alive, within the last hour."""
        raw = self.redis.get(keys.WATCHER_HEARTBEAT)
        return datetime.fromtimestamp(int(raw) / 1000, UTC) if raw else None

    def get(self, rollout_id: str) -> Rollout | None:
        """One rollout by id."""
        return records.get(self.redis, keys.ROLLOUT, Rollout, rollout_id)

    def by_revision(self, workload: Workload, revision: str) -> Rollout | None:
        """The rollout of `workload` at `revision`."""
        rollout_id = self._rollout_id(self.redis, workload, revision)
        return self.get(rollout_id) if rollout_id else None

    def for_workload(self, workload: Workload, *, limit: int = PER_WORKLOAD) -> list[Rollout]:
        """A workload's rollouts, newest first."""
        ids = cast(
            list[bytes], self.redis.zrevrange(keys.workload_rollouts(workload.key), 0, limit - 1)
        )
        return records.load(self.redis, keys.ROLLOUT, Rollout, ids)

    def recent(
        self, *, namespace: str | None = None, name: str | None = None, limit: int = 50
    ) -> list[Rollout]:
        """Rollouts of every workload, newest first, optionally filtered."""

        def keep(rollout: Rollout) -> bool:
            workload = rollout.workload
            return (namespace is None or workload.namespace == namespace) and (
                name is None or workload.name == name
            )

        return records.newest(
            self.redis, keys.ROLLOUTS, keys.ROLLOUT, Rollout, limit=limit, keep=keep
        )

    def recorded(self, revisions: list[tuple[Workload, str]]) -> list[Recorded]:
        """What is stored of each (workload, revision), in order: two pipelined round trips
        for a whole page of workloads, so a relist of a known cluster reads Redis in bulk
        rather than one transaction per object."""
        pipe = self.redis.pipeline(transaction=False)
        for workload, revision in revisions:
            pipe.hget(keys.workload_revisions(workload.key), revision)
            pipe.exists(keys.EXPECTED_ROLLBACK + workload.key)
        found = pipe.execute()
        ids, expected = found[0::2], found[1::2]
        pipe = self.redis.pipeline(transaction=False)
        for rollout_id in ids:
            if rollout_id:
                pipe.get(keys.ROLLOUT + rollout_id.decode())
        bodies = iter(pipe.execute())
        answers = []
        for rollout_id, waiting in zip(ids, expected, strict=True):
            body = next(bodies) if rollout_id else None
            stored = Rollout.model_validate_json(body) if body else None
            answers.append(
                Recorded(
                    stored=stored is not None,
                    completed=stored is not None and stored.completed_at is not None,
                    rollback_expected=bool(waiting),
                )
            )
        return answers

    # -- writing ---------------------------------------------------------------------------

    def record_observed(self, rollout: Rollout, *, merge_window: timedelta) -> tuple[Rollout, bool]:
        """Record a rollout the watcher saw; idempotent. Returns (stored, created)."""
        assert rollout.revision is not None
        revision = rollout.revision
        workload = rollout.workload.workload()

        def apply(pipe: redis.client.Pipeline) -> tuple[Rollout, bool]:
            existing_id = self._rollout_id(pipe, workload, revision)
            if existing_id:
                stored = self._get_in(pipe, existing_id)
                if stored is not None and (stored.by_backstop or not rollout.by_backstop):
                    return stored, False
                if stored is not None:  # learnt later that Backstop made it: say so
                    marked = stored.model_copy(
                        update={"by_backstop": True, "rollback_of": rollout.rollback_of}
                    )
                    pipe.multi()
                    self._write(pipe, marked, [])
                    return marked, False
            orphan = self._ci_orphan_near(pipe, workload, rollout.started_at, merge_window)
            merged = rollout
            if orphan is not None:
                merged = rollout.model_copy(
                    update={
                        "id": orphan.id,
                        "sources": sorted({*orphan.sources, *rollout.sources}),
                        **{name: getattr(orphan, name) for name in CI_FIELDS},
                        "images": rollout.images or orphan.images,
                    }
                )
            evict = self._evictions(pipe, workload) if orphan is None else []
            pipe.multi()
            self._write(pipe, merged, evict)
            return merged, orphan is None

        return self._transaction(workload, apply)

    def record_ci(self, rollout: Rollout, *, merge_window: timedelta) -> Rollout:
        """Record a CI/CD deployment event, merged into the matching rollout if any."""
        workload = rollout.workload.workload()

        def apply(pipe: redis.client.Pipeline) -> Rollout:
            target = None
            if rollout.revision is not None:
                existing_id = self._rollout_id(pipe, workload, rollout.revision)
                target = self._get_in(pipe, existing_id) if existing_id else None
            else:
                target = self._nearest(pipe, workload, rollout.started_at, merge_window)
            if target is None:
                merged = rollout
            else:
                ci_fields = {
                    name: getattr(rollout, name) for name in CI_FIELDS if getattr(rollout, name)
                }
                merged = target.model_copy(
                    update={
                        **ci_fields,
                        "sources": sorted({*target.sources, *rollout.sources}),
                        "images": target.images or rollout.images,
                    }
                )
            evict = self._evictions(pipe, workload) if target is None else []
            pipe.multi()
            self._write(pipe, merged, evict)
            return merged

        return self._transaction(workload, apply)

    def mark_completed(self, workload: Workload, revision: str, at: datetime) -> bool:
        """Set a rollout's completion time once; True when this call set it."""

        def apply(pipe: redis.client.Pipeline) -> bool:
            existing_id = self._rollout_id(pipe, workload, revision)
            stored = self._get_in(pipe, existing_id) if existing_id else None
            if stored is None or stored.completed_at is not None:
                return False
            pipe.multi()
            self._write(pipe, stored.model_copy(update={"completed_at": at}), [])
            return True

        return self._transaction(workload, apply)

    def expect_rollback(
        self,
        workload: Workload,
        *,
        template_hash: str,
        bad_revision: str,
        decision_id: str,
        ttl: timedelta = timedelta(hours=1),
    ) -> None:
        """Say, before patching, which template Backstop is about to restore, so the
        revision it creates is recorded as Backstop's own."""
        key = keys.EXPECTED_ROLLBACK + workload.key
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(
            key,
            mapping={
                "template_hash": template_hash,
                "bad_revision": bad_revision,
                "decision_id": decision_id,
            },
        )
        pipe.expire(key, ttl)
        pipe.execute()

    def expected_rollback(self, workload: Workload) -> dict[str, str] | None:
        """What Backstop said it is restoring for `workload`, if anything."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(keys.EXPECTED_ROLLBACK + workload.key))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    # -- internals -------------------------------------------------------------------------

    def _transaction(self, workload: Workload, apply):
        watched = (keys.workload_revisions(workload.key), keys.workload_rollouts(workload.key))
        return self.redis.transaction(apply, *watched, value_from_callable=True)

    @staticmethod
    def _rollout_id(client: redis.Redis, workload: Workload, revision: str) -> str | None:
        """The id of `workload`'s rollout at `revision`, if one is recorded."""
        rollout_id = cast(
            bytes | None, client.hget(keys.workload_revisions(workload.key), revision)
        )
        return rollout_id.decode() if rollout_id else None

    @staticmethod
    def _get_in(pipe: redis.client.Pipeline, rollout_id: str) -> Rollout | None:
        raw = pipe.get(keys.ROLLOUT + rollout_id)
        return Rollout.model_validate_json(raw) if raw else None

    def _near(self, pipe, workload: Workload, at: datetime, window: timedelta) -> list[Rollout]:
        """Rollouts of `workload` that started within `window` of `at`, closest first."""
        low, high = ms(at - window), ms(at + window)
        ids = pipe.zrangebyscore(keys.workload_rollouts(workload.key), low, high)
        found = [r for r in (self._get_in(pipe, i.decode()) for i in ids) if r is not None]
        return sorted(found, key=lambda r: abs((r.started_at - at).total_seconds()))

    def _nearest(self, pipe, workload: Workload, at: datetime, window: timedelta):
        near = self._near(pipe, workload, at, window)
        return near[0] if near else None

    def _ci_orphan_near(self, pipe, workload: Workload, at: datetime, window: timedelta):
        orphans = [r for r in self._near(pipe, workload, at, window) if r.revision is None]
        return orphans[0] if orphans else None

    def _evictions(self, pipe, workload: Workload) -> list[Rollout]:
        """The oldest rollouts to drop so that one more fits within PER_WORKLOAD."""
        ids = pipe.zrange(keys.workload_rollouts(workload.key), 0, -PER_WORKLOAD)
        return [r for r in (self._get_in(pipe, i.decode()) for i in ids) if r is not None]

    def _write(self, pipe: redis.client.Pipeline, rollout: Rollout, evict: list[Rollout]) -> None:
        """Queue the writes for `rollout` on a MULTI pipeline, history bounded."""
        key = rollout.workload.workload().key
        by_start, revisions = keys.workload_rollouts(key), keys.workload_revisions(key)
        started = ms(rollout.started_at)
        pipe.set(keys.ROLLOUT + rollout.id, rollout.model_dump_json(), ex=RETENTION)
        pipe.zadd(by_start, {rollout.id: started})
        pipe.zadd(keys.ROLLOUTS, {rollout.id: started})
        if rollout.revision is not None:
            pipe.hset(revisions, rollout.revision, rollout.id)
        for old in evict:
            pipe.delete(keys.ROLLOUT + old.id)
            pipe.zrem(by_start, old.id)
            pipe.zrem(keys.ROLLOUTS, old.id)
            if old.revision is not None:
                pipe.hdel(revisions, old.revision)
        pipe.expire(by_start, RETENTION)
        pipe.expire(revisions, RETENTION)
        pipe.zremrangebyrank(keys.ROLLOUTS, 0, -EVERY_WORKLOAD - 1)


def rollout_for(workload: Workload, **fields) -> Rollout:
    """Build a Rollout of `workload`."""
    return Rollout(workload=WorkloadRecord.of(workload), **fields)
