"""Baselines: the maths (hand-computed), the spec, rule writing and the rule lint."""

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from cli.baseline import promql
from cli.baseline.analysis import Baseline, baseline_kpi
from cli.baseline.periods import OFF_PEAK, PEAK, parse_days
from cli.baseline.rulecheck import CheckOptions, check, load_rules
from cli.baseline.rules import alert_name, prometheus_rule, rule_groups
from cli.baseline.spec import PeakSpec, SpecError, load_spec
from cli.baseline.stats import describe, quantile
from cli.baseline.thresholds import (
    ABOVE,
    BELOW,
    ThresholdPolicy,
    episode_starts,
    firing,
    propose,
    round_away,
    windows_to_fire,
)
from cli.localredis import free_port
from cli.main import main
from core.integrations.prometheus import Series

T0 = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday, 00:00 UTC


def points(values, step=300, start=T0, skip=()):
    """Points `step` apart; indexes in `skip` are left out (gaps)."""
    return [
        (start + timedelta(seconds=step * (i + 1)), v)
        for i, v in enumerate(values)
        if i not in skip
    ]


# --- statistics -------------------------------------------------------------------------------


def test_quantile_interpolates_between_order_statistics():
    assert quantile([4, 1, 3, 2], 0.5) == 2.5
    assert quantile([1, 2, 3, 4], 0.99) == pytest.approx(3.97)  # 1 + 0.99 x 3 = position 2.97
    assert quantile([1, 2, 3, 4], 0.0) == 1 and quantile([1, 2, 3, 4], 1.0) == 4
    assert quantile([7], 0.95) == 7
    with pytest.raises(ValueError):
        quantile([], 0.5)


def test_describe_uses_the_population_deviation():
    found = describe([2, 4, 4, 4, 5, 5, 7, 9])
    assert (found.n, found.mean, found.stddev) == (8, 5.0, 2.0)
    assert (found.min, found.p50, found.max) == (2, 4.5, 9)
    assert found.p95 == pytest.approx(8.3)  # position 6.65 between 7 and 9


# --- thresholds -------------------------------------------------------------------------------


def test_proposal_takes_the_largest_candidate():
    values = [1.0, 1.0, 1.0, 1.0]  # no spread: the quantile margin decides
    assert propose(values, ThresholdPolicy(0.99, 0.25, 3, 0), ABOVE).threshold == 1.25
    assert propose(values, ThresholdPolicy(0.99, 0.25, 3, 2.0), ABOVE).basis == "floor"
    spread = [0.0, 0.0, 0.0, 4.0]  # mean 1, sd sqrt(3): 1 + 3 x 1.732 = 6.196 > 3.88 x 1.25
    proposal = propose(spread, ThresholdPolicy(0.99, 0.25, 3, 0), ABOVE)
    assert (proposal.threshold, proposal.basis) == (6.2, "sigmas")


def test_proposal_for_a_drop_goes_below_the_noise_and_never_below_zero():
    steady = [100.0] * 10
    assert propose(steady, ThresholdPolicy(0.99, 0.25, 3, 0), BELOW).threshold == 75.0
    noisy = [10.0, 30.0]  # mean 20, sd 10: 20 - 30 < 0
    proposal = propose(noisy, ThresholdPolicy(0.99, 0.25, 3, 0), BELOW)
    assert (proposal.threshold, proposal.basis) == (0.0, "sigmas")


def test_rounding_moves_away_from_the_noise():
    assert round_away(0.028713, ABOVE) == 0.0288
    assert round_away(0.028713, BELOW) == 0.0287
    assert round_away(15.0, BELOW) == 15.0
    assert round_away(123456.0, ABOVE) == 124000.0
    assert round_away(0.0, ABOVE) == 0.0


def test_windows_needed_to_fire():
    assert windows_to_fire(600, 300) == 3  # pending at 0, still at 5m, fires at 10m
    assert windows_to_fire(0, 300) == 1
    assert windows_to_fire(301, 300) == 3
    assert windows_to_fire(300, 300) == 2


