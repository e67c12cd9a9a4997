"""The demo service's simulation (gameday/demo.py) without a cluster: per-revision series,
client segments and their faults, seeded noise against the flat counting, and the parsing
of --segments and of a POST /control body (gameday/demoserver.py)."""

import json
import math
import statistics

import pytest
from kubernetes import client
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from gameday.demo import DemoProcess, Pod, Traffic, parse_segments, serving_pods
from gameday.demoserver import parse_fault

STEP = 0.25  # the service's tick
SEGMENTS = {"ios": 0.3, "android": 0.3, "web": 0.4}
STABLE = [
    Pod(f"checkout-aaa-{i}", "checkout", "checkout", "demo/checkout:1.0.0", "aaa") for i in range(4)
]
CANARY = Pod("checkout-bbb-0", "checkout", "checkout", "demo/checkout:1.1.0-errors", "bbb")


def run(traffic: Traffic, pods, seconds: float, start: float = 0.0) -> float:
    """Advance `traffic` tick by tick for `seconds`; the monotonic time it ends at."""
    now = start
    for _ in range(round(seconds / STEP)):
        now += STEP
        traffic.advance(pods, STEP, now)
    return now


def samples(traffic: Traffic) -> list:
    """The exposition as a scrape would parse it."""
    registry = CollectorRegistry()
    registry.register(traffic)
    text = generate_latest(registry).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def requests_by(traffic: Traffic, *keys: str) -> dict[tuple, dict[str, float]]:
    """demo_requests_total summed by `keys`, then by code."""
    totals: dict[tuple, dict[str, float]] = {}
    for sample in samples(traffic):
        if sample.name == "demo_requests_total":
            codes = totals.setdefault(tuple(sample.labels[k] for k in keys), {"200": 0, "500": 0})
            codes[sample.labels["code"]] += sample.value
    return totals


def ratio(codes: dict[str, float]) -> float:
    return codes["500"] / (codes["200"] + codes["500"])


def kube_pod(name: str, **labels: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(
            name=name, labels={"app": "checkout", "demo.backstop.io/service": "checkout", **labels}
        ),
        spec=client.V1PodSpec(containers=[client.V1Container(name="app", image="demo/c:1")]),
        status=client.V1PodStatus(conditions=[client.V1PodCondition(type="Ready", status="True")]),
    )


def test_a_pod_s_revision_is_its_controllers_hash_label():
    pods = serving_pods(
        [
            kube_pod("a", **{"pod-template-hash": "rs1", "controller-revision-hash": "x"}),
            kube_pod("b", **{"controller-revision-hash": "sts-7d9"}),
            kube_pod("c", **{"rollouts-pod-template-hash": "ro5"}),
            kube_pod("d"),
        ]
    )
    assert [pod.revision for pod in pods] == ["rs1", "sts-7d9", "ro5", ""]


def test_without_options_the_series_are_as_before():
    traffic = Traffic("shop", 100.0)
    run(traffic, [*STABLE, CANARY], 10.0)
    names = {tuple(sorted(s.labels)) for s in samples(traffic) if s.name == "demo_requests_total"}
    assert names == {("code", "deployment", "namespace", "pod_template_hash", "service")}
    by_hash = {key: codes for (key,), codes in requests_by(traffic, "pod_template_hash").items()}
    # Exactly rate * seconds, split evenly over the 5 pods: 800 + 200, at exactly each ratio.
    assert sum(by_hash["aaa"].values()) == pytest.approx(800, rel=1e-12)
    assert sum(by_hash["bbb"].values()) == pytest.approx(200, rel=1e-12)
    assert ratio(by_hash["aaa"]) == pytest.approx(0.001, rel=1e-9)
    assert ratio(by_hash["bbb"]) == pytest.approx(0.05, rel=1e-9)
    histogram = {
        (s.labels["pod_template_hash"], s.labels.get("le"), s.name): s.value
        for s in samples(traffic)
        if s.name.startswith("demo_request_duration_seconds")
    }
    assert histogram[("aaa", "0.05", "demo_request_duration_seconds_bucket")] == pytest.approx(800)
    assert histogram[("aaa", "+Inf", "demo_request_duration_seconds_bucket")] == pytest.approx(800)
    assert histogram[("aaa", None, "demo_request_duration_seconds_sum")] == pytest.approx(40)


def test_a_duration_on_a_bucket_s_bound_is_counted_in_that_bucket():
    traffic = Traffic("shop", 100.0)
    run(traffic, [Pod("p", "checkout", "checkout", "demo/checkout:2-slow", "ccc")], 10.0)
    buckets = {
        s.labels["le"]: s.value
        for s in samples(traffic)
        if s.name == "demo_request_duration_seconds_bucket"
    }
    # 90% take exactly 0.05 s, 10% exactly 2.5 s.
    assert buckets["0.05"] == buckets["1.0"] == pytest.approx(900)
    assert buckets["2.5"] == buckets["+Inf"] == pytest.approx(1000)


