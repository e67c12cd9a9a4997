"""The test control plane behaves like a cluster: rollouts, stalled rollouts, revisions, RBAC."""

from __future__ import annotations

import pytest
from kubernetes import client

from testbed.kube.procs import wait_until

pytestmark = pytest.mark.integration

REVISION = "deployment.kubernetes.io/revision"
TIMEOUT = 30.0
# How long a stalled rollout must stay stalled: several pod-helper polling rounds.
STALL_SECONDS = 3.0


def labels_for(name: str) -> dict:
    return {"app": name}


def pod_template(name: str, image: str) -> dict:
    return {
        "metadata": {"labels": labels_for(name)},
        "spec": {"containers": [{"name": name, "image": image}]},
    }


def deployment(name: str, image: str, replicas: int = 3) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels_for(name)},
            "template": pod_template(name, image),
        },
    }


def image_patch(name: str, image: str) -> dict:
    """A strategic-merge patch changing the image of the container called name."""
    return {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}


def set_image(apps: client.AppsV1Api, namespace: str, name: str, image: str) -> None:
    apps.patch_namespaced_deployment(name, namespace, image_patch(name, image))


def rollout_complete(apps: client.AppsV1Api, namespace: str, name: str) -> bool:
    """The `kubectl rollout status` rule from DESIGN §5."""
    dep = apps.read_namespaced_deployment(name, namespace)
    status = dep.status
    return (
        (status.observed_generation or 0) >= dep.metadata.generation
        and (status.updated_replicas or 0) == dep.spec.replicas
        and (status.replicas or 0) == dep.spec.replicas
        and (status.available_replicas or 0) >= (status.updated_replicas or 0)
    )


def replica_sets(apps: client.AppsV1Api, namespace: str, name: str) -> dict:
    """The Deployment's ReplicaSets by revision annotation."""
    items = apps.list_namespaced_replica_set(namespace, label_selector=f"app={name}").items
    return {rs.metadata.annotations[REVISION]: rs for rs in items}


def pod_images(core: client.CoreV1Api, namespace: str, name: str) -> list[tuple[str, bool]]:
    """(image, ready) of each of the workload's pods."""
    result = []
    for pod in core.list_namespaced_pod(namespace, label_selector=f"app={name}").items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        result.append((pod.spec.containers[0].image, ready))
    return sorted(result)


def eventually(condition, message: str, timeout: float = TIMEOUT) -> None:
    assert wait_until(condition, timeout, interval=0.2), message


@pytest.fixture
def apis(kube):
    with kube.api_client() as api:
        yield client.AppsV1Api(api), client.CoreV1Api(api)


@pytest.fixture
def images(kube_namespace) -> tuple[str, str]:
    """Two versions of an image unique to this test, so holds never leak between tests."""
    return f"registry.test/{kube_namespace}/web:v1", f"registry.test/{kube_namespace}/web:v2"


def test_deployment_gets_revision_1_and_becomes_available(apis, kube_namespace, images):
    apps, core = apis
    apps.create_namespaced_deployment(kube_namespace, deployment("web", images[0]))

    eventually(lambda: rollout_complete(apps, kube_namespace, "web"), "rollout never completed")
    assert list(replica_sets(apps, kube_namespace, "web")) == ["1"]
    assert pod_images(core, kube_namespace, "web") == [(images[0], True)] * 3
    assert apps.read_namespaced_deployment("web", kube_namespace).status.available_replicas == 3


def test_image_update_creates_revision_2_and_scales_old_to_zero(apis, kube_namespace, images):
    apps, core = apis
    apps.create_namespaced_deployment(kube_namespace, deployment("web", images[0]))
    eventually(lambda: rollout_complete(apps, kube_namespace, "web"), "first rollout stuck")

    set_image(apps, kube_namespace, "web", images[1])

    eventually(
        lambda: (
            "2" in replica_sets(apps, kube_namespace, "web")
            and rollout_complete(apps, kube_namespace, "web")
        ),
        "second rollout stuck",
    )
    revisions = replica_sets(apps, kube_namespace, "web")
    assert sorted(revisions) == ["1", "2"]
    assert revisions["1"].spec.replicas == 0
    assert revisions["2"].spec.template.spec.containers[0].image == images[1]
    eventually(
        lambda: pod_images(core, kube_namespace, "web") == [(images[1], True)] * 3,
        "old pods were not removed",
    )


def test_held_unready_image_stalls_rollout_until_released(kube, apis, kube_namespace, images):
    apps, core = apis
    apps.create_namespaced_deployment(kube_namespace, deployment("web", images[0]))
    eventually(lambda: rollout_complete(apps, kube_namespace, "web"), "first rollout stuck")
    kube.hold_unready(images[1])
    try:
        set_image(apps, kube_namespace, "web", images[1])

        eventually(
            lambda: (images[1], False) in pod_images(core, kube_namespace, "web"),
            "no new pod was created",
        )
        assert not wait_until(lambda: rollout_complete(apps, kube_namespace, "web"), STALL_SECONDS)
        assert not replica_sets(apps, kube_namespace, "web")["2"].status.available_replicas
        assert pod_images(core, kube_namespace, "web").count((images[0], True)) == 3
    finally:
        kube.release(images[1])

    eventually(lambda: rollout_complete(apps, kube_namespace, "web"), "released rollout stuck")
    assert replica_sets(apps, kube_namespace, "web")["1"].spec.replicas == 0


