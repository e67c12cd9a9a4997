"""`backstop baseline` against a real Prometheus holding a synthetic week of history.

The history is written as OpenMetrics and backfilled with Debian's
`promtool tsdb create-blocks-from openmetrics`. Counters grow linearly inside every
5-minute window (samples each minute, window edges on sample times), so `rate(...[5m])`
returns exactly the rate the generator chose for that window: the 5xx ratio, throughput
and p99 of each window are known in advance, and so are the statistics of each segment.

Shape of the week (2025-03-03, a Monday, 00:00 UTC, for 7 days):
- peak is Mon-Fri 08:00-17:00 UTC (09:00-18:00 Europe/Berlin, which the spec says);
- total traffic per region is 100 req/s at peak, 20 off-peak;
- 5xx ratio, region eu: peak cycles 0.1%, 0.1%, 0.2%, 0.2%; off-peak 0.25%, 0.5%;
  region us (noisier): peak 0%..0.9% in steps of 0.1%; off-peak 0, 0.25, 0.5, 1, 2%;
- latency histogram: p99 1/3 s at peak, 2/3 s off-peak (exact by interpolation);
- the stable version is v1; a canary v2 in eu on the last day answers 20% 5xx, and must not
  count as known-good when the baseline is restricted to v1.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from cli.main import main
from testbed.prometheus import PrometheusServer, backfill, promtool_binary
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
WEEK = timedelta(days=7)
WINDOW = 300
WINDOWS = 7 * 288
METRIC = "shop_http_requests"
HISTOGRAM = "shop_http_request_duration_seconds"
BASE = {"namespace": "shop", "deployment": "checkout"}
ERROR_CYCLES = {
    ("eu", True): [0.001, 0.001, 0.002, 0.002],
    ("eu", False): [0.0025, 0.005],
    ("us", True): [k / 1000 for k in range(10)],
    ("us", False): [0.0, 0.0025, 0.005, 0.01, 0.02],
}
# Cumulative fraction of requests at or under each bucket bound.
BUCKETS = ("0.1", "0.2", "0.4", "0.8", "+Inf")
LATENCY = {True: (0.9, 0.98, 0.995, 1.0, 1.0), False: (0.8, 0.9, 0.97, 1.0, 1.0)}
ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "tests" / "manifests" / "prometheus-operator-crds.yaml"


# --- the synthetic week ----------------------------------------------------------------------


def is_peak(window: int) -> bool:
    """The generator's own rule, in UTC: weekdays 08:00-17:00 by the window's start."""
    start = T0 + timedelta(seconds=WINDOW * window)
    return start.weekday() < 5 and 8 <= start.hour < 17


def total_rate(window: int) -> int:
    return 100 if is_peak(window) else 20


def error_ratio(region: str, window: int) -> float:
    cycle = ERROR_CYCLES[(region, is_peak(window))]
    return cycle[window % len(cycle)]


def truth(region: str) -> list[tuple[int, float]]:
    """(window, 5xx ratio) of every window of the week."""
    return [(w, error_ratio(region, w)) for w in range(WINDOWS)]


def write_openmetrics(path: Path) -> None:
    """A sample per minute per series, from 10 minutes before T0 to 10 after the week."""
    first, last = -10, WINDOWS * 5 + 10
    lines = [f"# TYPE {METRIC} counter"]
    for region in ("eu", "us"):
        ok = errors = 1_000_000  # far from zero: rate() never extrapolates to a reset
        for minute in range(first, last + 1):
            window = (minute - 1) // 5  # the increment up to `minute` lies in this window
            if minute > first:
                bad = round(60 * total_rate(window) * error_ratio(region, window))
                errors += bad
                ok += 60 * total_rate(window) - bad
            stamp = int(T0.timestamp()) + 60 * minute
            labels = f'namespace="shop",deployment="checkout",region="{region}",version="v1"'
            lines.append(f'{METRIC}_total{{{labels},code="200"}} {ok} {stamp}')
            lines.append(f'{METRIC}_total{{{labels},code="500"}} {errors} {stamp}')
    canary = 'namespace="shop",deployment="checkout",region="eu",version="v2"'
    start = 6 * 24 * 60
    for minute in range(start, last + 1):
        stamp = int(T0.timestamp()) + 60 * minute
        done = minute - start
        lines.append(f'{METRIC}_total{{{canary},code="200"}} {480 * done} {stamp}')
        lines.append(f'{METRIC}_total{{{canary},code="500"}} {120 * done} {stamp}')
    lines.append(f"# TYPE {HISTOGRAM} histogram")
    for region in ("eu", "us"):
        counts = [0] * len(BUCKETS)
        for minute in range(first, last + 1):
            window = (minute - 1) // 5
            if minute > first:
                requests = 60 * total_rate(window)
                for index, share in enumerate(LATENCY[is_peak(window)]):
                    counts[index] += round(requests * share)
            stamp = int(T0.timestamp()) + 60 * minute
            labels = f'namespace="shop",deployment="checkout",region="{region}",version="v1"'
            for bound, count in zip(BUCKETS, counts, strict=True):
                lines.append(f'{HISTOGRAM}_bucket{{{labels},le="{bound}"}} {count} {stamp}')
            lines.append(f"{HISTOGRAM}_count{{{labels}}} {counts[-1]} {stamp}")
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A real Prometheus serving the backfilled week (no scraping), stopped by pid."""
    directory = tmp_path_factory.mktemp("baseline-prometheus")
    source = directory / "history.om"
    write_openmetrics(source)
    backfill(source, directory / "data")
    # Retention counts back from the newest block; keep the whole (past) week regardless.
    server = PrometheusServer(directory, [], extra_args=["--storage.tsdb.retention.time=3650d"])
    with server:
        wait_for(
            lambda: server.client.query(expr=f"count({METRIC}_total)", at=T0 + WEEK),
            message="backfilled history queryable",
        )
        yield server


