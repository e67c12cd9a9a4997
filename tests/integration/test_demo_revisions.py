"""The demo service's data as a per-revision judgment needs it, on the real control plane
scraped by a real Prometheus: a revision's pods told from another's by `pod_template_hash`,
client segments split by weight and failing alone, and seeded noise that scatters from
window to window around the configured ratio."""

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from gameday.demo import SERVICE_LABEL, DemoProcess
from testbed.prometheus import PrometheusServer
from tests.conftest import wait_for
from tests.integration.test_demo_service import (
    LOW,
    Demo,
    error_ratio,
    post_control,
    requests_per_second,
)

pytestmark = pytest.mark.integration

SEGMENTS = {"ios": 0.3, "android": 0.3, "web": 0.4}
FAULT = {"deployment": "checkout", "error_ratio": 0.5, "seconds": 5}


@pytest.fixture
def start_demo(kube, kube_namespace, tmp_path):
    """Start a demo service with DemoProcess's options, a Prometheus scraping it, and the
    cluster's APIs; all stopped at the end."""
    with contextlib.ExitStack() as stack:

        def start(**options) -> Demo:
            process = DemoProcess(kube.kubeconfig, kube_namespace, tmp_path / "demo", **options)
            stack.enter_context(process)
            prometheus = PrometheusServer(tmp_path / "prometheus", [process.address])
            stack.enter_context(prometheus)
            api = stack.enter_context(kube.api_client())
            apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
            return Demo(process, prometheus, apps, core, kube_namespace)

        yield start


def by_label(demo: Demo, expr: str, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in demo.prometheus.client.query(expr=expr)}


def test_a_paused_rollouts_two_revisions_are_told_apart_by_their_hash(kube, start_demo):
    """One Deployment, two ReplicaSets serving side by side (a rollout paused after its
    first new pod): the same `deployment`, each revision its own series by hash."""
    demo = start_demo()
    stable, canary = "demo/checkout:1.0.0", f"demo/checkout:{uuid.uuid4().hex[:8]}-errors"
    body = {
        "metadata": {"name": "checkout"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "checkout"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "checkout", SERVICE_LABEL: "checkout"}},
                "spec": {"containers": [{"name": "app", "image": stable}]},
            },
        },
    }
    demo.apps.create_namespaced_deployment(demo.namespace, body)
    demo.wait_ready("checkout", stable, 4)

    # The new revision's first pod is created unready; the rollout is paused before it is
    # let become Ready, so 4 old pods and 1 new one serve from then on.
    kube.hold_unready(canary)
    try:
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": canary}]}}}}
        demo.apps.patch_namespaced_deployment("checkout", demo.namespace, patch)
        wait_for(lambda: len(pods(demo, canary)) == 1, message="the new revision's first pod")
        demo.apps.patch_namespaced_deployment(
            "checkout", demo.namespace, {"spec": {"paused": True}}
        )
    finally:
        kube.release(canary)
    wait_for(
        lambda: (
            [ready for _, ready in pods(demo, canary)] == [True]
            and [ready for _, ready in pods(demo, stable)] == [True] * 4
        ),
        message="4 stable pods and 1 canary pod Ready",
    )
    hashes = {image: {h for h, _ in pods(demo, image)} for image in (stable, canary)}
    assert len(hashes[stable]) == len(hashes[canary]) == 1
    [old], [new] = hashes[stable], hashes[canary]
    assert old != new

    service = requests_per_second('deployment="checkout"')
    demo.value(service, lambda rate: rate == pytest.approx(100, rel=0.05))  # the sum over hashes
    shares = f"sum by (pod_template_hash) (rate(demo_requests_total[10s])) / scalar({service})"
    wait_for(
        lambda: (
            by_label(demo, shares, "pod_template_hash")
            == pytest.approx({old: 0.8, new: 0.2}, abs=0.01)
        ),
        message="the traffic split 4:1 by revision",
    )
    ratios = by_label(
        demo,
        'sum by (pod_template_hash) (rate(demo_requests_total{code="500"}[10s]))'
        " / sum by (pod_template_hash) (rate(demo_requests_total[10s]))",
        "pod_template_hash",
    )
    assert ratios[new] == pytest.approx(0.05, rel=0.05)  # its image's ratio, undiluted
    assert ratios[old] == pytest.approx(0.001, rel=0.05)
    # The Deployment's own ratio is both revisions' traffic-weighted: 0.8 * 0.001 + 0.2 * 0.05.
    demo.value(error_ratio("checkout"), lambda r: r == pytest.approx(0.0108, rel=0.05))


