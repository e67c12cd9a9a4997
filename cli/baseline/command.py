"""`backstop baseline`: its arguments and what it runs.

Exit status: 0 done (for --check: no error findings); 1 --check found errors, or a KPI had
no history (nothing is written then); 2 invalid spec, flags or query; 3 Prometheus
unreachable or failing (retry later).
"""

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from cli.baseline import report, rulecheck, rules
from cli.baseline.analysis import build
from cli.baseline.history import History
from cli.baseline.spec import Spec, SpecError, load_spec
from core.errors import PermanentError, TransientError
from core.integrations.prometheus import Prometheus

BUILTIN_KPIS = {
    "error_ratio": {"name": "error_ratio", "kind": "error_ratio"},
    "latency": {"name": "p99_latency", "kind": "latency"},
    "throughput": {"name": "throughput", "kind": "throughput"},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the subcommand's options on `parser`."""
    what = parser.add_argument_group("what to baseline (a spec file and/or flags; flags win)")
    what.add_argument("--spec", type=Path, help="YAML spec (docs/baselines.md)")
    what.add_argument("--service", help="service name (rule names, file names)")
    what.add_argument("--kpi", action="append", choices=sorted(BUILTIN_KPIS), help="a built-in KPI")
    what.add_argument(
        "--query",
        action="append",
        metavar="NAME=PROMQL",
        help="a custom KPI; PromQL with $window, $selector, $by",
    )
    what.add_argument("--requests-metric", help="counter of requests (default http_requests_total)")
    what.add_argument(
        "--latency-metric", help="latency histogram (default http_request_duration_seconds)"
    )
    what.add_argument(
        "--selector",
        action="append",
        metavar="LABEL=VALUE",
        help="label matcher on every series (repeat)",
    )
    what.add_argument(
        "--segment",
        action="append",
        metavar="LABEL",
        help="segment label kept apart, e.g. region (repeat)",
    )
    what.add_argument("--version-label", default=None, help="label naming the version (version)")
    what.add_argument("--stable-version", help="only the history of this (known-good) version")
    when = parser.add_argument_group("history")
    when.add_argument("--period", help="how far back from --end (default 7d)")
    when.add_argument("--start", help="ISO time with zone, e.g. 2026-03-01T00:00:00Z")
    when.add_argument("--end", help="ISO time with zone (default now)")
    when.add_argument("--window", help="alert window = rate range = step (default 5m)")
    when.add_argument("--for", dest="hold", help="rule for: duration (default 10m)")
    when.add_argument("--peak-hours", help="local START-END, e.g. 08:00-20:00")
    when.add_argument("--peak-days", help="e.g. mon-fri")
    when.add_argument("--timezone", help="of the peak hours, e.g. Europe/Berlin (default UTC)")
    how = parser.add_argument_group("thresholds")
    how.add_argument("--quantile", type=float, help="high quantile the margin applies to (0.99)")
    how.add_argument("--margin", type=float, help="fraction beyond that quantile (0.25)")
    how.add_argument("--sigmas", type=float, help="standard deviations beyond the mean (3)")
    how.add_argument("--floor", type=float, help="never propose less than this (0)")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--prometheus-url",
        default=os.environ.get("PROMETHEUS_URL"),
        help="Prometheus to read (default $PROMETHEUS_URL)",
    )
    out.add_argument("--json", action="store_true", help="JSON instead of the table")
    out.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write <service>.rules.yml and <service>.prometheusrule.yaml",
    )
    out.add_argument(
        "--check",
        nargs="+",
        type=Path,
        metavar="RULES",
        help="lint these rule files (with --prometheus-url: FP estimates too)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the baseline, or the rule check."""
    try:
        if args.check:
            return _check(args)
        return _baseline(args)
    except (SpecError, ValueError) as exc:
        print(f"backstop baseline: {exc}", file=sys.stderr)
        return 2
    except PermanentError as exc:
        print(f"backstop baseline: {exc}", file=sys.stderr)
        return 2
    except TransientError as exc:
        print(f"backstop baseline: Prometheus unavailable: {exc}", file=sys.stderr)
        return 3


def _baseline(args: argparse.Namespace) -> int:
    if not args.prometheus_url:
        raise SpecError("give --prometheus-url (or set PROMETHEUS_URL)")
    spec = load_spec(args.spec, overrides(args))
    start, end = spec.time_range(datetime.now(UTC))
    found = build(spec, History(Prometheus(args.prometheus_url, timeout=60.0), start, end))
    sys.stdout.write(report.as_json(found.as_dict()) if args.json else report.table(found))
    empty = [kpi.kpi.name for kpi in found.kpis if kpi.threshold is None]
    if empty:
        print(
            f"backstop baseline: no history for {', '.join(empty)}: nothing written "
            "(check the selector, version and period)",
            file=sys.stderr,
        )
        return 1
    if args.out:
        for path in rules.write(found, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    loaded, findings = rulecheck.load_rules(args.check)
    history, step = None, None
    spec = _check_settings(args)
    policy = spec.threshold.policy(None)
    if args.prometheus_url:
        start, end = spec.time_range(datetime.now(UTC))
        history = History(Prometheus(args.prometheus_url, timeout=60.0), start, end)
        step = spec.window.total_seconds() if args.window else None
    options = rulecheck.CheckOptions(
        tuple(args.segment or ()), history, policy, step, spec.peak.hours_model()
    )
    findings += rulecheck.check(loaded, options)
    switches = sum(1 for rule in loaded if rule.kill_switch)
    if args.json:
        document = {
            "rules": len(loaded),
            "kill_switches": switches,
            "findings": [finding.as_dict() for finding in findings],
        }
        sys.stdout.write(report.as_json(document))
    else:
        for finding in findings:
            print(finding.line())
        errors = sum(1 for finding in findings if finding.severity == rulecheck.ERROR)
        print(
            f"{len(loaded)} alerting rules, {switches} kill switches, "
            f"{len(findings)} findings ({errors} errors)"
        )
    return 1 if any(finding.severity == rulecheck.ERROR for finding in findings) else 0


def _check_settings(args: argparse.Namespace) -> Spec:
    # The check reuses the spec's period and threshold settings; it has no KPIs of its own.
    values = overrides(args)
    values.setdefault("service", "check")
    values["kpis"] = [BUILTIN_KPIS["error_ratio"]]
    return load_spec(None, values)


def overrides(args: argparse.Namespace) -> dict:
    """The spec values given as flags."""
    values: dict = {}
    _set(values, "service", args.service)
    _set(values, "window", args.window)
    _set(values, "for", args.hold)
    _set(values, "period", args.period)
    _set(values, "start", _time(args.start))
    _set(values, "end", _time(args.end))
    if args.selector:
        values["selector"] = dict(_pair(item, "--selector") for item in args.selector)
    if args.segment:
        values["segments"] = args.segment
    if args.stable_version:
        values["version"] = {"label": args.version_label or "version", "value": args.stable_version}
    peak = {"hours": args.peak_hours, "days": args.peak_days, "timezone": args.timezone}
    if any(peak.values()):
        values["peak"] = {key: value for key, value in peak.items() if value}
    threshold = {
        "quantile": args.quantile,
        "margin": args.margin,
        "sigmas": args.sigmas,
        "floor": args.floor,
    }
    if any(value is not None for value in threshold.values()):
        values["threshold"] = {k: v for k, v in threshold.items() if v is not None}
    kpis = [_builtin(kind, args) for kind in args.kpi or ()]
    kpis += [_custom(item) for item in args.query or ()]
    if kpis:
        values["kpis"] = kpis
    return values


def _builtin(kind: str, args: argparse.Namespace) -> dict:
    kpi = dict(BUILTIN_KPIS[kind])
    metric = args.latency_metric if kind == "latency" else args.requests_metric
    _set(kpi, "metric", metric)
    return kpi


def _custom(item: str) -> dict:
    name, query = _pair(item, "--query")
    return {"name": name, "kind": "query", "query": query}


def _pair(item: str, flag: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise SpecError(f"{flag} {item!r}: use NAME=VALUE")
    return name.strip(), value


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SpecError(f"invalid time {text!r}: use ISO 8601, e.g. 2026-03-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise SpecError(f"time {text!r} has no timezone: add Z or +01:00")
    return moment


def _set(values: dict, key: str, value) -> None:
    if value is not None:
        values[key] = value
