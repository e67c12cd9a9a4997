"""Metric snapshots (PNG and CSV) for incident tickets and pages, bounded in size and age."""

from datetime import timedelta
from typing import cast

import redis

from core.snapshots import MAX_BYTES, Snapshot
from core.store import keys

RETENTION = timedelta(days=30)


class SnapshotStore:
    """Snapshots in Redis: one hash each, which expires as a whole."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def save(self, snapshot: Snapshot, ttl: timedelta = RETENTION) -> None:
        """Keep a snapshot for `ttl`; ValueError when it is over MAX_BYTES (2 MiB)."""
        if snapshot.size > MAX_BYTES:
            raise ValueError(f"snapshot {snapshot.id} is {snapshot.size} bytes, over {MAX_BYTES}")
        key = keys.SNAPSHOT + snapshot.id
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "png": snapshot.png,
                "csv": snapshot.csv,
                "name": snapshot.name,
                "expr": snapshot.expr,
                "points": snapshot.points,
                "error": snapshot.error,
            },
        )
        pipe.expire(key, ttl)
        pipe.execute()

    def png(self, snapshot_id: str) -> bytes | None:
        """The graph of a snapshot."""
        return cast(bytes | None, self.redis.hget(keys.SNAPSHOT + snapshot_id, "png"))

    def csv(self, snapshot_id: str) -> bytes | None:
        """The raw points of a snapshot."""
        return cast(bytes | None, self.redis.hget(keys.SNAPSHOT + snapshot_id, "csv"))

    def meta(self, snapshot_id: str) -> dict | None:
        """A snapshot's name, expr, points and error."""
        fields = ("name", "expr", "points", "error")
        values = self.redis.hmget(keys.SNAPSHOT + snapshot_id, fields)
        if values[0] is None:
            return None
        # Written and expiring as a whole: with its first field there, every field is.
        meta: dict[str, str | int] = {
            field: cast(bytes, value).decode() for field, value in zip(fields, values, strict=True)
        }
        meta["points"] = int(meta["points"])
        return meta