def test_the_revision_label_separates_a_canary_from_the_stable_pods():
    traffic = Traffic("shop", 100.0)
    run(traffic, [*STABLE, CANARY], 10.0)
    series = requests_by(traffic, "deployment", "pod_template_hash")
    assert set(series) == {("checkout", "aaa"), ("checkout", "bbb")}
    deployment = requests_by(traffic, "deployment")[("checkout",)]
    assert sum(deployment.values()) == pytest.approx(1000)  # the sum over revisions
    assert ratio(deployment) == pytest.approx((800 * 0.001 + 200 * 0.05) / 1000)


def test_segments_split_each_pod_s_traffic_by_weight():
    plain, segmented = Traffic("shop", 100.0), Traffic("shop", 100.0, segments=SEGMENTS)
    for traffic in (plain, segmented):
        run(traffic, [*STABLE, CANARY], 10.0)
    by_segment = requests_by(segmented, "pod_template_hash", "segment")
    assert len(by_segment) == 6
    for (revision, segment), codes in by_segment.items():
        share = 800 if revision == "aaa" else 200
        assert sum(codes.values()) == pytest.approx(share * SEGMENTS[segment])
    # The same totals as without segments, label for label.
    for key in ("aaa", "bbb"):
        for code in ("200", "500"):
            assert requests_by(segmented, "pod_template_hash")[(key,)][code] == pytest.approx(
                requests_by(plain, "pod_template_hash")[(key,)][code]
            )


def test_a_release_broken_on_one_segment_fails_there_only_and_on_its_own_pods():
    traffic = Traffic("shop", 100.0, segments=SEGMENTS)
    broken = Pod("new", "checkout", "checkout", "demo/checkout:2-errors-ios", "bbb")
    run(traffic, [*STABLE, broken], 10.0)
    by = requests_by(traffic, "pod_template_hash", "segment")
    assert ratio(by[("bbb", "ios")]) == pytest.approx(0.05)
    assert ratio(by[("bbb", "web")]) == pytest.approx(0.001)
    assert ratio(by[("aaa", "ios")]) == pytest.approx(0.001)


def test_segment_weights_are_relative():
    traffic = Traffic("shop", 100.0, segments={"ios": 3, "web": 1})
    assert traffic.segments == {"ios": 0.75, "web": 0.25}


def test_a_segment_fault_fails_only_that_segment():
    traffic = Traffic("shop", 100.0, segments=SEGMENTS)
    traffic.set_fault("checkout", 0.5, seconds=100, now=0.0, segment="ios")
    run(traffic, STABLE, 10.0)
    by_segment = requests_by(traffic, "segment")
    assert ratio(by_segment[("ios",)]) == pytest.approx(0.5)
    assert ratio(by_segment[("android",)]) == pytest.approx(0.001)
    assert ratio(by_segment[("web",)]) == pytest.approx(0.001)
    [fault] = traffic.active_faults(now=10.0)
    assert fault == {
        "deployment": "checkout",
        "error_ratio": 0.5,
        "remaining_seconds": 90.0,
        "segment": "ios",
    }


def test_a_segment_s_own_fault_wins_over_its_deployment_s():
    traffic = Traffic("shop", 100.0, segments=SEGMENTS)
    traffic.set_fault("checkout", 0.2, seconds=100, now=0.0)
    traffic.set_fault("checkout", 0.5, seconds=5.1, now=0.0, segment="ios")
    end = run(traffic, STABLE, 5.0)
    by_segment = requests_by(traffic, "segment")
    assert ratio(by_segment[("ios",)]) == pytest.approx(0.5)
    assert ratio(by_segment[("web",)]) == pytest.approx(0.2)
    # The segment's fault over, its Deployment's still holds.
    run(traffic, STABLE, 5.0, start=end)
    assert ratio(requests_by(traffic, "segment")[("ios",)]) == pytest.approx((0.5 + 0.2) / 2)
    assert [f.get("segment") for f in traffic.active_faults(now=end + 5)] == [None]
    with pytest.raises(ValueError, match="no segment"):
        traffic.set_fault("checkout", 0.5, seconds=5, now=0.0, segment="tv")


def window_ratios(traffic: Traffic, pods, windows: int, seconds: float = 15.0):
    """Per window of `seconds`: (requests, 5xx ratio) of all of `pods`."""
    out, now, before = [], 0.0, {"200": 0.0, "500": 0.0}
    for _ in range(windows):
        now = run(traffic, pods, seconds, start=now)
        after = requests_by(traffic, "namespace")[("shop",)]
        delta = {code: after[code] - before[code] for code in after}
        out.append((sum(delta.values()), ratio(delta)))
        before = after
    return out


