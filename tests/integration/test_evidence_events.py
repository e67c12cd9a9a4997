"""Evidence's events on the real API server: one request for a quiet namespace, one
field-selected request per object in a busy one, the same events either way (the newest,
oldest first, ties in the API server's order)."""

from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client

from core.integrations.kubernetes import Kube
from workers import evidence

pytestmark = pytest.mark.integration

ABOUT = ["web", "web-5d9f", "web-5d9f-abcde"]  # the workload, its bad ReplicaSet, a pod
START = datetime(2026, 1, 1, tzinfo=UTC)


def make_events(api: client.ApiClient, namespace: str) -> None:
    """Events about the three objects and about others; some at the same second."""
    core = client.CoreV1Api(api)
    plan = [
        ("web", 5, "ScalingReplicaSet"),
        ("web-5d9f", 5, "SuccessfulCreate"),  # same time as the one above
        ("web-5d9f-abcde", 7, "BackOff"),
        ("web-5d9f-abcde", 2, "Pulled"),
        ("other", 6, "Noise"),
        ("web-old", 8, "Noise"),  # a name that only starts like one of ours
        ("web", 9, "ScalingReplicaSet"),
        ("web-5d9f", 1, "SuccessfulDelete"),
    ]
    for index, (name, second, reason) in enumerate(plan):
        stamp = (START + timedelta(seconds=second)).isoformat().replace("+00:00", "Z")
        core.create_namespaced_event(
            namespace,
            {
                "metadata": {"name": f"{name}.{index:04d}"},
                "involvedObject": {"kind": "Pod", "name": name, "namespace": namespace},
                "reason": reason,
                "message": f"{reason} for {name}",
                "type": "Normal",
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            },
        )


def expected(api: client.ApiClient, namespace: str, limit: int) -> list[str]:
    """The names of what a list of the whole namespace, filtered and sorted, gives."""
    items = client.CoreV1Api(api).list_namespaced_event(namespace).items
    chosen = [e for e in items if e.involved_object.name in ABOUT]
    chosen.sort(key=lambda e: (e.last_timestamp, e.metadata.name))
    return [e.metadata.name for e in chosen][-limit:]


@pytest.mark.parametrize("limit", [50, 3])
def test_the_same_events_whether_the_namespace_is_quiet_or_busy(
    kube, kube_namespace, monkeypatch, limit
):
    monkeypatch.setattr(evidence, "MAX_EVENTS", limit)
    with kube.api_client() as api:
        make_events(api, kube_namespace)
        want = expected(api, kube_namespace, limit)
        cluster = Kube(api)
        quiet = evidence._events(cluster, kube_namespace, ABOUT)  # one page holds all 8
        monkeypatch.setattr(evidence, "EVENT_PAGE", 2)  # now "busy": one request per object
        busy = evidence._events(cluster, kube_namespace, ABOUT)
    assert [e["metadata"]["name"] for e in quiet] == want
    assert [e["metadata"]["name"] for e in busy] == want
    assert len(want) == min(limit, 6)


def test_a_busy_namespace_is_asked_per_object(kube, kube_namespace, monkeypatch):
    asked = []
    with kube.api_client() as api:
        make_events(api, kube_namespace)
        cluster = Kube(api)
        real = cluster.events_about
        monkeypatch.setattr(cluster, "events_about", lambda ns, n: asked.append(n) or real(ns, n))
        evidence._events(cluster, kube_namespace, ABOUT)
        assert asked == []  # eight events fit in one page
        monkeypatch.setattr(evidence, "EVENT_PAGE", 7)
        evidence._events(cluster, kube_namespace, [*ABOUT, "web"])
    assert asked == ABOUT  # each object once


def test_a_busy_namespaces_events_are_read_after_the_revert(make_stack, monkeypatch):
    """Per-object requests cost the API server a read of every event in the namespace, so
    in a busy one they wait until the PATCH is sent; the evidence has them all the same."""
    from tests.workloads import FAST, bad_release

    stack = make_stack(FAST)
    workload = bad_release(stack)
    monkeypatch.setattr(evidence, "EVENT_PAGE", 1)  # every namespace is busy now
    asked_at = []
    real = stack.kube.events_about

    def about(namespace, name):
        asked_at.append(stack.image("checkout"))
        return real(namespace, name)

    monkeypatch.setattr(stack.kube, "events_about", about)
    rollback = stack.roll_back(stack.alert(workload))
    assert rollback.status == "verified", rollback.reason
    assert rollback.step("evidence").detail.endswith("events after the revert")
    assert asked_at and set(asked_at) == {"shop/checkout:1"}  # asked once reverted
    saved = stack.store.rollbacks.evidence(rollback.id)
    assert "events_pending" not in saved
    assert "Deployment/checkout" in {e["object"] for e in saved["events"]}