def test_holding_a_running_image_makes_its_pods_unready(kube, apis, kube_namespace, images):
    apps, core = apis
    apps.create_namespaced_deployment(kube_namespace, deployment("web", images[0], replicas=2))
    eventually(lambda: rollout_complete(apps, kube_namespace, "web"), "rollout stuck")

    kube.hold_unready(images[0])
    try:
        eventually(
            lambda: pod_images(core, kube_namespace, "web") == [(images[0], False)] * 2,
            "held pods stayed ready",
            timeout=5,
        )
        eventually(
            lambda: (
                not apps.read_namespaced_deployment("web", kube_namespace).status.available_replicas
            ),
            "deployment stayed available",
        )
    finally:
        kube.release(images[0])

    eventually(
        lambda: pod_images(core, kube_namespace, "web") == [(images[0], True)] * 2,
        "released pods stayed unready",
        timeout=5,
    )


def controller_revisions(apps: client.AppsV1Api, namespace: str, name: str) -> dict[int, str]:
    """revision → image of a StatefulSet's or DaemonSet's ControllerRevisions."""
    items = apps.list_namespaced_controller_revision(namespace, label_selector=f"app={name}").items
    return {
        cr.revision: cr.data["spec"]["template"]["spec"]["containers"][0]["image"] for cr in items
    }


def statefulset_settled(apps: client.AppsV1Api, namespace: str, name: str) -> bool:
    """All replicas ready and on the update revision."""
    status = apps.read_namespaced_stateful_set(name, namespace).status
    return (
        status.ready_replicas == status.replicas == status.updated_replicas
        and status.current_revision == status.update_revision
    )


def test_statefulset_rolls_out_with_controller_revisions(apis, kube_namespace, images):
    apps, core = apis
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": labels_for("db")},
            "template": pod_template("db", images[0]),
        },
    }
    apps.create_namespaced_stateful_set(kube_namespace, body)
    eventually(
        lambda: pod_images(core, kube_namespace, "db") == [(images[0], True)] * 2,
        "statefulset pods never became ready",
    )
    assert controller_revisions(apps, kube_namespace, "db") == {1: images[0]}

    apps.patch_namespaced_stateful_set("db", kube_namespace, image_patch("db", images[1]))

    eventually(
        lambda: pod_images(core, kube_namespace, "db") == [(images[1], True)] * 2,
        "statefulset pods were not replaced",
    )
    eventually(lambda: statefulset_settled(apps, kube_namespace, "db"), "statefulset unsettled")
    assert controller_revisions(apps, kube_namespace, "db") == {1: images[0], 2: images[1]}


def test_daemonset_runs_on_the_helpers_node_and_rolls_out(apis, kube_namespace, images):
    apps, core = apis
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": labels_for("agent")},
            "template": pod_template("agent", images[0]),
        },
    }
    apps.create_namespaced_daemon_set(kube_namespace, body)
    eventually(
        lambda: pod_images(core, kube_namespace, "agent") == [(images[0], True)],
        "daemonset pod never became ready",
    )
    eventually(
        lambda: (
            apps.read_namespaced_daemon_set("agent", kube_namespace).status.number_available == 1
        ),
        "daemonset never available",
    )

    apps.patch_namespaced_daemon_set("agent", kube_namespace, image_patch("agent", images[1]))

    eventually(
        lambda: pod_images(core, kube_namespace, "agent") == [(images[1], True)],
        "daemonset pod was not replaced",
    )
    assert controller_revisions(apps, kube_namespace, "agent") == {1: images[0], 2: images[1]}


def grant_get_deployments(kube, namespace: str, subject: dict) -> None:
    """Bind a Role allowing only `get` on deployments to subject."""
    with kube.api_client() as api:
        rbac = client.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "get-deployments"},
                "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": f"get-deployments-{subject['name']}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "get-deployments",
                },
                "subjects": [subject],
            },
        )


def assert_get_allowed_patch_forbidden(kube, token: str, namespace: str) -> None:
    with kube.api_client(token=token) as api:
        apps = client.AppsV1Api(api)
        eventually(lambda: _can_get(apps, namespace), "get was not allowed", timeout=5)
        with pytest.raises(client.ApiException) as denied:
            apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 1}})
        assert denied.value.status == 403


def _can_get(apps: client.AppsV1Api, namespace: str) -> bool:
    """RBAC bindings reach the authorizer's cache shortly after they are created."""
    try:
        return apps.read_namespaced_deployment("web", namespace).metadata.name == "web"
    except client.ApiException as error:
        if error.status == 403:
            return False
        raise


def test_static_token_user_gets_only_what_its_role_allows(kube, apis, kube_namespace, images):
    apps, _ = apis
    apps.create_namespaced_deployment(kube_namespace, deployment("web", images[0]))
    token = kube.add_token("least-privileged-worker", groups=("backstop:workers",))
    grant_get_deployments(
        kube,
        kube_namespace,
        {
            "kind": "User",
            "name": "least-privileged-worker",
            "apiGroup": "rbac.authorization.k8s.io",
        },
    )

    assert_get_allowed_patch_forbidden(kube, token, kube_namespace)


def test_service_account_token_gets_only_what_its_role_allows(kube, apis, kube_namespace, images):
    apps, _ = apis
    apps.create_namespaced_deployment(kube_namespace, deployment("web", images[0]))
    token = kube.service_account_token(kube_namespace, "worker")
    grant_get_deployments(
        kube,
        kube_namespace,
        {"kind": "ServiceAccount", "name": "worker", "namespace": kube_namespace},
    )

    assert_get_allowed_patch_forbidden(kube, token, kube_namespace)
    with kube.api_client(token=token) as api, pytest.raises(client.ApiException) as denied:
        client.AppsV1Api(api).list_namespaced_deployment(kube_namespace)
    assert denied.value.status == 403