def pods(demo: Demo, image: str) -> list[tuple[str, bool]]:
    """(pod-template-hash, Ready) of the pods of `checkout` running `image`."""
    found = demo.core.list_namespaced_pod(demo.namespace, label_selector="app=checkout").items
    return [
        (
            pod.metadata.labels.get("pod-template-hash", ""),
            any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []),
        )
        for pod in found
        if pod.spec.containers[0].image == image and pod.metadata.deletion_timestamp is None
    ]


def test_segments_split_traffic_by_weight_and_fail_alone(start_demo):
    demo = start_demo(segments=SEGMENTS)
    demo.create("checkout", "demo/checkout:1.0.0")
    service = requests_per_second('deployment="checkout"')
    demo.value(service, lambda rate: rate == pytest.approx(100, rel=0.05))  # as unsegmented
    shares = f"sum by (segment) (rate(demo_requests_total[10s])) / scalar({service})"
    assert by_label(demo, shares, "segment") == pytest.approx(SEGMENTS, abs=0.005)

    [fault] = demo.process.fault("checkout", error_ratio=0.5, seconds=60, segment="ios")
    assert (fault["deployment"], fault["segment"], fault["error_ratio"]) == ("checkout", "ios", 0.5)
    assert [f["segment"] for f in demo.get("/control").json()["faults"]] == ["ios"]

    def segment_ratio(segment: str) -> str:
        selector = f'deployment="checkout",segment="{segment}"'
        failed = f'sum(rate(demo_requests_total{{{selector},code="500"}}[10s]))'
        return f"{failed} / sum(rate(demo_requests_total{{{selector}}}[10s]))"

    demo.value(segment_ratio("ios"), lambda ratio: ratio > 0.45)
    assert demo.value(segment_ratio("android"), lambda ratio: ratio > 0) < LOW
    assert demo.value(segment_ratio("web"), lambda ratio: ratio > 0) < LOW
    # The Deployment as a whole: the failing segment's 30% at 0.5, the rest at 0.001.
    expected = 0.3 * 0.5 + 0.7 * 0.001
    demo.value(error_ratio("checkout"), lambda ratio: ratio == pytest.approx(expected, rel=0.05))

    # A segment the service does not have is refused.
    status, answer = post_control(demo.process, json.dumps({**FAULT, "segment": "tv"}).encode())
    assert status == 400
    assert "android, ios, web" in answer["error"]


def test_a_segment_is_refused_where_there_are_none(start_demo):
    demo = start_demo()
    status, answer = post_control(demo.process, json.dumps({**FAULT, "segment": "ios"}).encode())
    assert status == 400
    assert "without --segments" in answer["error"]
    assert demo.get("/control").json() == {"faults": []}

    demo.create("checkout", "demo/checkout:1.0.0", replicas=1)

    def samples() -> list:
        families = text_string_to_metric_families(demo.get("/metrics").text)
        return [s for family in families for s in family.samples]

    wait_for(samples, message="the pod's series")
    assert not any("segment" in s.labels for s in samples())


def test_noise_scatters_windows_around_the_configured_ratio(start_demo):
    """A 0.3% pod at 1,000 requests/s: 15-s windows differ, 45 s together keep 0.3%."""
    demo = start_demo(noise=20260512, rate=1000.0)
    demo.create("checkout", "demo/checkout:1.0.0", replicas=1)
    demo.process.fault("checkout", error_ratio=0.003, seconds=600)
    began = datetime.now(UTC)

    def increase(code: str = "", seconds: int = 15) -> str:
        inner = ',code="500"' if code else ""
        return f'sum(increase(demo_requests_total{{deployment="checkout"{inner}}}[{seconds}s]))'

    # 45 s of the fault in Prometheus, then its 15-s windows every 5 s, and the 45 s at once.
    wait_for(lambda: datetime.now(UTC) > began + timedelta(seconds=47), timeout=60)
    end = datetime.now(UTC)
    [series] = demo.prometheus.client.query_range(
        expr=f"{increase('500')} / {increase()}",
        start=end - timedelta(seconds=30),
        end=end,
        step=5,
    )
    ratios = [value for _, value in series.points]
    assert len(ratios) == 7
    assert len(set(ratios)) > 3  # scatter; without noise they are all 0.003
    assert all(0.0005 < ratio < 0.0075 for ratio in ratios)  # ~45 of ~15,000 each
    long_run = demo.value(f"{increase('500', 45)} / {increase(seconds=45)}", lambda r: r > 0)
    assert long_run == pytest.approx(0.003, rel=0.35)  # ~135 ± 12 failures

    families = {f.name: f for f in text_string_to_metric_families(demo.get("/metrics").text)}
    counts = [s.value for s in families["demo_requests"].samples]
    assert counts and all(value.is_integer() for value in counts)  # whole requests
