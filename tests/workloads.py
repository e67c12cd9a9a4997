"""Workloads and a per-namespace Backstop stack for tests on the real control plane."""

import time
from datetime import timedelta

import pytest
from kubernetes import client

from config.policy import Policy
from core import queues
from core.decisions import Engine
from core.integrations.kubernetes import Kube
from core.integrations.prometheus import Prometheus
from core.models import AlertEvent, Workload
from core.records import utcnow
from core.store import Store
from tests.conftest import wait_for
from workers.rollback import Executor
from workers.watcher import Watcher


def deployment(name: str, image: str, replicas: int = 2) -> dict:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "annotations": {"kubernetes.io/change-cause": f"ship {image}"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


def set_image(apps: client.AppsV1Api, namespace: str, name: str, image: str) -> None:
    apps.patch_namespaced_deployment(
        name,
        namespace,
        {
            "metadata": {"annotations": {"kubernetes.io/change-cause": f"ship {image}"}},
            "spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}},
        },
    )


def workload_body(name: str, image: str) -> dict:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
    }


FAST = {
    "mode": "enforce",
    "defaults": {
        "min_firing": "0s",
        "known_good_min_age": "0s",
        "rollout_timeout": "60s",
        "cooldown": "0s",
    },
}


class Stack:
    """One namespace's worth of Backstop: store, engine, executor, and the cluster's APIs."""

    def __init__(self, kube, namespace, redis_client, policy: dict):
        self.namespace = namespace
        self.policy = Policy.model_validate({**policy, "watch": {"namespaces": [namespace]}})
        self.api = kube.api_client()
        self.apps = client.AppsV1Api(self.api)
        self.kube = Kube(self.api)
        self.store = Store(redis_client, self.policy)
        self.redis = redis_client
        self.engine = Engine(self.store, self.policy, redis_client, utcnow)
        self.watcher = Watcher(self.kube, self.store, self.policy, utcnow)

    def executor(self, kube: Kube | None = None, prometheus: Prometheus | None = None):
        return Executor(
            store=self.store,
            policy=self.policy,
            kube=kube or self.kube,
            prometheus=prometheus,
            connection=self.redis,
            clock=utcnow,
            sleep=lambda s: time.sleep(min(s, 0.5)),
        )

    def record_history(self, kind: str) -> None:
        self.watcher.sync(kind, self.namespace)

    def alert(self, workload: Workload, name: str = "High5xx"):
        """A kill-switch alert about `workload`, decided by the engine."""
        labels = {
            "alertname": name,
            "namespace": workload.namespace,
            workload.kind.lower(): workload.name,
            "backstop_rollback": "true",
        }
        event = AlertEvent(
            source="alertmanager",
            fingerprint=f"{name}-{workload.name}",
            status="firing",
            labels=labels,
            annotations={},
            starts_at=utcnow() - timedelta(seconds=1),
        )
        self.store.episodes.record_notifications([event], now=utcnow())
        return self.engine.on_firing(
            episode_id=event.episode_id, labels=labels, starts_at=event.starts_at
        )

    def roll_back(self, decision, executor: Executor | None = None, mode="enforce"):
        workload = decision.workload.workload()
        bad = decision.rollout.revision
        return (executor or self.executor()).run(
            queues.RollbackRequest.new(
                decision_id=decision.id, workload=workload, bad_revision=bad, mode=mode
            )
        )

    def revision(self, name: str) -> str | None:
        """The Deployment's revision, or None until the controller has numbered it (a
        Deployment an owner's stand-in just created has no annotation yet)."""
        obj = self.apps.read_namespaced_deployment(name, self.namespace)
        return (obj.metadata.annotations or {}).get("deployment.kubernetes.io/revision")

    def image(self, name: str) -> str:
        obj = self.apps.read_namespaced_deployment(name, self.namespace)
        return obj.spec.template.spec.containers[0].image


@pytest.fixture
def make_stack(kube, kube_namespace, redis_client):
    stacks = []

    def build(policy=None) -> Stack:
        stack = Stack(kube, kube_namespace, redis_client, policy or FAST)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.api.close()


def bad_release(
    stack: Stack, name="checkout", template_annotations=None, marks: dict | None = None
) -> Workload:
    """A Deployment at revision 1, healthy, then a bad revision 2, both recorded. `marks`
    ({"labels": ..., "annotations": ...}) go on the Deployment's own metadata, as an owner
    (Argo CD, Flux, Helm) leaves them."""
    body = deployment(name, f"shop/{name}:1")
    for field, values in (marks or {}).items():
        body["metadata"].setdefault(field, {}).update(values)
    if template_annotations:
        body["spec"]["template"]["metadata"]["annotations"] = template_annotations[0]
    stack.apps.create_namespaced_deployment(stack.namespace, body)
    workload = Workload("default", stack.namespace, "Deployment", name)
    wait_for(
        lambda: (
            stack.apps.read_namespaced_deployment(name, stack.namespace).status.available_replicas
            == 2
        ),
        message="revision 1 available",
    )
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": name, "image": f"shop/{name}:2"}]}}}
    }
    if template_annotations:
        patch["spec"]["template"]["metadata"] = {"annotations": template_annotations[1]}
    stack.apps.patch_namespaced_deployment(name, stack.namespace, patch)
    wait_for(lambda: stack.revision(name) == "2", message="revision 2")
    stack.record_history("Deployment")
    return workload
