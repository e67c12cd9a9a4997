"""The one place a process builds its store and decision engine from its policy and Redis."""

import redis

from config.policy import Policy
from core.decisions import Engine
from core.records import utcnow
from core.store import Store


def assemble(policy: Policy, connection: redis.Redis) -> tuple[Store, Engine]:
    """The store on `connection` and the engine that decides over it, on the wall clock."""
    store = Store(connection, policy)
    return store, Engine(store=store, policy=policy, connection=connection, clock=utcnow)
