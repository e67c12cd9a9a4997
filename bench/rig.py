"""The real parts a rollback benchmark needs, started by the project's own code, stopped by pid.

Redis, the Kubernetes test control plane (testbed/kube, with its pod helper), Backstop's
receiver under gunicorn, RQ workers (`backstop worker`) and the deployment watcher
(`backstop watch`), all on loopback, all logging into one work directory. Deployments are
made with the game day's `Cluster` helper, as CI would make them.
"""

import os
import secrets
import sys
import time
from pathlib import Path

import requests
import yaml
from kubernetes import client, config

from cli.localredis import LocalRedis
from gameday.cluster import Cluster
from testbed.kube import kubebuild
from testbed.kube.kube import ControlPlane
from testbed.processes import launch, poll, terminate
from testbed.servers import Gunicorn


class Rig:
    """Everything up: `with Rig(workdir, policy) as rig:`; Backstop guards one namespace."""

    def __init__(
        self,
        workdir: Path,
        policy: dict,
        *,
        namespace: str = "bench",
        web_workers: int = 4,
        rq_workers: int = 1,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.policy = {**policy, "watch": {"namespaces": [namespace]}}
        self.web_workers = web_workers
        self.rq_workers = rq_workers
        self.webhook_token = secrets.token_urlsafe(24)
        self.api_token = secrets.token_urlsafe(24)
        self.redis: LocalRedis | None = None
        self.plane: ControlPlane | None = None
        self.receiver: Gunicorn | None = None
        self.workers: list = []  # RQ worker processes
        self.watcher = None
        self.cluster: Cluster | None = None
        self._api: client.ApiClient | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "Rig":
        """Start every part (about 10 s once the Kubernetes binaries are built)."""
        try:
            self.redis = LocalRedis(self.workdir / "redis").start()
            self.plane = ControlPlane(self.workdir / "kube", binaries=kubebuild.ensure_binaries())
            self.plane.start()
            self._api = config.new_client_from_config(str(self.plane.kubeconfig))
            client.CoreV1Api(self._api).create_namespace({"metadata": {"name": self.namespace}})
            self.cluster = Cluster(self._api, self.namespace)
            env = self.env()
            self.receiver = Gunicorn(
                "receiver.app:create_app()",
                env,
                workers=self.web_workers,
                log=self.workdir / "receiver.log",
            ).start()
            for index in range(self.rq_workers):
                self.workers.append(self._launch("worker", f"worker-{index}", env))
            self.watcher = self._launch("watch", "watcher", env)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything started, newest first, by pid."""
        for process in [self.watcher, *reversed(self.workers)]:
            terminate(process)
        if self.receiver is not None:
            self.receiver.stop()
        if self._api is not None:
            self._api.close()
        if self.plane is not None:
            self.plane.stop()
        if self.redis is not None:
            self.redis.stop()

    def __enter__(self) -> "Rig":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The environment Backstop's processes run with (no Prometheus, Jira, PagerDuty)."""
        path = self.workdir / "backstop.yaml"
        path.write_text(yaml.safe_dump(self.policy))
        metrics = self.workdir / "metrics"
        metrics.mkdir(exist_ok=True)
        keep = ("BACKSTOP_", "JIRA_", "PAGERDUTY_", "PROMETHEUS_", "KUBECONFIG", "REDIS_URL")
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(keep)},
            "REDIS_URL": self.redis.url,
            "BACKSTOP_CONFIG": str(path),
            "BACKSTOP_WEBHOOK_TOKEN": self.webhook_token,
            "BACKSTOP_API_TOKEN": self.api_token,
            "KUBECONFIG": str(self.plane.kubeconfig),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }

    def _launch(self, command: str, name: str, env: dict[str, str]):
        args = [sys.executable, "-m", "cli.main", command]
        return launch(args, self.workdir / f"{name}.log", env=env)

    # -- Backstop's API and the cluster ----------------------------------------------------

    def api(self, path: str) -> dict:
        """GET Backstop's JSON API."""
        answer = requests.get(
            f"{self.receiver.url}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.api_token}"},
            timeout=30,
        )
        answer.raise_for_status()
        return answer.json()

    def release(self, name: str, image: str, *, replicas: int = 2) -> None:
        """Create `name` at `image` and wait until it runs (revision 1, the good one)."""
        self.cluster.create(name, image, replicas=replicas)
        self.cluster.wait_rolled_out(name, timeout=120)

    def deploy_recorded(self, images: dict[str, str], timeout: float = 60.0) -> dict[str, str]:
        """Roll out a new image to each Deployment named and wait until the watcher recorded
        each new revision, so that an alert now finds a recent deployment; returns them."""
        wanted = {}
        for name, image in images.items():
            before = self.cluster.revision(name)
            self.cluster.deploy(name, image)
            wanted[name] = poll(
                lambda n=name, b=before: (r := self.cluster.revision(n)) != b and r,
                timeout=timeout,
                interval=0.05,
            )

        def recorded() -> bool:
            found = self.api(f"/deployments?namespace={self.namespace}&limit=1000")["deployments"]
            seen = {(r["workload"]["name"], r["revision"]) for r in found}
            return all((name, revision) in seen for name, revision in wanted.items())

        poll(recorded, timeout=timeout, interval=0.1)
        return wanted

    def gunicorn_workers(self) -> list[int]:
        """Pids of the receiver's gunicorn workers (the master's children)."""
        return children(self.receiver.process.pid)

    def rq_worker_pids(self) -> list[int]:
        """Pids of the RQ worker processes (each forks a work horse per job)."""
        return [process.pid for process in self.workers]


def children(pid: int) -> list[int]:
    """Pids of `pid`'s children (those forked by any of its threads), read from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread or the process exited meanwhile
    return found


def wait(condition, what: str, timeout: float, interval: float = 0.2):
    """poll() that names what it waited for when it times out."""
    started = time.monotonic()
    try:
        return poll(condition, timeout=timeout, interval=interval)
    except TimeoutError:
        raise TimeoutError(f"{what}: not after {time.monotonic() - started:.0f} s") from None
