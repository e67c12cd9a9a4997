"""Gunicorn settings for the receiver (`gunicorn -c python:receiver.gunicorn_conf ...`).

Read by gunicorn's master before any worker imports the app: the metrics directory must
exist in the environment before prometheus_client is first imported.
"""

import multiprocessing
import os
import tempfile

from gunicorn.glogging import Logger

from core.logs import FORMATTERS
from receiver import webworker

_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if not _metrics_dir:
    _metrics_dir = tempfile.mkdtemp(prefix="backstop-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
os.makedirs(_metrics_dir, exist_ok=True)

bind = os.environ.get("BACKSTOP_BIND", "127.0.0.1:8080")
# TLS, for the admission webhook (the API server calls only https) or a receiver exposed
# without a TLS-terminating proxy: a PEM certificate and key.
certfile = os.environ.get("BACKSTOP_TLS_CERT") or None
keyfile = os.environ.get("BACKSTOP_TLS_KEY") or None
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)))
# Threads whose event loop reads each request in full before a thread serves it, with header
# and body deadlines (receiver/webworker.py): slow clients hold sockets, never the workers.
# BACKSTOP_WEB_WORKER_CLASS=sync brings back the old model (measurement only: sync workers
# need a buffering proxy in front).
_model = webworker.model()
worker_class = _model["worker_class"]
threads = _model["threads"]
worker_connections = _model["worker_connections"]
# With threads, `timeout` only guards each worker's event loop, not a request: what requests
# wait on, Redis, has its own socket timeout (BACKSTOP_REDIS_TIMEOUT), and a slow client is
# bounded by the read deadlines (BACKSTOP_HEADER_TIMEOUT, BACKSTOP_BODY_TIMEOUT).
timeout = 30
graceful_timeout = 20
keepalive = 5
# Gunicorn's runtime control socket (gunicornc: worker counts, reload, shutdown) is not used.
control_socket_disable = True
# Backstop logs one JSON line per webhook itself; gunicorn's access log would repeat it.
accesslog = None
errorlog = "-"
# Bound header size and count: webhooks carry their data in the body.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190


# Gunicorn reads this file before the app exists: the one format setting, read here too.
_log_format = FORMATTERS[os.environ.get("BACKSTOP_LOG_FORMAT", "json")]


class JsonLogger(Logger):
    """Gunicorn's own lines (start, workers booted and lost) in Backstop's format.

    Not logconfig_dict: setting that turns gunicorn's access log on, one more line per
    request that would repeat Backstop's own webhook line.
    """

    def setup(self, cfg):
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(_log_format())


logger_class = JsonLogger


def on_starting(server):
    """Start each run with an empty metrics directory so old workers' files do not count."""
    for name in os.listdir(_metrics_dir):
        if name.endswith(".db"):
            os.unlink(os.path.join(_metrics_dir, name))


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the aggregated metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Warm the worker up (receiver.app.warm_up), then move the app's long-lived objects
    out of the garbage collector's way: without this, full collections walk them again and
    again while pages build thousands of short-lived records (measured: p95 of the
    dashboard overview 47 ms -> 21 ms, bench/dashboard.py)."""
    import gc

    from receiver.app import warm_up

    warm_up(worker.wsgi)
    gc.collect()
    gc.freeze()