def test_firing_needs_the_whole_for_duration_and_a_gap_resets_it():
    series = points([0, 5, 5, 5, 0, 5, 5, 5, 5, 5, 5], skip={7})
    fired = firing(series, 1.0, ">", step_seconds=300, hold_seconds=600)
    # The first run of three fires at its third window; the second is cut by the missing
    # window after two, and starts again: three more windows before it fires.
    assert fired == [False, False, False, True, False, False, False, False, False, True]
    assert episode_starts(series, fired, step_seconds=300) == [3, 9]
    assert firing(series, 5.0, ">=", step_seconds=300, hold_seconds=0)[1] is True
    assert firing(series, 5.0, ">", step_seconds=300, hold_seconds=0)[1] is False


# --- peak hours ---------------------------------------------------------------------------


def test_peak_hours_in_a_timezone_follow_daylight_saving():
    peak = PeakSpec(days="mon-fri", hours="09:00-18:00", timezone="Europe/Berlin").hours_model()
    assert peak.period_of(datetime(2025, 3, 28, 8, 0, tzinfo=UTC)) == PEAK  # CET: 09:00
    assert peak.period_of(datetime(2025, 3, 28, 7, 59, tzinfo=UTC)) == OFF_PEAK
    assert peak.period_of(datetime(2025, 3, 31, 7, 0, tzinfo=UTC)) == PEAK  # CEST: 09:00
    assert peak.period_of(datetime(2025, 3, 31, 16, 0, tzinfo=UTC)) == OFF_PEAK  # 18:00
    assert peak.period_of(datetime(2025, 3, 29, 12, 0, tzinfo=UTC)) == OFF_PEAK  # Saturday


def test_a_night_peak_wraps_past_midnight():
    peak = PeakSpec(days="fri", hours="22:00-06:00").hours_model()
    assert peak.period_of(datetime(2025, 3, 7, 23, 0, tzinfo=UTC)) == PEAK  # Friday night
    assert peak.period_of(datetime(2025, 3, 8, 5, 59, tzinfo=UTC)) == PEAK  # Saturday early
    assert peak.period_of(datetime(2025, 3, 8, 23, 0, tzinfo=UTC)) == OFF_PEAK
    assert peak.period_of(datetime(2025, 3, 7, 5, 0, tzinfo=UTC)) == OFF_PEAK  # Thursday's
    assert parse_days("fri-mon") == {4, 5, 6, 0}
    with pytest.raises(ValueError, match="unknown day"):
        parse_days("funday")


# --- the spec -----------------------------------------------------------------------------


SPEC = {
    "service": "checkout",
    "selector": {"namespace": "shop"},
    "version": {"label": "image", "value": "shop:1.4"},
    "segments": ["region"],
    "kpis": [{"name": "error_ratio", "kind": "error_ratio"}],
}


def test_history_queries_carry_the_version_rules_do_not():
    spec = load_spec(None, SPEC)
    [kpi] = spec.kpis
    assert spec.expression(kpi, history=True) == (
        'sum by (namespace, deployment, region) (rate(http_requests_total{namespace="shop",'
        'image="shop:1.4",code=~"5.."}[5m])) / sum by (namespace, deployment, region) '
        '(rate(http_requests_total{namespace="shop",image="shop:1.4"}[5m]))'
    )
    assert "image" not in spec.expression(kpi, history=False)


