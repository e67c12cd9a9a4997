"""Shared fixtures: a real redis-server for the session, a clean database per test."""

import pytest
import redis

from cli.localredis import LocalRedis
from config.policy import Policy
from config.settings import Settings
from core.intake import close_all
from receiver.app import create_app
from tests.secrets import API_TOKEN, WEBHOOK_TOKEN

# The real Kubernetes control plane (`kube`), Backstop stacks on it (`make_stack`), and a
# real Prometheus scraping a settable exporter (`prometheus`, `exporter`).
pytest_plugins = [
    "tests.kube_fixtures",
    "tests.workloads",
    "tests.prometheus_fixtures",
    "tests.doubles_fixtures",  # Jira and PagerDuty doubles: `jira_server`, `pagerduty_server`
    "tests.gitops_fixtures",  # Argo CD, Flux and Helm stand-ins: `gitops`, `git_repo`
    "tests.logscan",  # after the run: no secret of tests/secrets.py in any log (R6)
]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the whole run, stopped by pid at the end. It has a
    password, as every LocalRedis does: every test talks to an authenticated Redis."""
    server = LocalRedis(tmp_path_factory.mktemp("redis"), persist=False).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The server's URL, with every key flushed before the test."""
    client = redis.Redis.from_url(redis_server.url)
    # Repeats an earlier test's app still holds are recorded now, not into this test's data.
    close_all()
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url):
    """A client on the clean test database."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_settings(redis_url):
    """Build Settings for the test Redis with test credentials; keyword overrides."""

    def build(**overrides) -> Settings:
        values = {"redis_url": redis_url, "webhook_token": WEBHOOK_TOKEN, "api_token": API_TOKEN}
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def app(make_settings):
    """The receiver app on the test Redis with the default policy."""
    return create_app(make_settings(), policy=Policy())


@pytest.fixture
def client(app):
    """A Flask test client."""
    return app.test_client()


@pytest.fixture
def webhook_headers():
    """Headers of an authenticated webhook delivery."""
    return {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


@pytest.fixture
def api_headers():
    """Headers of an authenticated API call."""
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Tests never pick up Backstop settings from the machine's environment."""
    import os

    for name in list(os.environ):
        if name.startswith("BACKSTOP_") or name == "REDIS_URL":
            monkeypatch.delenv(name)


def wait_for(condition, *, timeout: float = 30.0, interval: float = 0.1, message: str = ""):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    from testbed.processes import poll

    try:
        return poll(condition, timeout=timeout, interval=interval)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout}s waiting for {message or condition}")


@pytest.fixture
def receiver_env(tmp_path):
    """Environment for a receiver under gunicorn: credentials, policy, metrics dir."""
    from pathlib import Path

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    return {
        "BACKSTOP_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "BACKSTOP_API_TOKEN": API_TOKEN,
        "BACKSTOP_CONFIG": str(Path(__file__).resolve().parent.parent / "config/backstop.yaml"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }


@pytest.fixture
def receiver_server(redis_url, receiver_env, tmp_path):
    """The real receiver under gunicorn with 3 workers on the test Redis."""
    from testbed.servers import Gunicorn

    env = {**receiver_env, "REDIS_URL": redis_url}
    with Gunicorn(
        "receiver.app:create_app()", env, workers=3, log=tmp_path / "gunicorn.log"
    ) as server:
        yield server


@pytest.fixture
def users_file(tmp_path):
    """A dashboard users file: alice (operator) and victor (viewer), with the passwords of
    tests/secrets.py DASHBOARD_PASSWORDS."""
    from werkzeug.security import generate_password_hash

    from tests.secrets import DASHBOARD_PASSWORDS

    path = tmp_path / "users.yaml"
    lines = ["users:"]
    for name, role in (("alice", "operator"), ("victor", "viewer")):
        hashed = generate_password_hash(DASHBOARD_PASSWORDS[name])
        lines += [f"  - name: {name}", f"    role: {role}", f"    password_hash: '{hashed}'"]
    path.write_text("\n".join(lines) + "\n")
    return path
