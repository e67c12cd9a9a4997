"""The game day's demo service on the real control plane, scraped by a real Prometheus."""

import json

import pytest
import requests
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from gameday.demo import SERVICE_LABEL, DemoProcess
from testbed.prometheus import PrometheusServer
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

LOW = 0.01  # the 5xx ratio a healthy deployment stays under (it runs at 0.001)


def error_ratio(deployment: str) -> str:
    def rate(code: str = "") -> str:
        return f'sum(rate(demo_requests_total{{deployment="{deployment}"{code}}}[10s]))'

    return f"{rate(',code=' + json.dumps('500'))} / {rate()}"


def p99(deployment: str) -> str:
    return (
        "histogram_quantile(0.99, sum by (le) (rate("
        f'demo_request_duration_seconds_bucket{{deployment="{deployment}"}}[10s])))'
    )


def requests_per_second(selector: str) -> str:
    return f"sum(rate(demo_requests_total{{{selector}}}[10s]))"


def demo_deployment(name: str, image: str, replicas: int, service: str) -> dict:
    labels = {"app": name, SERVICE_LABEL: service}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


class Demo:
    """One test's demo service, the Prometheus scraping it, and the namespace's Deployments."""

    def __init__(self, process: DemoProcess, prometheus: PrometheusServer, apps, core, namespace):
        self.process = process
        self.prometheus = prometheus
        self.apps = apps
        self.core = core
        self.namespace = namespace

    def create(self, name: str, image: str, replicas: int = 2, service: str = "checkout") -> None:
        body = demo_deployment(name, image, replicas, service)
        self.apps.create_namespaced_deployment(self.namespace, body)
        self.wait_ready(name, image, replicas)

    def set_image(self, name: str, image: str) -> None:
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
        self.apps.patch_namespaced_deployment(name, self.namespace, patch)
        replicas = self.apps.read_namespaced_deployment(name, self.namespace).spec.replicas
        self.wait_ready(name, image, replicas)

    def wait_ready(self, name: str, image: str, replicas: int) -> None:
        """Wait until exactly `replicas` pods of `name` are Ready, all running `image`."""

        def done() -> bool:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"app={name}").items
            ready = [
                pod
                for pod in pods
                if any(
                    c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
                )
            ]
            images = {pod.spec.containers[0].image for pod in pods}
            return len(ready) == len(pods) == replicas and images == {image}

        wait_for(done, timeout=30, message=f"{replicas} Ready pods of {name} on {image}")

    def value(self, expr: str, predicate, timeout: float = 30.0) -> float:
        return self.prometheus.wait_for_value(expr, predicate, timeout)

    def get(self, path: str) -> requests.Response:
        return get(self.process, path)


def get(process: DemoProcess, path: str) -> requests.Response:
    response = requests.get(f"{process.url}{path}", timeout=5)
    response.raise_for_status()
    return response


def post_control(process: DemoProcess, body: bytes) -> tuple[int, dict]:
    response = requests.post(f"{process.url}/control", data=body, timeout=5)
    return response.status_code, response.json()


@pytest.fixture
def demo_process(kube, kube_namespace, tmp_path):
    with DemoProcess(kube.kubeconfig, kube_namespace, tmp_path / "demo") as process:
        yield process


@pytest.fixture
def demo(demo_process, kube, kube_namespace, tmp_path):
    with (
        PrometheusServer(tmp_path / "prometheus", [demo_process.address]) as prometheus,
        kube.api_client() as api,
    ):
        yield Demo(
            demo_process, prometheus, client.AppsV1Api(api), client.CoreV1Api(api), kube_namespace
        )