SPEC = {
    "service": "checkout",
    "selector": {"namespace": "shop", "deployment": "checkout"},
    "version": {"label": "version", "value": "v1"},
    "segments": ["region"],
    "window": "5m",
    "for": "10m",
    "start": "2025-03-03T00:00:00Z",
    "end": "2025-03-10T00:00:00Z",
    "peak": {"days": "mon-fri", "hours": "09:00-18:00", "timezone": "Europe/Berlin"},
    "threshold": {"quantile": 0.99, "margin": 0.25, "sigmas": 3, "floor": 0.001},
    "kpis": [
        {"name": "error_ratio", "kind": "error_ratio", "metric": f"{METRIC}_total"},
        {"name": "p99_latency", "kind": "latency", "metric": HISTOGRAM},
        {"name": "throughput", "kind": "throughput", "metric": f"{METRIC}_total"},
    ],
}


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "checkout.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["baseline", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def baseline_json(capsys, history, spec_file, *extra: str) -> dict:
    code, out, err = run_cli(
        capsys, "--spec", str(spec_file), "--prometheus-url", history.url, "--json", *extra
    )
    assert code == 0, err
    return json.loads(out)


def rows_of(document: dict, kpi: str) -> dict[tuple[str, str], dict]:
    [found] = [item for item in document["kpis"] if item["name"] == kpi]
    return {(row["labels"]["region"], row["period"]): row for row in found["rows"]}


# --- the numbers -------------------------------------------------------------------------


def test_error_ratio_statistics_match_the_generated_week(history, spec_file, capsys):
    document = baseline_json(capsys, history, spec_file)
    assert document["start"] == "2025-03-03T00:00:00+00:00"
    assert document["end"] == "2025-03-10T00:00:00+00:00"
    rows = rows_of(document, "error_ratio")
    assert set(rows) == {(r, p) for r in ("eu", "us") for p in ("peak", "off_peak")}
    for (region, period), row in rows.items():
        values = [v for w, v in truth(region) if is_peak(w) == (period == "peak")]
        percentiles = statistics.quantiles(values, n=100, method="inclusive")
        assert row["n"] == len(values), (region, period)
        assert row["mean"] == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-12)
        assert row["stddev"] == pytest.approx(statistics.pstdev(values), rel=1e-9, abs=1e-12)
        assert row["p50"] == pytest.approx(statistics.median(values), rel=1e-9, abs=1e-12)
        assert row["p95"] == pytest.approx(percentiles[94], rel=1e-9, abs=1e-12)
        assert row["p99"] == pytest.approx(percentiles[98], rel=1e-9, abs=1e-12)
        assert row["max"] == pytest.approx(max(values), rel=1e-9, abs=1e-12)
    # By hand: eu at peak is 540 windows (5 days x 9 h x 12), half 0.1% and half 0.2%.
    eu_peak = rows[("eu", "peak")]
    assert eu_peak["n"] == 540 and rows[("eu", "off_peak")]["n"] == WINDOWS - 540
    assert eu_peak["mean"] == pytest.approx(0.0015)
    assert eu_peak["stddev"] == pytest.approx(0.0005)
    assert eu_peak["p99"] == pytest.approx(0.002)
    # mean + 3 sd = 0.003 beats p99 x 1.25 = 0.0025 and the floor 0.001.
    assert (eu_peak["threshold"], eu_peak["basis"]) == (0.003, "sigmas")
    assert eu_peak["fp_rate"] == 0.0 and eu_peak["firings_per_week"] == 0.0


