"""What an RQ worker prepares once for the work horses it forks: parsed kubeconfigs
(reused while the file is unchanged), the client's argument validators, the Redis client's
driver info, settings and the policy (parsed again when its file changes). Nothing here
opens a connection; the worker itself is exercised in
tests/integration/test_worker_policy_reload.py."""

import pytest
import redis
import yaml

from config.policy import Policy, PolicyError
from config.settings import Settings
from core.clusters import Clusters
from core.errors import PermanentError
from core.integrations import kubeconfig as client_config
from workers import context
from workers.worker import _driver_info_once


def kubeconfig(path, server: str = "https://127.0.0.1:6443") -> str:
    """A kubeconfig with one token user (never used to connect here)."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_a_kubeconfig_is_parsed_once_while_its_file_is_unchanged(tmp_path):
    path = kubeconfig(tmp_path / "kubeconfig")
    first = client_config.configuration(path, None)
    assert client_config.configuration(path, None) is first
    one, two = client_config.api_client(path), client_config.api_client(path)
    assert one is not two  # each client has its own connection pool ...
    assert one.configuration is two.configuration is first  # ... over one parsed config
    assert first.host == "https://127.0.0.1:6443"
    assert isinstance(first.retries, client_config.BoundedRetry)  # R3's retry policy is kept
    assert first.connection_pool_maxsize >= client_config.CONCURRENT_REQUESTS


def test_a_changed_kubeconfig_is_parsed_again(tmp_path):
    path = kubeconfig(tmp_path / "kubeconfig")
    first = client_config.configuration(path, None)
    kubeconfig(tmp_path / "kubeconfig", server="https://127.0.0.1:7443")
    again = client_config.configuration(path, None)
    assert again is not first and again.host == "https://127.0.0.1:7443"


def test_a_kubeconfig_is_parsed_again_once_it_aged(tmp_path, monkeypatch):
    path = kubeconfig(tmp_path / "kubeconfig")
    first = client_config.configuration(path, None)
    monkeypatch.setattr(client_config, "CONFIGURATION_MAX_AGE", 0.0)
    assert client_config.configuration(path, None) is not first


def test_a_missing_kubeconfig_is_a_permanent_error_every_time(tmp_path):
    for _ in range(2):
        with pytest.raises(PermanentError, match="Kubernetes client configuration"):
            client_config.configuration(str(tmp_path / "missing"), None)


def test_every_client_method_backstop_calls_has_its_validator_built_ahead():
    assert client_config.warm_validators() == len(client_config.CALLED)


def test_clusters_prepare_parses_each_kubeconfig_and_tolerates_a_broken_one(tmp_path):
    good = kubeconfig(tmp_path / "good")
    policy = Policy.model_validate(
        {
            "cluster": "a",
            "clusters": {
                "a": {"context": "x", "kubeconfig": good},
                "b": {"context": "x", "kubeconfig": str(tmp_path / "missing")},
            },
        }
    )
    clusters = Clusters(policy, Settings(kubeconfig=None))
    clusters.prepare()  # "b" cannot be configured: left for its first use to report
    assert client_config.configuration(good, "x") is clusters.api("a").configuration
    with pytest.raises(PermanentError, match="cluster 'b'"):
        clusters.api("b")


def test_the_redis_driver_info_is_resolved_once_for_every_connection():
    client = redis.Redis.from_url("redis://127.0.0.1:1/0")
    _driver_info_once(client)
    info = client.connection_pool.connection_kwargs["driver_info"]
    assert info.lib_version == redis.__version__ and info.formatted_name == "redis-py"
    assert client.connection_pool.make_connection().driver_info is info
    client.connection_pool.connection_kwargs["driver_info"] = None  # someone chose none
    _driver_info_once(client)
    assert client.connection_pool.connection_kwargs["driver_info"] is None


@pytest.fixture
def prepared(monkeypatch, tmp_path):
    """A worker's preparation on a policy file in tmp_path; undone afterwards. No Redis
    command is sent, so the URL need not reach a server."""
    redis_url = "redis://127.0.0.1:1/0"
    policy = tmp_path / "policy.yaml"
    policy.write_text("mode: enforce\ncluster: alpha\n")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BACKSTOP_CONFIG", str(policy))
    monkeypatch.setenv("KUBECONFIG", kubeconfig(tmp_path / "kubeconfig"))
    connection = redis.Redis.from_url(redis_url)
    # Recorded now, while it is None: monkeypatch puts back what it saw at this call, so
    # later tests (in this process) never build their context from this preparation.
    monkeypatch.setattr(context, "_prepared", None)
    context.process_context.cache_clear()
    context.prepare_worker(connection)
    yield policy, connection
    context.process_context.cache_clear()
    connection.close()


def next_job_context() -> context.Context:
    """What the next work horse builds: the worker refreshes before the fork, then the
    horse (a fresh process, here a cleared cache) builds its context."""
    context.refresh_prepared()
    context.process_context.cache_clear()
    return context.process_context()


def test_a_work_horse_uses_what_its_worker_prepared(prepared):
    _, connection = prepared
    found = next_job_context()
    assert found.connection is connection  # no second Redis client in the horse
    assert found.policy.cluster == "alpha"
    assert found.policy is next_job_context().policy  # unchanged file: not parsed again


def test_a_changed_policy_file_applies_to_the_next_job(prepared):
    policy, _ = prepared
    assert next_job_context().policy.cluster == "alpha"
    policy.write_text("mode: enforce\ncluster: gamma\n")
    assert next_job_context().policy.cluster == "gamma"


def test_a_broken_policy_file_fails_the_job_not_the_worker(prepared):
    policy, _ = prepared
    policy.write_text("mode: [not, a, mode]\n")
    context.refresh_prepared()  # in the worker, before the fork: must not raise
    context.process_context.cache_clear()
    with pytest.raises(PolicyError):
        context.process_context()
    policy.write_text("mode: enforce\ncluster: delta\n")
    assert next_job_context().policy.cluster == "delta"
