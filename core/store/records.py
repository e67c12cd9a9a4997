"""Reading JSON records back through a sorted-set index, newest first: one loop for all."""

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TypeVar, cast

import redis
from pydantic import BaseModel

R = TypeVar("R", bound=BaseModel)


def ms(moment: datetime) -> int:
    """A moment as milliseconds since the epoch: the scores of every index here."""
    return int(moment.timestamp() * 1000)


def load(
    client: redis.Redis,
    prefix: str,
    model: type[R],
    ids: list[bytes],
    raw_filter: Callable[[bytes], bool] | None = None,
) -> list[R]:
    """The records stored at `prefix + id`, skipping any that expired (or that
    `raw_filter` rejects by their JSON text)."""
    if not ids:
        return []
    raws = cast(list[bytes | None], client.mget([prefix + i.decode() for i in ids]))
    return [
        model.model_validate_json(raw)
        for raw in raws
        if raw and (raw_filter is None or raw_filter(raw))
    ]


def scan_newest(
    client: redis.Redis,
    index: str,
    prefix: str,
    model: type[R],
    *,
    first_page: int,
    scan: int | None = None,
    raw_filter: Callable[[bytes], bool] | None = None,
) -> Iterator[list[R]]:
    """Pages of records, newest first by their score in `index`, reading at most `scan`
    ids. The first page is `first_page` long and later ones grow, so a caller that needs
    ten records reads about ten, and one that filters reads on only as far as it must.
    `raw_filter` skips records by their JSON text before they are parsed (a cheap,
    permissive pre-check; the caller still applies its exact test)."""
    start, page = 0, max(1, first_page)
    while scan is None or start < scan:
        stop = start + page if scan is None else min(start + page, scan)
        ids = cast(list[bytes], client.zrevrange(index, start, stop - 1))
        if not ids:
            return
        yield load(client, prefix, model, ids, raw_filter)
        start, page = stop, min(max(page * 2, 200), 2000)


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
    for page in scan_newest(client, index, prefix, model, first_page=limit):
        found += [record for record in page if keep(record)]
        if len(found) >= limit:
            break
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
    pipe: redis.client.Pipeline | None = None,
) -> None:
    """Write a record with a TTL and index it by `score_ms`, keeping the newest `cap`; in
    `pipe` when given (the caller adds its own writes and executes it), else at once."""
    ours = pipe is None
    if pipe is None:
        pipe = client.pipeline(transaction=True)
    pipe.set(prefix + record_id, record.model_dump_json(), ex=ttl)
    pipe.zadd(index, {record_id: score_ms})
    pipe.zremrangebyrank(index, 0, -cap - 1)
    if ours:
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


def change_if(
    client: redis.Redis,
    key: str,
    model: type[R],
    *,
    when: Callable[[R], bool],
    change: Callable[[R], None],
    write: Callable[[redis.client.Pipeline, R], None],
) -> tuple[R | None, bool]:
    """Apply `change` to the record at `key` and `write` it back, only while `when` holds:
    (the record as it now is, whether it was changed); (None, False) when there is none.

    Optimistic (WATCH): a concurrent write makes it read again, so a change is never made
    to a record another writer changed meanwhile (a human's request never writes back, as
    active, what a review just ended)."""
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                raw = cast(bytes | None, pipe.get(key))
                if raw is None:
                    return None, False
                record = model.model_validate_json(raw)
                if not when(record):
                    return record, False
                change(record)
                pipe.multi()
                write(pipe, record)
                pipe.execute()
                return record, True
            except redis.WatchError:
                continue