def test_rule_threshold_is_the_most_conservative_and_never_fires_on_the_baseline(
    history, spec_file, capsys
):
    document = baseline_json(capsys, history, spec_file)
    kpis = {item["name"]: item for item in document["kpis"]}
    # us off-peak: 0, .25, .5, 1, 2 %: p99 x 1.25 = 2.5%; mean + 3 sd is higher.
    us_off = [v for w, v in truth("us") if not is_peak(w)]
    expected = statistics.fmean(us_off) + 3 * statistics.pstdev(us_off)
    ratio = kpis["error_ratio"]
    assert ratio["threshold"] == pytest.approx(math.ceil(expected * 10_000) / 10_000)
    assert ratio["threshold"] == max(row["threshold"] for row in ratio["rows"])
    assert ratio["fp_rate"] == 0.0 and ratio["firings_per_week"] == 0.0
    assert 'version="v1"' in ratio["history_query"] and "version" not in ratio["rule_expr"]
    assert "by (namespace, deployment, region)" in ratio["rule_expr"]
    # p99 by interpolation: 0.2 + 0.2 x (0.99-0.98)/(0.995-0.98) at peak, 0.4 + 0.4 x 2/3 off.
    latency = rows_of(document, "p99_latency")
    assert latency[("eu", "peak")]["mean"] == pytest.approx(1 / 3, rel=1e-9)
    assert latency[("us", "off_peak")]["max"] == pytest.approx(2 / 3, rel=1e-9)
    assert kpis["p99_latency"]["threshold"] == 0.834  # 2/3 x 1.25, rounded up
    # Throughput alerts on a drop: 20 req/s off-peak, minus the 25% margin.
    throughput = rows_of(document, "throughput")
    assert throughput[("us", "peak")]["mean"] == pytest.approx(100)
    assert kpis["throughput"]["direction"] == "below"
    assert kpis["throughput"]["threshold"] == 15.0


def test_without_the_version_the_canary_pollutes_the_baseline(history, spec_file, capsys):
    spec = {**SPEC}
    del spec["version"]
    spec_file.write_text(yaml.safe_dump(spec))
    rows = rows_of(baseline_json(capsys, history, spec_file), "error_ratio")
    assert rows[("eu", "off_peak")]["max"] > 0.05  # the 20% canary mixed in
    assert rows[("eu", "peak")]["max"] == pytest.approx(0.002)  # the canary ran on Sunday


