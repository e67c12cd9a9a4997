"""Durability across a Redis failover: a write counts once enough replicas hold it.

Redis replicates asynchronously. A webhook answered 202 whose records reached only the
master is lost if that master dies before its replica caught up and Sentinel promotes the
replica. With BACKSTOP_REDIS_MIN_REPLICAS=n the receiver waits, after its writes, until n
replicas acknowledged them (Redis `WAIT`), and otherwise answers 503: Alertmanager retries,
and ingestion is idempotent, so the retry lands on whichever master is current.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from core.connection import reconnects

log = logging.getLogger("backstop.replication")
# WAIT covers the writes of the connection it runs on. The request's writes may have used
# another pooled connection, so a write on this one comes first: its replication offset is
# after every earlier write to this master, whichever client made it.
PROBE_KEY = "backstop:replication-probe"
PROBE_TTL_MS = 60_000


class NotReplicated(redis.exceptions.RedisError):
    """Fewer replicas than required confirmed the writes; the caller should retry later."""


@contextmanager
def replicated(connection: redis.Redis, *, replicas: int, timeout: float) -> Iterator[None]:
    """Around a block of writes: afterwards wait up to `timeout` seconds until `replicas`
    replicas acknowledged them, else raise NotReplicated (a RedisError, so the receiver
    answers 503). Does nothing when `replicas` is 0."""
    if replicas <= 0:
        yield
        return
    before = reconnects()
    yield
    pipe = connection.pipeline(transaction=False)
    pipe.set(PROBE_KEY, "1", px=PROBE_TTL_MS)
    pipe.wait(replicas, max(1, round(timeout * 1000)))  # WAIT 0 would block forever
    _, acknowledged = pipe.execute()
    if reconnects() != before:
        # A connection was re-established, maybe to a newly promoted master:
        # writes made before it may be on the old master only, which WAIT here cannot see.
        log.warning("writes not confirmed: the Redis connection was re-established")
        raise NotReplicated("the Redis connection was re-established during the writes")
    if acknowledged < replicas:
        log.warning("writes not confirmed: %d of %d replicas acknowledged", acknowledged, replicas)
        raise NotReplicated(f"{acknowledged} of {replicas} replicas acknowledged the writes")
