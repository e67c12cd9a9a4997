"""What a worker or watcher process needs, built once from the environment.

An RQ worker runs each job in a work horse forked for it, which builds its own context. To
keep that short, the worker prepares, before each fork, what is safe to inherit (see
`prepare_worker`): settings, the parsed policy, the clusters' parsed kubeconfigs. Sockets
never cross the fork: the horse's Redis client opens its own connections (redis-py checks
the process id), and its Kubernetes clients are made in the horse.
"""

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import redis

from config.policy import Policy, PolicyError, load_policy
from config.settings import Settings
from core.assembly import assemble
from core.clusters import Clusters
from core.connection import connect
from core.decisions import Engine
from core.errors import PermanentError
from core.integrations.prometheus import Prometheus
from core.records import utcnow
from core.store import Store
from workers.candidates import CandidateJudge
from workers.rollback import Executor


@dataclass(frozen=True)
class Context:
    """Settings, policy, Redis, store, decision engine and clusters of one process."""

    settings: Settings
    policy: Policy
    connection: redis.Redis
    store: Store
    engine: Engine
    clusters: Clusters

    def executor(self, cluster: str | None = None) -> Executor:
        """A rollback executor on `cluster` (default: the local one) and Prometheus. Its kube
        is None when that cluster is unknown or unreachable: its rollbacks then fail, saying
        why."""
        try:
            kube, unavailable = self.clusters.kube(cluster or self.policy.cluster), None
        except PermanentError as exc:
            kube, unavailable = None, str(exc)
        url = self.settings.prometheus_url
        return Executor(
            store=self.store,
            policy=self.policy,
            kube=kube,
            kube_unavailable=unavailable,
            prometheus=Prometheus(url) if url else None,
            connection=self.connection,
            clock=utcnow,
        )

    def candidate_judge(self) -> CandidateJudge:
        """The judge of an ambiguous episode's candidate rollouts (workers/candidates.py)."""
        url = self.settings.prometheus_url
        return CandidateJudge(
            store=self.store,
            policy=self.policy,
            engine=self.engine,
            prometheus=Prometheus(url) if url else None,
            kube_for=self.clusters.kube,
            clock=utcnow,
        )

    @classmethod
    def build(cls, settings: Settings, policy: Policy, connection: redis.Redis) -> "Context":
        """Assemble a context from its parts (tests pass their own)."""
        store, engine = assemble(policy, connection)
        return cls(settings, policy, connection, store, engine, Clusters(policy, settings))


@cache
def process_context() -> Context:
    """This process's context, read from the environment on first use (in a work horse:
    what its worker prepared, the policy as the worker read it just before the fork)."""
    if _prepared is not None:
        settings, policy = _prepared.settings, _prepared.policy
        if policy is None:  # the worker could not read or parse it: the job reports why
            policy = load_policy(settings.config_path)
        return Context.build(settings, policy, _prepared.connection)
    settings = Settings()
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set")
    connection = connect(settings.redis_url, timeout=None)
    return Context.build(settings, load_policy(settings.config_path), connection)


log = logging.getLogger("backstop.worker")


@dataclass
class _Prepared:
    """What an RQ worker hands its work horses: nothing that holds a socket."""

    settings: Settings
    # The worker's own Redis client (same URL and options as `connect` gives a job): the
    # horse's copy of its pool opens fresh connections, and the job needs no second pool.
    connection: redis.Redis
    policy: Policy | None = None
    policy_text: bytes | None = None


_prepared: _Prepared | None = None


def prepare_worker(connection: redis.Redis) -> None:
    """Read the settings and parse the policy and kubeconfigs in an RQ worker, once; its
    work horses then inherit them (3-5 ms a job, bench/latency.py). Never
    builds a context here: that holds Kubernetes connection pools, which must not be
    shared with forked processes."""
    global _prepared
    _prepared = _Prepared(Settings(), connection)
    refresh_prepared()


def refresh_prepared(*, max_age: float | None = None) -> tuple:
    """Before each fork: parse the policy again if its file changed (a changed policy
    applies to the next job, without a restart), and the kubeconfigs if they changed or are
    older than `max_age` seconds (None: CONFIGURATION_MAX_AGE). Cheap when nothing changed
    (one small file read each); never raises: a policy that cannot be read or parsed is
    left to the job, which fails saying why. Returns what a horse forked now inherits, the
    policy and kubeconfigs as parsed objects: the same objects (`same_prepared`) mean that
    nothing changed."""
    if _prepared is None:
        return ()
    path = Path(_prepared.settings.config_path)
    try:
        text = path.read_bytes()
        if text != _prepared.policy_text or _prepared.policy is None:
            _prepared.policy, _prepared.policy_text = load_policy(path), text
    except (OSError, PolicyError) as exc:
        _prepared.policy, _prepared.policy_text = None, None
        log.warning("policy not prepared for the next job: %s", type(exc).__name__)
        return (None,)
    try:
        configurations = Clusters(_prepared.policy, _prepared.settings).prepare(max_age=max_age)
    except Exception as exc:  # never take the worker down: the job meets it and says why
        log.warning("clusters not prepared for the next job: %s", type(exc).__name__)
        configurations = [None]
    return (_prepared.policy, *configurations)


def same_prepared(one: tuple, other: tuple) -> bool:
    """True when two results of `refresh_prepared` hold the very same objects."""
    return len(one) == len(other) and all(a is b for a, b in zip(one, other, strict=True))


def warm_horse() -> None:
    """In a spare work horse (workers.horses), before it has a job: build this process's
    context and open its connections, to Redis and to the local cluster's API server, so
    that the job finds them open. Never raises: what fails here (no cluster configured, say,
    under `make run`), the job meets and reports; an idle worker renews its spare every
    25 s, so this logs at debug level only."""
    try:
        context = process_context()
        context.connection.ping()
        context.clusters.kube(context.policy.cluster).warm()
    except Exception as exc:
        log.debug("spare work horse not warmed up: %s", type(exc).__name__)
