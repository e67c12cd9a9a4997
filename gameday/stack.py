"""The game day's stack: every part real, started by the project's own code, stopped by pid.

Locally: Redis, the Kubernetes test control plane (testbed/kube), the demo service,
Debian's Prometheus (scraping the demo, evaluating gameday/rules.py) and Alertmanager
(routing to Backstop with bearer auth), Backstop's receiver (gunicorn), worker and watcher,
and the Jira and PagerDuty doubles. `Targets` swaps in existing parts: a cluster given by
kubeconfig, a Prometheus and an Alertmanager given by URL (those must then scrape the demo
service, load the written rule file, and route to the receiver: the stack prints how).
"""

import logging
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml
from kubernetes import client, config

from cli.localredis import LocalRedis
from cli.secrets_file import ensure_secret
from gameday import rules
from gameday.demo import DemoProcess
from testbed.alertmanager import Alertmanager
from testbed.doubles.jira import JiraDouble
from testbed.doubles.pagerduty import PagerDutyDouble
from testbed.kube import kubebuild
from testbed.kube.kube import ControlPlane
from testbed.processes import launch, terminate
from testbed.prometheus import PrometheusServer
from testbed.servers import Gunicorn

log = logging.getLogger("backstop.gameday")
ROOT = Path(__file__).resolve().parent.parent

# Production's minutes, scaled to seconds (see rules.py for the alert side).
TIMINGS = {
    "min_firing": "15s",  # Backstop's own "no rollback on a single spike"
    "lookback": "10m",
    "clock_skew": "30s",
    "cooldown": "0s",
    "rollout_timeout": "60s",
    "known_good_min_age": "20s",
}
VERIFY = {"interval": "2s", "window": "8s", "settle": "6s"}


@dataclass
class Targets:
    """Existing infrastructure to use instead of starting it (a staging game day)."""

    kubeconfig: Path | None = None
    prometheus_url: str | None = None
    alertmanager_url: str | None = None


@dataclass
class Service:
    """One demo workload Backstop guards: its kill switches verify against its own KPIs;
    with `judgment`, its rollbacks are judged by revision before they revert."""

    deployment: str
    lookback: str | None = None
    verify_latency: bool = False
    # The service's `judgment:` block (config/judgment.py), for this workload only.
    judgment: dict | None = None
    extra: dict = field(default_factory=dict)

    def policy(self) -> dict:
        """The policy's `services[]` entry for this workload."""
        selector = f'deployment="{self.deployment}"'
        query, name, threshold, unit = (
            (rules.p99_latency(selector), "p99_latency", rules.P99_THRESHOLD_SECONDS, "s")
            if self.verify_latency
            else (rules.error_ratio(selector), "error_ratio", rules.ERROR_RATIO_THRESHOLD, "ratio")
        )
        entry = {
            "name": self.deployment,
            "match": {"deployment": self.deployment},
            "verify": {
                **VERIFY,
                "queries": [
                    {
                        "name": name,
                        "query": query,
                        "comparison": "<",
                        "threshold": threshold,
                        "unit": unit,
                    }
                ],
            },
            **self.extra,
        }
        if self.lookback:
            entry["lookback"] = self.lookback
        if self.judgment is not None:
            entry["judgment"] = self.judgment
        return entry


def backstop_policy(namespace: str, services: list[Service], mode: str = "enforce") -> dict:
    """Backstop's policy for the game day."""
    return {
        "mode": mode,
        "defaults": TIMINGS,
        # Game days roll back several workloads within minutes; the breaker has its own tests.
        "circuit_breaker": {"max_rollbacks": 50, "window": "1h"},
        "watch": {"namespaces": [namespace], "ci_merge_window": "1m"},
        "incidents": {"snapshot_before": "2m"},
        "services": [service.policy() for service in services],
        # The Argo CD stand-in's Applications live beside the workloads (gameday/gitops.py).
        "owners": {"argocd": {"namespace": namespace}},
    }


