"""Real HTTP servers for tests and benchmarks: gunicorn running an app, stopped by pid."""

import os
import subprocess
import sys
from pathlib import Path

import requests

from receiver.localredis import free_port
from testbed.processes import launch, terminate, wait_ready

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    """`gunicorn <app>` with Backstop's gunicorn config on a free loopback port."""

    def __init__(self, app: str, env: dict[str, str], *, workers: int = 2, log: Path | None = None):
        self.app = app
        self.port = free_port()
        self.env = {
            **os.environ,
            **env,
            "BACKSTOP_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(workers),
        }
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "Gunicorn":
        """Start and wait until /healthz answers."""
        args = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:receiver.gunicorn_conf",
            self.app,
        ]
        log = self.log or Path(os.devnull)
        self.process = launch(args, log, env=self.env, cwd=ROOT)
        wait_ready(self.process, self._healthy, name="gunicorn", log=log, timeout=timeout)
        return self

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=0.5).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Stop the master by pid (it stops its workers), then make sure."""
        terminate(self.process)

    def __enter__(self) -> "Gunicorn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
