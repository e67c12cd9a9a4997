"""The watcher process: signals, the Redis check, and the Lease that picks one watching replica."""

import gc
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import redis

from config.policy import Policy, load_policy
from config.settings import Settings
from core.clusters import Clusters
from core.connection import RedisVersionError, VersionCheck, connect
from core.errors import PermanentError
from core.integrations.kubeconfig import api_client
from core.integrations.lease import Lease
from core.logs import configure_logging
from core.records import utcnow
from core.store import Store
from workers.leadership import lead
from workers.watcher import watch_clusters


@dataclass(frozen=True)
class WatcherContext:
    """What the watcher needs, and only that: a worker's context (workers/context.py) also
    loads the judgment's statistics stack, which would double the watcher's resident memory
    for code it never runs."""

    settings: Settings
    policy: Policy
    connection: redis.Redis
    store: Store
    clusters: Clusters


def watcher_context() -> WatcherContext:
    """Settings, policy, Redis, store and clusters, read from the environment."""
    settings = Settings()
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set")
    connection = connect(settings.redis_url, timeout=None)
    policy = load_policy(settings.config_path)
    return WatcherContext(
        settings, policy, connection, Store(connection, policy), Clusters(policy, settings)
    )


def run_watcher() -> int:
    """Run the deployment watcher until SIGTERM or SIGINT; the process's exit status."""
    context = watcher_context()
    configure_logging(context.settings.log_level, context.settings.log_format)
    log = logging.getLogger("backstop.watcher")
    try:
        VersionCheck(context.connection).check()
    except RedisVersionError as exc:
        print(f"REDIS_URL: {exc}", file=sys.stderr)
        return 2
    # What is loaded by now (modules, the Kubernetes client's thousand model classes, the
    # policy) stays for the process's life: frozen out of the garbage collector, whose full
    # collections walked all of it, pauses of 40-100 ms at 5,000 Deployments that the
    # events waiting behind them felt as lag (P6). Collections now walk what came since.
    gc.collect()
    gc.freeze()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # One watch loop per guarded cluster (`clusters:`, else the local one).
    work = partial(watch_clusters, context.clusters, context.store, context.policy, utcnow)
    settings = context.settings
    namespace = settings.leader_election_namespace
    try:
        if not context.policy.clusters:
            context.clusters.api(context.policy.cluster)
        # The Lease is in the local cluster (KUBECONFIG or in-cluster), whatever is watched.
        api = api_client(settings.kubeconfig, settings.kube_context) if namespace else None
    except PermanentError as exc:
        # Without a cluster there is nothing to watch; stay up (so `make run` keeps its
        # other processes) and say why, until stopped.
        log.warning("watcher idle: %s", exc)
        stop.wait()
        return 0
    if namespace is None:
        work(stop)
        return 0
    # Several replicas: only the holder of the Lease watches.
    identity = f"{socket.gethostname()}-{os.getpid()}"
    assert api is not None  # made above, the namespace being set (and not empty)
    lease = Lease(
        api,
        namespace,
        context.settings.leader_election_name,
        identity,
        duration=timedelta(seconds=15),
        clock=utcnow,
    )
    lead(lease, stop, work)
    return 0
