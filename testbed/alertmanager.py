"""A real Alertmanager (Debian's prometheus-alertmanager) on loopback, started by pid."""

import json
import shutil
from pathlib import Path

import requests

from testbed.kube.procs import free_port
from testbed.processes import launch, terminate, wait_ready


def alertmanager_binary() -> str:
    """Debian's binary name first, then upstream's."""
    for name in ("prometheus-alertmanager", "alertmanager"):
        if found := shutil.which(name):
            return found
    raise FileNotFoundError("no Alertmanager: apt-get install prometheus-alertmanager")


class Alertmanager:
    """One Alertmanager with a single route to a webhook, short timers, no clustering."""

    def __init__(self, directory: Path, webhook_url: str, token: str):
        self.directory = Path(directory)
        self.port = free_port()
        self.webhook_url = webhook_url
        self.token = token
        self.process = None

    @property
    def url(self) -> str:
        """Base URL of its API."""
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        """Route everything to the webhook with bearer auth; JSON is valid YAML."""
        config = {
            "route": {
                "receiver": "backstop",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "backstop",
                    "webhook_configs": [
                        {
                            "url": self.webhook_url,
                            "send_resolved": True,
                            "http_config": {
                                "authorization": {"type": "Bearer", "credentials": self.token}
                            },
                        }
                    ],
                }
            ],
        }
        path = self.directory / "alertmanager.yml"
        path.write_text(json.dumps(config))
        return path

    def start(self, timeout: float = 20.0) -> "Alertmanager":
        """Start and wait until it is ready."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            alertmanager_binary(),
            f"--config.file={self.write_config()}",
            f"--storage.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip port: a single, loopback-only instance
        ]
        log = self.directory / "alertmanager.log"
        self.process = launch(args, log)
        wait_ready(self.process, self._ready, name="alertmanager", log=log, timeout=timeout)
        return self

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200
        except requests.RequestException:
            return False

    def post_alerts(self, alerts: list[dict]) -> None:
        """Send alerts the way Prometheus does (API v2)."""
        requests.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

    def alerts(self) -> list[dict]:
        """The alerts Alertmanager holds, with the fingerprints it computed."""
        return requests.get(f"{self.url}/api/v2/alerts", timeout=5).json()

    def stop(self) -> None:
        """Stop by pid."""
        terminate(self.process)
