"""What a worker or watcher process needs, built once from the environment."""

from dataclasses import dataclass
from functools import cache

import redis

from config.policy import Policy, load_policy
from config.settings import Settings
from workers.connection import connect
from workers.decisions import Engine
from workers.errors import PermanentError
from workers.integrations.kubernetes import Kube, api_client
from workers.integrations.prometheus import Prometheus
from workers.records import utcnow
from workers.rollback import Executor
from workers.store import Store


@dataclass(frozen=True)
class Context:
    """Settings, policy, Redis, store and decision engine of one process."""

    settings: Settings
    policy: Policy
    connection: redis.Redis
    store: Store
    engine: Engine

    def executor(self) -> Executor:
        """A rollback executor on this process's cluster and Prometheus (kube None when no
        cluster is configured: its rollbacks then fail, saying so)."""
        try:
            kube = Kube(api_client(self.settings.kubeconfig, self.settings.kube_context))
        except PermanentError:
            kube = None
        url = self.settings.prometheus_url
        return Executor(
            store=self.store,
            policy=self.policy,
            kube=kube,
            prometheus=Prometheus(url) if url else None,
            connection=self.connection,
            clock=utcnow,
        )

    @classmethod
    def build(cls, settings: Settings, policy: Policy, connection: redis.Redis) -> "Context":
        """Assemble a context from its parts (tests pass their own)."""
        store = Store(connection, policy)
        engine = Engine(store=store, policy=policy, connection=connection, clock=utcnow)
        return cls(settings, policy, connection, store, engine)


@cache
def process_context() -> Context:
    """This process's context, read from the environment on first use."""
    settings = Settings()
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set")
    connection = connect(settings.redis_url, timeout=None)
    return Context.build(settings, load_policy(settings.config_path), connection)