def test_noise_scatters_windows_around_the_configured_ratio():
    pod = [Pod("checkout-aaa-0", "checkout", "checkout", "demo/checkout:1.0.0", "aaa")]
    noisy = Traffic("shop", 100.0, noise=42)
    noisy.set_fault("checkout", 0.003, seconds=3600, now=0.0)  # a 0.3% pod
    windows = window_ratios(noisy, pod, windows=240)  # an hour of 15-s windows
    requests = [n for n, _ in windows]
    ratios = [r for _, r in windows]
    assert all(n.is_integer() for n in requests)
    assert len(set(ratios)) > 20 and len(set(requests)) > 20
    # Binomial scatter: ~4.5 failures in ~1500 requests a window.
    assert statistics.pstdev(ratios) == pytest.approx(math.sqrt(0.003 / 1500), rel=0.3)
    assert statistics.pstdev(requests) == pytest.approx(math.sqrt(1500), rel=0.3)
    # The long run keeps the configured rate and ratio.
    assert statistics.fmean(requests) == pytest.approx(1500, rel=0.01)
    total = requests_by(noisy, "namespace")[("shop",)]
    assert ratio(total) == pytest.approx(0.003, rel=0.1)

    flat = Traffic("shop", 100.0)
    flat.set_fault("checkout", 0.003, seconds=3600, now=0.0)
    for n, r in window_ratios(flat, pod, windows=10):
        assert n == pytest.approx(1500, rel=1e-9)
        assert r == pytest.approx(0.003, rel=1e-9)


def test_noise_jitters_latency_around_the_behaviour_s_durations():
    noisy = Traffic("shop", 100.0, noise=1)
    run(noisy, STABLE, 60.0)
    histogram = {
        (s.name, s.labels.get("le")): s.value
        for s in samples(noisy)
        if s.name.startswith("demo_request_duration_seconds")
    }
    count = histogram[("demo_request_duration_seconds_count", None)]
    sum_ = histogram[("demo_request_duration_seconds_sum", None)]
    assert count == histogram[("demo_request_duration_seconds_bucket", "+Inf")] > 5000
    assert sum_ / count == pytest.approx(0.05, rel=0.02)
    fastest = histogram[("demo_request_duration_seconds_bucket", "0.05")]
    assert 0.3 < fastest / count < 0.8  # flat, every request takes exactly 0.05 s
    assert histogram[("demo_request_duration_seconds_bucket", "0.1")] / count > 0.99


def test_noise_is_deterministic_for_a_seed():
    def exposition(seed):
        traffic = Traffic("shop", 100.0, segments=SEGMENTS, noise=seed)
        run(traffic, [CANARY, *STABLE], 20.0)
        return [(s.name, s.labels, s.value) for s in samples(traffic)]

    assert exposition(3) == exposition(3)
    assert exposition(3) != exposition(4)


def test_the_order_pods_are_listed_in_does_not_change_the_draws():
    def exposition(pods):
        traffic = Traffic("shop", 100.0, noise=3)
        run(traffic, pods, 5.0)
        return samples(traffic)

    assert exposition([CANARY, *STABLE]) == exposition([*reversed(STABLE), CANARY])


def test_segments_parse_from_the_command_line():
    assert parse_segments("ios=0.3,android=0.3,web=0.4") == pytest.approx(SEGMENTS)
    assert parse_segments(" ios = 3 , web = 1 ") == {"ios": 0.75, "web": 0.25}
    assert parse_segments("all=1") == {"all": 1.0}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ios",
        "ios=0.3,",
        "ios=0.3,ios=0.7",
        "ios=abc",
        "ios=0",
        "ios=-1",
        "ios=inf",
        "ios=nan",
        "=1",
        "i os=1",
        "ios=1=2",
        'x"y=1',
    ],
)
def test_bad_segments_are_refused(text):
    with pytest.raises(ValueError):
        parse_segments(text)


def test_demo_process_refuses_bad_segments_before_it_starts(tmp_path):
    with pytest.raises(ValueError):
        DemoProcess(tmp_path / "kubeconfig", "ns", tmp_path, segments={"ios": 0})
    with pytest.raises(ValueError):
        DemoProcess(tmp_path / "kubeconfig", "ns", tmp_path, segments={"ios": True})


def test_a_fault_may_name_a_segment_of_the_service():
    good = {"deployment": "checkout", "error_ratio": 0.5, "seconds": 5}
    body = json.dumps(good).encode()
    assert parse_fault(body) == ("checkout", 0.5, 5.0, "")
    assert parse_fault(body, ["ios"]) == ("checkout", 0.5, 5.0, "")
    with_ios = json.dumps({**good, "segment": "ios"}).encode()
    assert parse_fault(with_ios, ["ios", "web"]) == ("checkout", 0.5, 5.0, "ios")
    for segment in ("tv", "", 7, None):
        bad = json.dumps({**good, "segment": segment}).encode()
        with pytest.raises(ValueError, match="segment must be one of"):
            parse_fault(bad, ["ios", "web"])
    with pytest.raises(ValueError, match="without --segments"):
        parse_fault(with_ios)
