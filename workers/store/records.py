"""Reading JSON records back through a sorted-set index, newest first: one loop for all."""

from collections.abc import Callable
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