def test_custom_queries_fill_placeholders_and_flags_override_the_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    custom = {"name": "queue", "kind": "query", "query": "max by (${by}) (q{$selector}[$window])"}
    spec = load_spec(path, {"window": "1m", "kpis": [custom], "peak": {"timezone": "Asia/Tokyo"}})
    assert spec.expression(spec.kpis[0], history=False) == (
        'max by (namespace, deployment, region) (q{namespace="shop"}[1m])'
    )
    assert spec.peak.days == "mon-fri"  # nested keys merge, the file's others stay


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kpis": [{"name": f"k{i}", "kind": "throughput"} for i in range(4)]}, "at most 3"),
        ({"kpis": [{"name": "q", "kind": "query", "query": "x[$range]"}]}, "placeholders"),
        ({"kpis": [{"name": "q", "kind": "latency", "query": "x"}]}, "only for kind"),
        ({"peak": {"timezone": "Mars/Olympus"}}, "unknown timezone"),
        ({"treshold": {}}, "treshold: Extra inputs"),
        ({"selector": {"bad-label": "x"}}, "invalid label name"),
    ],
)
def test_invalid_specs_say_what_is_wrong(change, message):
    with pytest.raises(SpecError, match=message):
        load_spec(None, {**SPEC, **change})


# --- a baseline from series (pure) ----------------------------------------------------------


def test_baseline_of_two_segments_takes_the_noisier_for_the_rule():
    spec = load_spec(None, {**SPEC, "for": "5m", "peak": {"hours": "00:00-24:00", "days": "mon"}})
    quiet = Series({"region": "eu"}, points([0.01] * 12))
    noisy = Series({"region": "us"}, points([0.01, 0.01, 0.03, 0.03, 0.01, 0.01] * 2))
    result = baseline_kpi(spec, spec.kpis[0], [quiet, noisy], period_seconds=3600)
    rows = {row.labels["region"]: row for row in result.rows}
    assert rows["eu"].threshold == 0.0125 and rows["eu"].basis == "quantile"
    # us: mean 0.01667, sd 0.00943 → 0.0450 by sigmas beats 0.03 x 1.25 = 0.0375.
    assert rows["us"].threshold == 0.0450 and rows["us"].basis == "sigmas"
    assert result.threshold == 0.045
    # At eu's own 0.0125, us's pairs of 3% windows would fire (for: 5m = 2 windows): twice
    # in an hour, at 2 of 12 windows; at the rule's threshold, never.
    assert rows["us"].rule_fp_rate == 0.0 and result.fp_rate == 0.0
    tight = baseline_kpi(
        load_spec(
            None,
            {
                **SPEC,
                "for": "5m",
                "threshold": {"floor": 0.0, "quantile": 0.6, "margin": 0, "sigmas": 0},
            },
        ),
        spec.kpis[0],
        [noisy],
        period_seconds=3600,
    )
    assert tight.threshold == 0.0167  # the mean (sigmas 0) beats q60 = 0.01; rounded up
    assert tight.fp_rate == pytest.approx(2 / 12)
    assert tight.firings_per_week == pytest.approx(2 * 168)


# --- rules ----------------------------------------------------------------------------------


def test_rules_are_kill_switches_with_for_labels_and_segments():
    spec = load_spec(None, {**SPEC, "labels": {"team": "shop"}, "rule_labels": {"release": "x"}})
    series = [Series({"region": "eu"}, points([0.01] * 12))]
    kpi = baseline_kpi(spec, spec.kpis[0], series, period_seconds=3600)
    baseline = Baseline(spec, T0, T0 + timedelta(hours=1), [kpi])
    [rule] = rule_groups(baseline)["groups"][0]["rules"]
    assert rule["alert"] == "CheckoutErrorRatio"
    assert rule["expr"].endswith("[5m])) > 0.0125")
    assert "by (namespace, deployment, region)" in rule["expr"]
    assert rule["for"] == "10m"
    assert rule["labels"] == {
        "team": "shop",
        "backstop_rollback": "true",
        "severity": "critical",
        "service": "checkout",
        "kpi": "error_ratio",
    }
    assert "0.00 times a week" in rule["annotations"]["description"]
    manifest = prometheus_rule(baseline)
    assert manifest["metadata"]["namespace"] == "shop"  # from the selector
    assert manifest["metadata"]["labels"]["release"] == "x"
    assert alert_name("payment-api", "p99_latency") == "PaymentApiP99Latency"


