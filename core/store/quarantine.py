"""Quarantined revisions (core/records.py Quarantine): the active ones, the ended for a while."""

from datetime import datetime, timedelta
from typing import cast

import redis

from core.records import Quarantine, QuarantineEnd
from core.store import keys, records
from core.store.records import ms

RETENTION = timedelta(days=180)
MAX_QUARANTINES = 10_000


class QuarantineStore:
    """Quarantines in Redis: one record per rollback, and the set of those still active."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def add(self, quarantine: Quarantine) -> bool:
        """Record a new quarantine; False (nothing written) when its rollback already has
        one: a re-run of a finished rollback must not revive a released quarantine."""
        key = keys.QUARANTINE + quarantine.id
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    if pipe.exists(key):
                        return False
                    pipe.multi()
                    self._write(pipe, quarantine)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def _write(self, pipe: redis.client.Pipeline, quarantine: Quarantine) -> None:
        records.save(
            self.redis,
            keys.QUARANTINE,
            keys.QUARANTINES,
            quarantine.id,
            quarantine,
            score_ms=ms(quarantine.quarantined_at),
            ttl=RETENTION,
            cap=MAX_QUARANTINES,
            pipe=pipe,
        )
        if quarantine.active:
            pipe.sadd(keys.QUARANTINES_ACTIVE, quarantine.id)
        else:
            pipe.srem(keys.QUARANTINES_ACTIVE, quarantine.id)

    def end(
        self, quarantine_id: str, end: QuarantineEnd, *, by: str, reason: str, at: datetime
    ) -> tuple[Quarantine | None, bool]:
        """End an active quarantine (`released`, `expired`, `issue_done`) by whom, why and
        when: (the quarantine as it now is, whether this call ended it); (None, False) for
        an unknown id. Optimistic (WATCH), so two humans releasing at once record one
        release."""

        def change(quarantine: Quarantine) -> None:
            quarantine.end, quarantine.ended_by, quarantine.end_reason = end, by, reason
            quarantine.ended_at = at

        return records.change_if(
            self.redis,
            keys.QUARANTINE + quarantine_id,
            Quarantine,
            when=lambda quarantine: quarantine.active,
            change=change,
            write=self._write,
        )

    def get(self, quarantine_id: str) -> Quarantine | None:
        """One quarantine by id (its rollback's), or None."""
        return records.get(self.redis, keys.QUARANTINE, Quarantine, quarantine_id)

    def active(self) -> list[Quarantine]:
        """Every quarantine not yet ended (expired ones included until ended), oldest first."""
        ids = sorted(cast(set[bytes], self.redis.smembers(keys.QUARANTINES_ACTIVE)))
        found = records.load(self.redis, keys.QUARANTINE, Quarantine, ids)
        return sorted((q for q in found if q.active), key=lambda q: q.quarantined_at)

    def recent(self, *, limit: int = 50) -> list[Quarantine]:
        """Quarantines, active or ended, newest first."""
        return records.newest(
            self.redis, keys.QUARANTINES, keys.QUARANTINE, Quarantine, limit=limit
        )
