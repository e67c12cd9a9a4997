"""A rollback on the real control plane records what changed from the target revision to
the bad one, from their ReplicaSets, in its evidence: and the ConfigMaps and Secrets they
name, each ConfigMap with its resourceVersion read from the API server."""

import time

import pytest
from kubernetes import client

from core.models import Workload
from tests.conftest import wait_for
from tests.workloads import bad_release, deployment, set_image

pytestmark = pytest.mark.integration


def test_the_evidence_says_what_changed_from_the_target_to_the_bad_revision(make_stack):
    stack = make_stack()
    workload = bad_release(stack)
    rollback = stack.roll_back(stack.alert(workload))
    assert rollback.status == "verified", rollback.reason
    changes = stack.store.rollbacks.evidence(rollback.id)["changes"]
    image = [c for c in changes["changes"] if c["field"] == "image"]
    assert image == [
        {
            "where": "container checkout",
            "field": "image",
            "before": "shop/checkout:1",
            "after": "shop/checkout:2",
        }
    ]
    assert changes["more"] == 0


def test_a_configmap_written_after_the_bad_rollout_began_is_a_change(make_stack):
    """The bad revision mounts a ConfigMap and reads a Secret: both are listed by name; the
    ConfigMap, written again after the bad rollout began, with its resourceVersion."""
    stack = make_stack()
    core = client.CoreV1Api(stack.api)
    config = {"metadata": {"name": "checkout-config"}, "data": {"mode": "calm"}}
    core.create_namespaced_config_map(stack.namespace, config)
    body = deployment("checkout", "shop/checkout:1")
    pod = body["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "config", "configMap": {"name": "checkout-config"}}]
    pod["containers"][0]["envFrom"] = [{"secretRef": {"name": "checkout-db"}}]
    stack.apps.create_namespaced_deployment(stack.namespace, body)
    wait_for(
        lambda: (
            stack.apps.read_namespaced_deployment(
                "checkout", stack.namespace
            ).status.available_replicas
            == 2
        ),
        message="revision 1 available",
    )
    set_image(stack.apps, stack.namespace, "checkout", "shop/checkout:2")
    wait_for(lambda: stack.revision("checkout") == "2", message="revision 2")
    stack.record_history("Deployment")
    # The API server's times are whole seconds: write in the second after the rollout's.
    # Another writer (kubectl edit) adds a key: that stamps a new managedFields entry.
    time.sleep(1.1 - time.time() % 1)
    written = core.patch_namespaced_config_map(
        "checkout-config",
        stack.namespace,
        {"data": {"mode": "hasty", "retries": "0"}},
        field_manager="kubectl-edit",
    )
    workload = Workload("default", stack.namespace, "Deployment", "checkout")
    rollback = stack.roll_back(stack.alert(workload))
    assert rollback.status == "verified", rollback.reason
    changes = stack.store.rollbacks.evidence(rollback.id)["changes"]
    [config_map, secret] = changes["configs"]
    assert secret == {"kind": "Secret", "name": "checkout-db", "used_by": "both"}
    assert config_map["name"] == "checkout-config" and config_map["used_by"] == "both"
    assert config_map["resource_version"] == written.metadata.resource_version
    assert config_map["since_rollout"] == "changed_after", config_map
    [row] = [c for c in changes["changes"] if c["where"] == "ConfigMap checkout-config"]
    assert row["field"] == "changed after the bad rollout began"
    assert f"resourceVersion {written.metadata.resource_version}" in row["after"]
    assert "hasty" not in str(changes) and "calm" not in str(changes)