# --- reading expressions --------------------------------------------------------------------


def test_promql_reading():
    expr = (
        'sum(rate(x{code="5..",deployment="a"}[5m])) by (namespace, deployment) '
        '/ sum by (namespace, deployment, region) (rate(x{deployment="a"}[10m])) > 0.01'
    )
    left, op, number = promql.split_comparison(expr)
    assert (op, number) == (">", 0.01) and left.endswith("[10m]))")
    assert promql.kept_labels(expr) == {"namespace", "deployment"}
    assert promql.largest_range(expr) == 600
    assert promql.equality_matchers(expr) == {"code": "5..", "deployment": "a"}
    assert promql.metric_names(expr) == ["x"]
    assert promql.kept_labels("rate(x[5m]) > 1") is None  # nothing aggregates
    assert promql.split_comparison("a > 1 and b > 2") is None
    assert promql.split_comparison('x{a=") > 3"}') is None  # inside a string


# --- the rule lint ------------------------------------------------------------------------


def rule(name, expr, hold="5m", **labels):
    body = {"alert": name, "expr": expr, "labels": {"backstop_rollback": "true", **labels}}
    if hold is not None:
        body["for"] = hold
    return body


RATIO = (
    'sum by (namespace, deployment{by}) (rate(req{{code="500",deployment="cart"}}[5m])) '
    '/ sum by (namespace, deployment{by}) (rate(req{{deployment="cart"}}[5m])) > 0.05'
)


def lint(tmp_path, rules, **options):
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "shop", "rules": rules}]}))
    loaded, findings = load_rules([path])
    return findings + check(loaded, CheckOptions(**options))


def codes(findings):
    return [(f.severity, f.code, f.rule) for f in findings]


def test_lint_flags_each_problem_with_a_fix(tmp_path):
    found = lint(
        tmp_path,
        [
            rule("NoFor", RATIO.format(by=", region"), hold=None),
            rule("ShortFor", RATIO.format(by=", region"), hold="1m"),
            rule("Global", RATIO.format(by="")),
            rule("NoWorkload", "sum(rate(req[5m])) > 1"),
            {"alert": "PageOnly", "expr": "up == 0"},  # not a kill switch: left alone
        ],
        segments=("region",),
    )
    assert codes(found) == [
        ("error", "missing_for", "NoFor"),
        ("error", "no_workload_labels", "NoWorkload"),
        ("warning", "for_shorter_than_window", "ShortFor"),
        ("warning", "global_only", "Global"),
        ("warning", "global_only", "NoWorkload"),
    ]
    assert "add `for: 5m`" in found[0].fix
    assert "namespace, deployment" in found[1].message


def test_lint_counts_kill_switches_per_service(tmp_path):
    rules = [rule(f"K{i}", RATIO.format(by=", region")) for i in range(4)]
    rules.append(rule("Other", RATIO.format(by=", region").replace("cart", "shop")))
    found = lint(tmp_path, rules)
    assert codes(found) == [("error", "too_many_kill_switches", "K0, K1, K2, K3")]
    assert "cart has 4 kill switches" in found[0].message


def test_lint_reads_prometheusrule_manifests_and_reports_broken_files(tmp_path):
    manifest = tmp_path / "rule.yaml"
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "x"},
        "spec": {"groups": [{"name": "g", "rules": [rule("A", RATIO.format(by=""), hold="0s")]}]},
    }
    manifest.write_text(yaml.safe_dump(document))
    broken = tmp_path / "broken.yml"
    broken.write_text("groups: [")
    loaded, findings = load_rules([manifest, broken])
    assert [r.name for r in loaded] == ["A"]
    assert codes(findings) == [("error", "unreadable_file", "")]
    assert codes(check(loaded, CheckOptions())) == [("error", "missing_for", "A")]


