"""Real HTTP servers for tests and benchmarks: gunicorn running an app, stopped by pid; and
the threaded loopback server our in-process servers (doubles, fault proxy) are built on."""

import os
import ssl
import subprocess
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from testbed.kube.procs import free_port
from testbed.processes import launch, terminate, wait_ready

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    """`gunicorn <app>` with Backstop's gunicorn config on a free loopback port."""

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        *,
        workers: int = 2,
        log: Path | None = None,
        ca: Path | None = None,
    ):
        """`ca`: the CA that signed BACKSTOP_TLS_CERT in `env`, when serving https."""
        self.app = app
        self.ca = ca
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
        return f"{'https' if self.ca else 'http'}://127.0.0.1:{self.port}"

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
            verify = str(self.ca) if self.ca else True
            answer = requests.get(self.url + "/healthz", timeout=0.5, verify=verify)
            return answer.status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Stop the master by pid (it stops its workers), then make sure."""
        terminate(self.process)

    def __enter__(self) -> "Gunicorn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server, over TLS when given a context, that joins its handler
    threads on close (never abandons them) and takes clients hanging up in its stride."""

    daemon_threads = False

    def __init__(self, address, handler, context: ssl.SSLContext | None = None) -> None:
        super().__init__(address, handler)
        if context is not None:
            # The handshake runs lazily in the handler thread, never in the accept loop.
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up or time out (and stop()); report anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)
