"""Redis connections with the timeouts and retry policy every Backstop process uses."""

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

CONNECT_TIMEOUT = 2.0


def connect(url: str, *, timeout: float | None = 2.0) -> redis.Redis:
    """A Redis client that fails fast: no network call here, short socket timeouts.

    One immediate retry on a connection error covers a pooled connection that went stale
    (Redis restarted); timeouts are not retried, so a hung Redis costs at most `timeout`
    before the receiver answers 503 and Alertmanager retries. RQ workers pass
    `timeout=None`: their blocking dequeue waits far longer than any socket timeout.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=CONNECT_TIMEOUT,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
    )
