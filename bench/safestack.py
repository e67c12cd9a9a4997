"""P8's stack (bench/safestate.py): the game day's, with production's alerting clocks.

Prometheus scrapes and evaluates every 15 s instead of every second, each canary's kill
switch is the 5xx ratio over 2 minutes held for its own `for:`, Alertmanager groups per
workload with production's `group_wait` and `group_interval`, and Backstop runs a worker
per variant, so no rollback waits behind another's verification.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from gameday import rules
from gameday.stack import Service, Stack
from testbed.alertmanager import Alertmanager
from testbed.processes import launch
from testbed.prometheus import PrometheusServer

NAMESPACE = "p8"


@dataclass(frozen=True)
class Windows:
    """Production's clocks of the alerting pipeline, in seconds."""

    scrape: float = 15.0
    evaluation: float = 15.0
    rate_window: float = 120.0
    threshold: float = 0.01
    group_wait: float = 30.0
    group_interval: float = 300.0


@dataclass(frozen=True)
class Variant:
    """One service of the run: its rule's `for:` and Backstop's `min_firing`, in seconds."""

    name: str
    hold: float
    min_firing: float
    headline: bool = False

    @property
    def canary(self) -> str:
        """The canary Deployment's name (the stable one is `name`)."""
        return f"{self.name}-canary"


def duration(seconds: float) -> str:
    """60.0 -> '60s', as Prometheus, Alertmanager and Backstop read durations."""
    return f"{seconds:g}s"


def selector(deployment: str) -> str:
    """The PromQL label matchers of one Deployment of the namespace."""
    return f'namespace="{NAMESPACE}",deployment="{deployment}"'


class ProductionPrometheus(PrometheusServer):
    """Debian's Prometheus scraping and evaluating on production's interval."""

    def __init__(self, *args, windows: Windows, **kwargs):
        super().__init__(*args, **kwargs)
        self.windows = windows

    def write_config(self) -> Path:
        """The testbed's configuration with production's global intervals."""
        path = super().write_config()
        config = json.loads(path.read_text())  # the testbed writes JSON, valid YAML
        config["global"] = {
            "scrape_interval": duration(self.windows.scrape),
            "evaluation_interval": duration(self.windows.evaluation),
        }
        path.write_text(json.dumps(config))
        return path


class ProductionAlertmanager(Alertmanager):
    """Alertmanager grouping per workload, with production's timers."""

    def __init__(self, *args, windows: Windows, **kwargs):
        super().__init__(*args, **kwargs)
        self.windows = windows

    def write_config(self) -> Path:
        """The testbed's route with production's group_wait and group_interval."""
        path = super().write_config()
        config = json.loads(path.read_text())
        config["route"].update(
            {
                # One group per workload, so each canary's alert waits its own group_wait
                # rather than a group_interval behind another's.
                "group_by": ["alertname", "namespace", "deployment"],
                "group_wait": duration(self.windows.group_wait),
                "group_interval": duration(self.windows.group_interval),
                "repeat_interval": "4h",
            }
        )
        path.write_text(json.dumps(config))
        return path


def kill_switches(windows: Windows, variants: tuple[Variant, ...]) -> dict:
    """The rule file: each canary's 5xx ratio over the rule window above the threshold,
    held for its variant's `for:`."""
    window = duration(windows.rate_window)
    return {
        "groups": [
            {
                "name": "p8-kill-switches",
                "interval": duration(windows.evaluation),
                "rules": [
                    {
                        "alert": "High5xxRatio",
                        "expr": f"{rules.error_ratio(selector(v.canary), window)}"
                        f" > {windows.threshold}",
                        "for": duration(v.hold),
                        "labels": {"backstop_rollback": "true", "severity": "critical"},
                    }
                    for v in variants
                ],
            }
        ]
    }


def service(windows: Windows, variant: Variant) -> Service:
    """The canary's policy: its `min_firing`, and a verification a 15-s scrape can answer
    (a 30-s ratio, read once the bad minute has left it)."""
    verify = {
        "interval": duration(windows.scrape),
        "window": duration(windows.scrape),
        "settle": duration(3 * windows.scrape),
        "queries": [
            {
                "name": "error_ratio",
                "query": rules.error_ratio(selector(variant.canary), duration(2 * windows.scrape)),
                "comparison": "<",
                "threshold": windows.threshold,
                "unit": "ratio",
            }
        ],
    }
    return Service(
        variant.canary, extra={"min_firing": duration(variant.min_firing), "verify": verify}
    )


class ProductionStack(Stack):
    """The game day's stack with production's alerting windows and a worker per variant."""

    def __init__(self, workdir: Path, windows: Windows, variants: tuple[Variant, ...]):
        super().__init__(workdir, [service(windows, v) for v in variants], namespace=NAMESPACE)
        self.windows = windows
        self.variants = variants

    def _start_alerting(self, demo_address: str) -> None:
        rule_file = self.workdir / "rules.yml"
        rule_file.write_text(json.dumps(kill_switches(self.windows, self.variants), indent=2))
        manager = self._keep(
            ProductionAlertmanager(
                self.workdir / "alertmanager",
                f"{self.receiver.url}/webhooks/alertmanager",
                self.webhook_token,
                windows=self.windows,
            )
        )
        manager.start()
        self.alertmanager_url = manager.url
        prometheus = self._keep(
            ProductionPrometheus(
                self.workdir / "prometheus",
                [demo_address],
                rule_files=[rule_file],
                alertmanagers=[manager.url.removeprefix("http://")],
                windows=self.windows,
            )
        )
        # The first scrape comes up to one interval after the targets are loaded.
        prometheus.start(timeout=30 + 2 * self.windows.scrape)
        self.prometheus_url = prometheus.url

    def _start_backstop(self) -> None:
        super()._start_backstop()
        env = self.backstop_env()
        for number in range(2, len(self.variants) + 1):
            log_file = self.workdir / f"worker-{number}.log"
            self._backstop.append(
                launch([sys.executable, "-m", "cli.main", "worker"], log_file, env=env)
            )
