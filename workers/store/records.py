"""Reading JSON records back through a sorted-set index, newest first: one loop for all."""

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import redis
from pydantic import BaseModel

R = TypeVar("R", bound=BaseModel)


def load(client: redis.Redis, prefix: str, model: type[R], ids: list[bytes]) -> list[R]:
    """The records stored at `prefix + id`, skipping any that expired."""
    if not ids:
        return []
    raws = client.mget([prefix + i.decode() for i in ids])
    return [model.model_validate_json(raw) for raw in raws if raw]


def newest(
    client: redis.Redis,
    index: str,
    prefix: str,
    model: type[R],
    *,
    limit: int,
    keep: Callable[[R], bool] = lambda _: True,
) -> list[R]:
    """Up to `limit` records that `keep`, newest first by their score in `index`."""
    found: list[R] = []
    start, page = 0, max(limit, 200)
    while len(found) < limit:
        ids = client.zrevrange(index, start, start + page - 1)
        if not ids:
            break
        found += [record for record in load(client, prefix, model, ids) if keep(record)]
        start += page
    return found[:limit]


def save(
    client: redis.Redis,
    prefix: str,
    index: str,
    record_id: str,
    record: BaseModel,
    *,
    score_ms: int,
    ttl: timedelta,
    cap: int,
) -> None:
    """Write a record with a TTL and index it by `score_ms`, keeping the newest `cap`."""
    pipe = client.pipeline(transaction=True)
    pipe.set(prefix + record_id, record.model_dump_json(), ex=ttl)
    pipe.zadd(index, {record_id: score_ms})
    pipe.zremrangebyrank(index, 0, -cap - 1)
    pipe.execute()


def get(client: redis.Redis, prefix: str, model: type[R], record_id: str) -> R | None:
    """One record, or None when unknown or expired."""
    raw = client.get(prefix + record_id)
    return model.model_validate_json(raw) if raw else None


def count_since(client: redis.Redis, indexes: dict[str, str], *, since_ms: int) -> dict[str, int]:
    """For each name, how many members of its index scored at or after `since_ms`."""
    pipe = client.pipeline(transaction=False)
    for index in indexes.values():
        pipe.zcount(index, since_ms, "+inf")
    return dict(zip(indexes, (int(n) for n in pipe.execute()), strict=True))
