"""Page groups: the decisions one PagerDuty page covers (core/paging.py decides which)."""

from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import cast

import redis

from core.store import keys


@dataclass(frozen=True)
class PageGroup:
    """The decisions counted into one page so far."""

    group: str
    first: str
    last: str
    count: int


class PageStore:
    """Page groups in Redis, each expiring a day after its window."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        script = resources.files("core.store").joinpath("pages.lua").read_text()
        self._join = client.register_script(script)

    def join(
        self,
        *,
        group: str,
        overflow: str,
        bucket: str,
        decision_id: str,
        ttl: timedelta,
        max_groups: int,
    ) -> tuple[str, str]:
        """Count a decision into `group`, or into `overflow` once `max_groups` groups were
        opened in the window `bucket`; returns (the covering group, its first decision)."""
        overflowed, first, _ = self._join(
            keys=[keys.PAGE + group, keys.PAGES_OPENED + bucket, keys.PAGE + overflow],
            args=[decision_id, max(1, int(ttl.total_seconds())), max_groups],
        )
        return (overflow if int(overflowed) else group), first.decode()

    def get(self, group: str) -> PageGroup | None:
        """A page group, or None once it expired."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(keys.PAGE + group))
        if not raw:
            return None
        data = {k.decode(): v.decode() for k, v in raw.items()}
        return PageGroup(group, data["first"], data["last"], int(data["count"]))
