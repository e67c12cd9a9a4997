"""RQ queues: their names, serializer and the worker that serves them."""

import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

# Rollbacks first: a Jira or PagerDuty outage must never delay a revert.
QUEUE_NAMES = ("rollbacks", "incidents")


def queues(connection: redis.Redis) -> list[Queue]:
    """Backstop's queues, highest priority first, with the JSON serializer."""
    return [Queue(name, connection=connection, serializer=JSONSerializer) for name in QUEUE_NAMES]


def run_worker(connection: redis.Redis, *, burst: bool = False) -> bool:
    """Serve the queues with an RQ worker that also runs the scheduler (for retries)."""
    worker = Worker(queues(connection), connection=connection, serializer=JSONSerializer)
    return worker.work(burst=burst, with_scheduler=True)
