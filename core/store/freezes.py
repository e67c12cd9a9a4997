"""Owners Backstop froze (FrozenOwner): the active ones, and the ended ones for a while."""

from collections.abc import Callable
from datetime import timedelta
from typing import cast

import redis

from core.records import FrozenOwner
from core.store import keys, records
from core.store.records import ms

RETENTION = timedelta(days=90)
MAX_FREEZES = 10_000


class FreezeStore:
    """Freezes in Redis: one record per owner object, and the set of those still active."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def save(self, freeze: FrozenOwner) -> None:
        """Write a freeze (new, joined by another rollback, or ended)."""
        pipe = self.redis.pipeline(transaction=True)
        self._write(pipe, freeze)
        pipe.execute()

    def _write(self, pipe: redis.client.Pipeline, freeze: FrozenOwner) -> None:
        records.save(
            self.redis,
            keys.FREEZE,
            keys.FREEZES,
            freeze.id,
            freeze,
            score_ms=ms(freeze.frozen_at),
            ttl=RETENTION,
            cap=MAX_FREEZES,
            pipe=pipe,
        )
        if freeze.active:
            pipe.sadd(keys.FREEZES_ACTIVE, freeze.id)
        else:
            pipe.srem(keys.FREEZES_ACTIVE, freeze.id)

    def change_active(
        self, freeze_id: str, change: Callable[[FrozenOwner], None]
    ) -> tuple[FrozenOwner | None, bool]:
        """Apply `change` to a freeze and save it, only while it is active: (the freeze as
        it now is, whether it was changed); (None, False) for an unknown id.

        Optimistic (WATCH): a human's lift request must never write back, as active, a
        freeze the review ended meanwhile; a concurrent write makes this read again."""
        return records.change_if(
            self.redis,
            keys.FREEZE + freeze_id,
            FrozenOwner,
            when=lambda freeze: freeze.active,
            change=change,
            write=self._write,
        )

    def get(self, freeze_id: str) -> FrozenOwner | None:
        """One freeze by id, or None."""
        return records.get(self.redis, keys.FREEZE, FrozenOwner, freeze_id)

    def active(self) -> list[FrozenOwner]:
        """Every freeze not yet ended, oldest first."""
        ids = sorted(cast(set[bytes], self.redis.smembers(keys.FREEZES_ACTIVE)))
        found = records.load(self.redis, keys.FREEZE, FrozenOwner, ids)
        return sorted((f for f in found if f.active), key=lambda f: f.frozen_at)

    def recent(self, *, limit: int = 50) -> list[FrozenOwner]:
        """Freezes, active or ended, newest first."""
        return records.newest(self.redis, keys.FREEZES, keys.FREEZE, FrozenOwner, limit=limit)

    def of_rollback(self, rollback_id: str) -> list[FrozenOwner]:
        """The active freezes a rollback made or joined."""
        return [f for f in self.active() if f.rollback_id == rollback_id]