class Stack:
    """Everything a game day needs, up: `with Stack(...) as stack:`."""

    def __init__(
        self,
        workdir: Path,
        services: list[Service],
        *,
        namespace: str = "gameday",
        targets: Targets | None = None,
        mode: str = "enforce",
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.services = services
        self.targets = targets or Targets()
        self.mode = mode
        self.webhook_token = secrets.token_urlsafe(24)
        # Kept in a 0600 file, to log in to the dashboard while the game day runs.
        self.api_token = ensure_secret(self.workdir / "api-token")
        self._stack: list = []  # started parts, stopped in reverse
        self._backstop: list = []  # receiver, worker, watcher (restarted on reconfigure)
        self.kubeconfig: Path | None = None
        self.receiver: Gunicorn | None = None
        self.jira: JiraDouble | None = None
        self.pagerduty: PagerDutyDouble | None = None
        self.prometheus_url = ""
        self.alertmanager_url = ""
        self.redis_url = ""
        self.demo: DemoProcess | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> "Stack":
        """Start every part (about 15 s locally once the Kubernetes binaries are built)."""
        try:
            self._start_redis()
            self._start_kube()
            self._create_namespace()
            self._start_doubles()
            demo = self._keep(DemoProcess(self.kubeconfig, self.namespace, self.workdir / "demo"))
            demo.start()
            self.demo = demo
            # Created now for its port (Alertmanager sends there); started last.
            self.receiver = Gunicorn(
                "receiver.app:create_app()", {}, workers=2, log=self.workdir / "receiver.log"
            )
            self._start_alerting(demo.address)
            self._start_backstop()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything this stack started, newest first, by pid."""
        for part in reversed(self._backstop):
            _stop(part)
        self._backstop.clear()
        while self._stack:
            _stop(self._stack.pop())

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add(self, part) -> None:
        """Stop `part` (anything with stop()) with the stack, before the parts started
        earlier (a scenario's own controllers go before the cluster they act on)."""
        self._keep(part)

    def _keep(self, part):
        self._stack.append(part)
        return part

    def _start_redis(self) -> None:
        local = self._keep(LocalRedis(self.workdir / "redis", persist=False))
        local.start()
        self.redis_url = local.url

    def _start_kube(self) -> None:
        if self.targets.kubeconfig:
            self.kubeconfig = Path(self.targets.kubeconfig)
            return
        plane = self._keep(
            ControlPlane(self.workdir / "kube", binaries=kubebuild.ensure_binaries())
        )
        plane.start()
        self.kubeconfig = plane.kubeconfig

    def _create_namespace(self) -> None:
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            try:
                core.create_namespace({"metadata": {"name": self.namespace}})
            except client.ApiException as error:
                if error.status != 409:
                    raise

    def _start_doubles(self) -> None:
        self.jira = self._keep(JiraDouble(mode="cloud"))
        self.jira.start()
        self.pagerduty = self._keep(PagerDutyDouble())
        self.pagerduty.start()

    def _start_alerting(self, demo_address: str) -> None:
        rule_file = rules.write_rules(self.workdir / "rules.yml", self.namespace)
        if self.targets.alertmanager_url:
            self.alertmanager_url = self.targets.alertmanager_url
        else:
            manager = self._keep(
                Alertmanager(
                    self.workdir / "alertmanager",
                    f"{self.receiver.url}/webhooks/alertmanager",
                    self.webhook_token,
                )
            )
            manager.start()
            self.alertmanager_url = manager.url
        if self.targets.prometheus_url:
            self.prometheus_url = self.targets.prometheus_url
            log.warning(
                "using Prometheus at %s: it must scrape %s, load %s and send to %s",
                self.prometheus_url,
                demo_address,
                rule_file,
                self.alertmanager_url,
            )
            return
        prometheus = self._keep(
            PrometheusServer(
                self.workdir / "prometheus",
                [demo_address],
                rule_files=[rule_file],
                alertmanagers=[self.alertmanager_url.removeprefix("http://")],
            )
        )
        prometheus.start()
        self.prometheus_url = prometheus.url

    # -- Backstop itself -------------------------------------------------------------------

    def backstop_env(self) -> dict[str, str]:
        """The environment Backstop's processes run with."""
        policy = self.workdir / "backstop.yaml"
        policy.write_text(yaml.safe_dump(backstop_policy(self.namespace, self.services, self.mode)))
        metrics = self.workdir / "metrics"
        metrics.mkdir(exist_ok=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BACKSTOP_", "JIRA_"))},
            "REDIS_URL": self.redis_url,
            "BACKSTOP_CONFIG": str(policy),
            "BACKSTOP_WEBHOOK_TOKEN": self.webhook_token,
            "BACKSTOP_API_TOKEN": self.api_token,
            "KUBECONFIG": str(self.kubeconfig),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "JIRA_URL": self.jira.url,
            "JIRA_USER": self.jira.email,
            "JIRA_TOKEN": self.jira.api_token,
            "PAGERDUTY_ROUTING_KEY": self.pagerduty.routing_key,
            "PAGERDUTY_EVENTS_URL": self.pagerduty.url,
            "PAGERDUTY_CA_FILE": str(self.pagerduty.ca_path),
        }
        if self.prometheus_url:
            env["PROMETHEUS_URL"] = self.prometheus_url
        if self.receiver is not None:
            env["BACKSTOP_PUBLIC_URL"] = self.receiver.url
        return env

    def _start_backstop(self) -> None:
        env = self.backstop_env()
        self.receiver.env.update(env)
        self.receiver.start()
        self._backstop.append(self.receiver)
        for name in ("worker", "watch"):
            log_file = self.workdir / f"{name}.log"
            process = launch([sys.executable, "-m", "cli.main", name], log_file, env=env)
            self._backstop.append(process)

    def reconfigure(self, mode: str) -> None:
        """Restart Backstop's processes with another automation mode (same Redis, cluster)."""
        for part in reversed(self._backstop):
            _stop(part)
        self._backstop.clear()
        self.mode = mode
        self._start_backstop()  # the same receiver port: Alertmanager keeps sending there

    # -- clients ---------------------------------------------------------------------------

    def api_client(self) -> client.ApiClient:
        """A Kubernetes client for the game day's cluster."""
        return config.new_client_from_config(str(self.kubeconfig))

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        """Call Backstop's JSON API as `gameday`."""
        answer = requests.request(
            method,
            f"{self.receiver.url}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.api_token}", "X-Backstop-Actor": "gameday"},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()

    def describe(self) -> dict:
        """Where everything is, for the report."""
        return {
            "dashboard": f"{self.receiver.url}/",
            "prometheus": self.prometheus_url,
            "alertmanager": self.alertmanager_url,
            "jira": self.jira.url,
            "kubeconfig": str(self.kubeconfig),
            "namespace": self.namespace,
            "logs": str(self.workdir),
        }


def _stop(part) -> None:
    if hasattr(part, "stop"):
        part.stop()
    else:
        terminate(part)
