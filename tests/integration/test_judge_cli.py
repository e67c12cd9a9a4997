"""`backstop judge` as a pipeline runs it: the installed command in its own process, the
revisions' pod hashes from the real test cluster's ReplicaSets (through KUBECONFIG, as the
worker reaches it), the samples from a real Prometheus. Exit 1 and the table when the new
revision is worse; the record with --json; 2 and one line for a revision the cluster lacks."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.conftest import wait_for
from tests.workloads import deployment, set_image

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REVISION = "deployment.kubernetes.io/revision"
POLICY = {
    "services": [
        {
            "name": "checkout",
            "match": {"deployment": "checkout"},
            "judgment": {
                "window": "8s",
                "step": "1s",
                "kpis": [
                    {
                        "name": "errors",
                        "query": 'backstop_test_errors{pod_template_hash="$hash"}',
                        "min_samples": 3,
                    }
                ],
            },
        }
    ]
}


def pod_hashes(apps: client.AppsV1Api, namespace: str) -> dict[str, str]:
    """Revision -> pod-template-hash of checkout's ReplicaSets."""
    found = {}
    for replica_set in apps.list_namespaced_replica_set(namespace).items:
        revision = (replica_set.metadata.annotations or {}).get(REVISION)
        if revision:
            found[revision] = replica_set.metadata.labels["pod-template-hash"]
    return found


def test_backstop_judge_on_the_cluster_and_prometheus(
    kube, kube_namespace, prometheus, exporter, tmp_path
):
    with kube.api_client() as api:
        apps = client.AppsV1Api(api)
        apps.create_namespaced_deployment(kube_namespace, deployment("checkout", "shop:1"))
        wait_for(lambda: pod_hashes(apps, kube_namespace).get("1"), message="revision 1")
        set_image(apps, kube_namespace, "checkout", "shop:2")
        wait_for(lambda: pod_hashes(apps, kube_namespace).get("2"), message="revision 2")
        hashes = pod_hashes(apps, kube_namespace)
    # Revision 2's pods fail 5 % of requests, revision 1's 0.2 %, side by side.
    exporter.set("backstop_test_errors", 0.05, pod_template_hash=hashes["2"])
    exporter.set("backstop_test_errors", 0.002, pod_template_hash=hashes["1"])
    old = f'backstop_test_errors{{pod_template_hash="{hashes["1"]}"}}'
    prometheus.wait_for_value(old, lambda v: v == 0.002)
    time.sleep(9)  # a window's worth of points on both sides

    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "BACKSTOP_CONFIG": str(policy)}
    env.pop("PROMETHEUS_URL", None)

    def backstop_judge(*argv: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "cli.main", "judge"]
        command += [f"--workload={kube_namespace}/Deployment/checkout", *argv]
        command += [f"--prometheus={prometheus.url}"]
        return subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )

    shown = backstop_judge("--revision=2")
    assert shown.returncode == 1, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(
        f"default/{kube_namespace}/Deployment/checkout: revision 2 against 1: confirmed"
    )
    assert lines[1].split()[:3] == ["KPI", "VERDICT", "HOW"]
    assert lines[2].split()[:3] == ["errors", "confirmed", "side_by_side"]

    recorded = backstop_judge("--revision=2", "--json")
    assert recorded.returncode == 1, recorded.stderr
    record = json.loads(recorded.stdout)
    assert (record["verdict"], record["against"]) == ("confirmed", "1")
    (kpi,) = record["kpis"]
    assert kpi["queries"]["new"] == f'backstop_test_errors{{pod_template_hash="{hashes["2"]}"}}'
    assert kpi["n_new"] >= 3 and kpi["n_old"] >= 3

    unknown = backstop_judge("--revision=5")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.splitlines() == [
        f"judge: default/{kube_namespace}/Deployment/checkout has no revision 5 in the cluster"
    ]