def test_table_output(history, spec_file, capsys):
    code, out, _ = run_cli(capsys, "--spec", str(spec_file), "--prometheus-url", history.url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("checkout: 2025-03-03 00:00 .. 2025-03-10 00:00 UTC, window 5m")
    header = lines[2].split()
    assert header[:4] == ["kpi", "segment", "period", "n"] and header[-2:] == ["fp%", "fires/wk"]
    [eu_peak] = [line for line in lines if line.startswith("error_ratio  region=eu  peak")]
    assert eu_peak.split()[3:6] == ["540", "0.0015", "0.0005"]
    assert "throughput: rule < 15 for 10m: 0.00% of windows, 0.00 firings/week" in out


def test_written_rules_pass_promtool_and_our_own_check(history, spec_file, tmp_path, capsys):
    out_dir = tmp_path / "rules"
    code, _, err = run_cli(
        capsys, "--spec", str(spec_file), "--prometheus-url", history.url, "--out", str(out_dir)
    )
    assert code == 0, err
    plain = out_dir / "checkout.rules.yml"
    checked = subprocess.run(
        [promtool_binary(), "check", "rules", str(plain)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout
    [group] = yaml.safe_load(plain.read_text())["groups"]
    ratio = group["rules"][0]
    assert ratio["alert"] == "CheckoutErrorRatio"
    assert ratio["for"] == "10m"
    assert ratio["labels"]["backstop_rollback"] == "true"
    # Our own lint on the same history. Rule expressions have no version matcher (they must
    # catch the next version), so over the whole week the v2 canary counts as known-good:
    # the check rightly says the 5xx rule would have fired on Sunday.
    check = ("--check", str(plain), "--prometheus-url", history.url, "--json")
    peak = ("--peak-hours", "09:00-18:00", "--timezone", "Europe/Berlin")
    code, out, _ = run_cli(
        capsys, *check, *peak, *("--start", "2025-03-03T00:00:00Z"), "--end", "2025-03-10T00:00:00Z"
    )
    assert code == 1
    codes = [(f["rule"], f["code"]) for f in json.loads(out)["findings"]]
    # ...and the canary's extra traffic makes eu's off-peak throughput vary, so 15 req/s
    # is no longer below that noise with a buffer.
    assert codes == [
        ("CheckoutErrorRatio", "fires_on_baseline"),
        ("CheckoutThroughput", "threshold_near_baseline"),
    ]
    # Until the canary started, v1 alone: nothing fires and no threshold is in the noise.
    code, out, _ = run_cli(
        capsys, *check, *peak, "--start", "2025-03-03T00:00:00Z", "--end", "2025-03-09T00:00:00Z"
    )
    assert code == 0, out
    assert json.loads(out) == {"rules": 3, "kill_switches": 3, "findings": []}


def test_check_estimates_how_often_a_tight_threshold_fires(history, tmp_path, capsys):
    expr = (
        'sum by (namespace, deployment, region) (rate(shop_http_requests_total{code="500",'
        'deployment="checkout"}[5m])) / sum by (namespace, deployment, region) '
        '(rate(shop_http_requests_total{deployment="checkout"}[5m])) > 0.004'
    )
    global_expr = (
        'sum by (namespace, deployment) (rate(shop_http_requests_total{code="500",'
        'deployment="checkout"}[5m])) / sum by (namespace, deployment) '
        '(rate(shop_http_requests_total{deployment="checkout"}[5m])) > 0.05'
    )
    kill = {"backstop_rollback": "true"}
    rules = {
        "groups": [
            {
                "name": "shop",
                "rules": [
                    {"alert": "Tight5xx", "expr": expr, "for": "10m", "labels": kill},
                    {"alert": "Global5xx", "expr": global_expr, "for": "10m", "labels": kill},
                ],
            }
        ]
    }
    path = tmp_path / "shop.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    code, out, _ = run_cli(
        capsys,
        *("--check", str(path), "--prometheus-url", history.url, "--json"),
        *("--start", "2025-03-03T00:00:00Z", "--end", "2025-03-09T00:00:00Z"),  # v1 only
    )
    assert code == 1
    findings = {(f["rule"], f["code"]): f for f in json.loads(out)["findings"]}
    # Independently: a window fires when it and the two before it (for: 10m) exceed 0.4%.
    firing_windows = episodes = 0
    windows = 6 * 288
    for region in ("eu", "us"):
        values = [v for _, v in truth(region)][:windows]
        hot = [i >= 2 and all(v > 0.004 for v in values[i - 2 : i + 1]) for i in range(windows)]
        firing_windows += sum(hot)
        episodes += sum(1 for i, h in enumerate(hot) if h and (i == 0 or not hot[i - 1]))
    assert episodes > 0
    tight = findings[("Tight5xx", "fires_on_baseline")]
    assert tight["severity"] == "error"
    rate = firing_windows / (2 * windows)
    weekly = episodes / 6 * 7
    assert (
        f"{episodes} firing(s) ({weekly:.2f}/week, {rate:.2%} of {2 * windows} windows)"
        in (tight["message"])
    )
    glob = findings[("Global5xx", "global_only")]
    assert glob["severity"] == "warning" and "region" in glob["message"]
    assert ("Tight5xx", "global_only") not in findings


# --- the PrometheusRule on a real apiserver ----------------------------------------------------


@pytest.fixture
def monitoring_crds(kube):
    """prometheus-operator's kinds on the test cluster (minimal CRDs), removed only if added."""
    with kube.crds(CRDS):
        yield


def test_prometheusrule_passes_server_side_dry_run(
    history, spec_file, tmp_path, capsys, kube, kube_namespace, monitoring_crds
):
    spec = {**SPEC, "rule_namespace": kube_namespace, "rule_labels": {"release": "monitoring"}}
    spec_file.write_text(yaml.safe_dump(spec))
    out_dir = tmp_path / "rules"
    code, _, err = run_cli(
        capsys, "--spec", str(spec_file), "--prometheus-url", history.url, "--out", str(out_dir)
    )
    assert code == 0, err
    manifest = out_dir / "checkout.prometheusrule.yaml"
    document = yaml.safe_load(manifest.read_text())
    assert document["metadata"]["namespace"] == kube_namespace
    assert document["spec"] == yaml.safe_load((out_dir / "checkout.rules.yml").read_text())
    applied = subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={kube.kubeconfig}",
            "apply",
            "--dry-run=server",
            "-f",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    assert "prometheusrule.monitoring.coreos.com/checkout-backstop-kill-switches created" in (
        applied.stdout
    )


def test_long_ranges_are_read_in_chunks_each_point_once(history):
    """30 s steps over the week: 20,160 points, more than one request may return."""
    start, end = T0 + timedelta(seconds=30), T0 + WEEK
    found = history.client.query_range_chunked(
        expr=f'sum(rate({METRIC}_total{{version="v1"}}[5m]))', start=start, end=end, step=30
    )
    [series] = found
    times = [moment for moment, _ in series.points]
    assert len(times) == 20_160
    assert times[0] == start and times[-1] == end
    assert all((b - a).total_seconds() == 30 for a, b in itertools.pairwise(times))