class History:
    """Backstop's History interface over fixed series (a seam, not Prometheus)."""

    def __init__(self, series, labels=()):
        self.series, self.labels, self.asked = series, set(labels), []

    def windows(self, expr, step):
        self.asked.append((expr, step))
        return self.series

    def period_seconds(self, step):
        return 7 * 86400

    def carries(self, metric, matchers, label):
        return label in self.labels


def test_lint_with_history_estimates_false_positives(tmp_path):
    noisy = [Series({"region": "us"}, points([0.01, 0.06, 0.06, 0.06, 0.01] * 4))]
    history = History(noisy, labels={"region"})
    found = lint(tmp_path, [rule("Tight", RATIO.format(by=", region"))], history=history)
    assert codes(found) == [("error", "fires_on_baseline", "Tight")]
    # for: 5m over 5m windows: 2 consecutive → each run of three 6% windows fires twice.
    assert "4 firing(s) (4.00/week, 40.00% of 20 windows)" in found[0].message
    assert history.asked[0][1] == 300.0  # the expression's own window
    assert not history.asked[0][0].endswith("0.05")  # the left side only
    calm = History([Series({"region": "us"}, points([0.03] * 20))], labels={"region"})
    found = lint(tmp_path, [rule("Near", RATIO.format(by=", region"))], history=calm)
    assert codes(found) == []  # 0.05 is beyond the proposal, 0.03 x 1.25 = 0.0375
    zoned = History(calm.series, labels={"region", "zone"})  # a default segment label
    found = lint(tmp_path, [rule("Near", RATIO.format(by=", region"))], history=zoned)
    assert codes(found) == [("warning", "global_only", "Near")]
    assert "segmented by zone" in found[0].message
    found = lint(
        tmp_path, [rule("Near", RATIO.format(by=", region").replace("0.05", "0.035"))], history=calm
    )
    assert codes(found) == [("warning", "threshold_near_baseline", "Near")]
    assert "proposed 0.0375" in found[0].message
    found = lint(tmp_path, [rule("Empty", RATIO.format(by=", region"))], history=History([]))
    assert codes(found) == [("info", "no_history", "Empty")]


# --- the command ----------------------------------------------------------------------------


def test_check_exits_non_zero_on_errors_only(tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {"name": "g", "rules": [rule("A", RATIO.format(by=", region"), hold=None)]}
                ]
            }
        )
    )
    assert main(["baseline", "--check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "ERROR   missing_for:" in out and "Fix: add `for: 5m`" in out
    good = tmp_path / "good.yml"
    good.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [rule("A", RATIO.format(by=""))]}]})
    )
    assert main(["baseline", "--check", str(good), "--segment", "region"]) == 0
    assert "1 findings (0 errors)" in capsys.readouterr().out


def test_command_errors_are_exit_codes_not_tracebacks(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    assert main(["baseline", "--service", "x", "--kpi", "error_ratio"]) == 2
    assert "--prometheus-url" in capsys.readouterr().err
    down = f"http://127.0.0.1:{free_port()}"
    args = ["baseline", "--prometheus-url", down, "--service", "x", "--kpi", "latency"]
    assert main(args) == 3
    assert "Prometheus unavailable" in capsys.readouterr().err
    assert main([*args, "--start", "2026-01-01T00:00:00"]) == 2
    assert "has no timezone" in capsys.readouterr().err
    assert main(["baseline", "--prometheus-url", down, "--service", "x"]) == 2
    assert "kpis" in capsys.readouterr().err


def test_the_example_spec_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "config" / "examples" / "baseline.yaml"
    spec = load_spec(example, {})
    assert [kpi.name for kpi in spec.kpis] == ["error_ratio", "p99_latency", "queue_age"]
    assert spec.threshold.policy(spec.kpis[0].threshold).floor == 0.01