def test_the_error_ratio_follows_the_image(demo):
    demo.create("checkout", "demo/checkout:1.0.0")
    healthy = demo.value(error_ratio("checkout"), lambda ratio: 0 < ratio < LOW)
    assert healthy == pytest.approx(0.001, rel=0.1)
    assert demo.value(p99("checkout"), lambda seconds: seconds > 0) <= 0.1

    demo.set_image("checkout", "demo/checkout:1.1.0-errors")
    demo.value(error_ratio("checkout"), lambda ratio: ratio > LOW)
    assert demo.value(error_ratio("checkout"), lambda ratio: ratio > 0.045) < 0.055

    demo.set_image("checkout", "demo/checkout:1.0.0")
    demo.value(error_ratio("checkout"), lambda ratio: ratio < LOW)

    # One series per revision (back on 1.0.0, its pods have its hash again), request counts
    # and histogram in step.
    families = {f.name: f for f in text_string_to_metric_families(demo.get("/metrics").text)}
    counts: dict[str, float] = {}
    revisions = set()
    for sample in families["demo_requests"].samples:
        counts[sample.labels["code"]] = counts.get(sample.labels["code"], 0) + sample.value
        revisions.add(sample.labels["pod_template_hash"])
    assert set(counts) == {"200", "500"}
    assert len(revisions) == 2 and "" not in revisions  # 1.0.0 and 1.1.0-errors, by hash
    total = sum(
        s.value
        for s in families["demo_request_duration_seconds"].samples
        if s.name.endswith("_count")
    )
    assert counts["200"] + counts["500"] == pytest.approx(total)


def test_a_canary_gets_its_share_and_only_its_own_errors(demo):
    demo.create("checkout", "demo/checkout:1.0.0", replicas=9)
    demo.create("checkout-canary", "demo/checkout:1.0.0", replicas=1)
    service = requests_per_second('service="checkout"')
    canary = requests_per_second('deployment="checkout-canary"')
    # Both series must be older than the window before rate() stops underestimating them.
    demo.value(service, lambda rate: rate == pytest.approx(100, rel=0.05))
    demo.value(f"{canary} / {service}", lambda share: share == pytest.approx(0.1, abs=0.005))

    demo.set_image("checkout-canary", "demo/checkout:1.1.0-errors")
    demo.value(error_ratio("checkout-canary"), lambda ratio: ratio > LOW)
    # The stable pods still answer at 0.001, the canary's 5% is 0.5% of the service.
    assert demo.value(error_ratio("checkout"), lambda ratio: ratio > 0) < LOW


def test_a_slow_image_pushes_p99_over_a_second(demo):
    demo.create("checkout", "demo/checkout:1.1.0-slow")
    assert demo.value(p99("checkout"), lambda seconds: seconds > 1) <= 2.5
    assert demo.value(error_ratio("checkout"), lambda ratio: ratio > 0) < LOW


def test_an_injected_fault_raises_the_ratio_for_its_duration(demo):
    demo.create("checkout", "demo/checkout:1.0.0")
    demo.value(error_ratio("checkout"), lambda ratio: 0 < ratio < LOW)

    [fault] = demo.process.fault("checkout", error_ratio=0.5, seconds=5)
    assert fault["deployment"] == "checkout"
    assert fault["error_ratio"] == 0.5
    assert 0 < fault["remaining_seconds"] <= 5
    assert demo.get("/control").json()["faults"][0]["deployment"] == "checkout"

    demo.value(error_ratio("checkout"), lambda ratio: ratio > 0.1)
    wait_for(lambda: demo.get("/control").json() == {"faults": []}, timeout=10)
    demo.value(error_ratio("checkout"), lambda ratio: ratio < LOW)


def test_bad_control_input_is_refused(demo_process):
    good = {"deployment": "checkout", "error_ratio": 0.5, "seconds": 5}
    bad = [
        b"not json",
        b"\xff\xfe",
        b"[]",
        json.dumps({**good, "extra": 1}).encode(),
        json.dumps({**good, "deployment": ""}).encode(),
        json.dumps({**good, "deployment": 7}).encode(),
        json.dumps({**good, "error_ratio": 1.5}).encode(),
        json.dumps({**good, "error_ratio": True}).encode(),
        json.dumps({**good, "error_ratio": "0.5"}).encode(),
        json.dumps({**good, "seconds": 0}).encode(),
        json.dumps({**good, "seconds": 3601}).encode(),
        b'{"deployment": "checkout", "error_ratio": NaN, "seconds": 5}',
        json.dumps({"deployment": "checkout", "seconds": 5}).encode(),
        json.dumps({**good, "deployment": "x" * 254}).encode(),  # too long for a name
    ]
    for body in bad:
        status, answer = post_control(demo_process, body)
        assert status == 400, body
        assert answer["error"], body
    assert get(demo_process, "/control").json() == {"faults": []}
    assert post_control(demo_process, json.dumps({**good, "seconds": 3600}).encode())[0] == 200

    demo_process.stop()
    assert demo_process.process.returncode == 0  # SIGTERM is a clean exit
    assert "demo service on http://127.0.0.1:" in demo_process.log.read_text()
