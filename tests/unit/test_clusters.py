"""The `clusters:` policy block (validation, warnings) and core.clusters.Clusters (which
cluster is guarded, how each is reached, one cached client per cluster)."""

import threading

import pytest
import yaml

from cli.main import main
from config.policy import Policy, PolicyError, load_policy
from config.settings import Settings
from core.clusters import Clusters, UnknownCluster
from core.errors import PermanentError

TWO = {
    "cluster": "eu",
    "clusters": {
        "eu": {"in_cluster": True},
        "us": {"context": "us-prod", "kubeconfig": "/etc/backstop/clusters/us"},
        "ap": {"context": "ap-prod"},
    },
}


def write(tmp_path, document: dict) -> str:
    """Write a policy file, keys in the given order; return its path."""
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def test_clusters_are_optional_and_default_to_the_local_one():
    policy = Policy()
    assert policy.clusters is None
    assert policy.guarded_clusters() == ("default",)
    assert Policy(cluster="prod").guarded_clusters() == ("prod",)


def test_a_clusters_block_lists_every_guarded_cluster(tmp_path):
    policy = load_policy(write(tmp_path, TWO))
    assert policy.guarded_clusters() == ("eu", "us", "ap")
    assert policy.clusters["eu"].in_cluster and policy.clusters["us"].context == "us-prod"
    assert policy.clusters["ap"].kubeconfig is None
    assert policy.warnings() == []


@pytest.mark.parametrize(
    ("clusters", "path", "message"),
    [
        ({"a": {"context": "a", "in_cluster": True}}, "clusters.a", "in_cluster: true takes no"),
        ({"a": {"in_cluster": True, "kubeconfig": "/k"}}, "clusters.a", "in_cluster: true takes"),
        ({"a": {}}, "clusters.a", "say how to reach the cluster"),
        ({"a": {"kubeconfig": "/k"}}, "clusters.a", "say how to reach the cluster"),
        ({"a": {"in_cluster": False}}, "clusters.a", "say how to reach the cluster"),
        ({"a": {"context": "a", "token": "x"}}, "clusters.a.token", "Extra inputs"),
        ({"a": {"context": ""}}, "clusters.a.context", "at least 1 character"),
        ({"a": {"in_cluster": "sometimes"}}, "clusters.a.in_cluster", "boolean"),
        ({"eu/west": {"context": "a"}}, "clusters.eu/west.[key]", "should match pattern"),
        ({}, "clusters", "at least 1 item"),
        (["a", "b"], "clusters", "valid dictionary"),
    ],
)
def test_bad_clusters_are_start_errors_naming_the_field(tmp_path, clusters, path, message):
    file = write(tmp_path, {"clusters": clusters})
    with pytest.raises(PolicyError) as caught:
        load_policy(file)
    [problem] = caught.value.problems
    assert (problem.path, message in problem.message) == (path, True), problem
    assert file in str(caught.value)


def test_check_config_refuses_a_bad_clusters_block(tmp_path, capsys):
    file = write(tmp_path, {"clusters": {"b": {"context": "b", "in_cluster": True}}})
    assert main(["check-config", file]) == 1
    assert "clusters.b: Value error, in_cluster: true takes no context" in capsys.readouterr().err


def test_warnings_for_a_default_cluster_outside_clusters_and_for_aliases(tmp_path, capsys):
    document = {
        "cluster": "default",
        "clusters": {"a": {"context": "x"}, "b": {"context": "x"}},
    }
    warnings = Policy.model_validate(document).warnings()
    assert warnings == [
        "clusters: a and b are reached the same way",
        "cluster: 'default' is not in clusters (a, b): alerts without a cluster label will "
        "be skipped as unknown_cluster",
    ]
    assert main(["check-config", write(tmp_path, document)]) == 0
    assert "unknown_cluster" in capsys.readouterr().err


# -- Clusters ----------------------------------------------------------------------------


class FakeApi:
    """Stands in for an ApiClient: remembers how it was made and whether it was closed."""

    def __init__(self, kubeconfig, context):
        self.made_with = (kubeconfig, context)
        self.closed = False

    def close(self):
        self.closed = True


@pytest.fixture
def connections():
    """A `connect` seam for Clusters that records every call."""
    calls = []

    def connect(kubeconfig, context):
        calls.append((kubeconfig, context))
        return FakeApi(kubeconfig, context)

    connect.calls = calls
    return connect


def settings(**values) -> Settings:
    return Settings(**{"kubeconfig": None, "kube_context": None, **values})


def test_without_clusters_the_local_cluster_is_reached_as_before(connections):
    clusters = Clusters(
        Policy(), settings(kubeconfig="/k", kube_context="ctx"), connect=connections
    )
    assert clusters.names == ("default",) and clusters.known("default")
    assert clusters.api("default").made_with == ("/k", "ctx")
    with pytest.raises(UnknownCluster, match="unknown_cluster: cluster 'other' is not configured"):
        clusters.api("other")
    assert connections.calls == [("/k", "ctx")]


def test_each_cluster_is_reached_its_own_way_once(connections):
    policy = Policy.model_validate(TWO)
    clusters = Clusters(policy, settings(kubeconfig="/env-kubeconfig"), connect=connections)
    assert clusters.api("eu").made_with == (None, None)  # in-cluster
    assert clusters.api("us").made_with == ("/etc/backstop/clusters/us", "us-prod")
    assert clusters.api("ap").made_with == ("/env-kubeconfig", "ap-prod")  # KUBECONFIG
    assert clusters.api("us") is clusters.api("us")
    assert len(connections.calls) == 3
    made = [clusters.api(name) for name in clusters.names]
    clusters.close()
    assert all(api.closed for api in made)
    assert clusters.api("eu") is not made[0]  # closed clients are not handed out again


def test_a_context_without_any_kubeconfig_is_a_permanent_error(connections):
    clusters = Clusters(Policy.model_validate(TWO), settings(), connect=connections)
    with pytest.raises(PermanentError, match="cluster 'ap': context 'ap-prod' needs a kubeconfig"):
        clusters.api("ap")
    assert connections.calls == []


def test_a_cluster_is_connected_once_even_when_asked_concurrently(connections):
    clusters = Clusters(Policy.model_validate(TWO), settings(), connect=connections)
    start = threading.Barrier(8)

    def ask():
        start.wait()
        clusters.api("us")

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert connections.calls == [("/etc/backstop/clusters/us", "us-prod")]


def test_connection_failures_name_the_cluster():
    def refuse(kubeconfig, context):
        raise PermanentError("Kubernetes client configuration: no such context")

    clusters = Clusters(Policy.model_validate(TWO), settings(), connect=refuse)
    with pytest.raises(PermanentError, match="cluster 'us': Kubernetes client configuration"):
        clusters.kube("us")
