"""Real HTTP servers for tests and benchmarks: gunicorn running an app, stopped by pid."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from receiver.localredis import free_port

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
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                "python:receiver.gunicorn_conf",
                self.app,
            ],
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
            try:
                if requests.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError("gunicorn did not become healthy")

    def stop(self) -> None:
        """Stop the master by pid (it stops its workers), then make sure."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> "Gunicorn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
