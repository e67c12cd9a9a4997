"""`backstop baseline --check`: lint existing alerting rules against the article's rules
for kill switches, and, with a Prometheus, against the known-good history.

Kill switches are rules labelled `backstop_rollback="true"`; other rules are counted and
left alone. Reads plain rule files and PrometheusRule manifests (several documents per
file are fine). Findings (severity, code):

- error `too_many_kill_switches`: a service has more than three.
- error `missing_for`: no `for:` (or 0s): one bad evaluation rolls back.
- warning `for_shorter_than_window`: `for:` under the expression's rate window.
- error `no_workload_labels`: the expression aggregates away namespace and the workload
  label and the rule does not set them, so Backstop cannot tell what to roll back.
- warning `global_only`: a segment label (region, platform...) exists on the metric but
  the expression aggregates it away: a failure in one segment hides in the average.
- error `fires_on_baseline`: with history, the rule would have fired on known-good data.
- warning `threshold_near_baseline`: it did not fire, but the threshold is inside the
  proposed buffer above the noise.
- info `no_history`, `threshold_unreadable`: the estimate could not be made.
- error `unreadable_file`, `invalid_rule`: the file or a rule cannot be used at all.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import yaml

from cli.baseline import promql
from cli.baseline.analysis import most_conservative, segment_proposals
from cli.baseline.history import History
from cli.baseline.periods import PeakHours
from cli.baseline.rules import KILL_SWITCH_LABEL
from cli.baseline.spec import MAX_KILL_SWITCHES, PeakSpec
from cli.baseline.thresholds import (
    ABOVE,
    BELOW,
    ThresholdPolicy,
    episode_starts,
    firing,
    per_week,
)
from config.durations import format_duration, parse_duration

ERROR, WARNING, INFO = "error", "warning", "info"
WORKLOAD_LABELS = ("deployment", "statefulset", "daemonset", "rollout")
DEFAULT_SEGMENTS = ("region", "zone", "platform", "client_platform")
DEFAULT_STEP = 60.0  # when an expression has no range selector


@dataclass(frozen=True)
class Finding:
    """One problem: where, how bad, what, and how to fix it."""

    severity: str
    code: str
    file: str
    group: str
    rule: str
    message: str
    fix: str

    def as_dict(self) -> dict:
        """Plain values, for JSON."""
        return asdict(self)

    def line(self) -> str:
        """One line for people."""
        where = f"{self.file}: {self.group}/{self.rule}" if self.rule else self.file
        return f"{self.severity.upper():7} {self.code}: {where}: {self.message} Fix: {self.fix}"


@dataclass(frozen=True)
class Rule:
    """An alerting rule and where it came from."""

    file: str
    group: str
    body: dict

    @property
    def name(self) -> str:
        """The alert name."""
        return str(self.body.get("alert", ""))

    @property
    def labels(self) -> dict:
        """The rule's own labels."""
        return self.body.get("labels") or {}

    @property
    def kill_switch(self) -> bool:
        """Labelled as a Backstop kill switch."""
        return str(self.labels.get(KILL_SWITCH_LABEL, "")).lower() == "true"

    def finding(self, severity: str, code: str, message: str, fix: str) -> Finding:
        """A finding about this rule."""
        return Finding(severity, code, self.file, self.group, self.name, message, fix)


@dataclass(frozen=True)
class CheckOptions:
    """What the lint knows besides the rules."""

    segments: tuple[str, ...] = ()  # given explicitly: assumed to exist on every metric
    history: History | None = None  # with it: FP estimates and segment discovery
    policy: ThresholdPolicy = field(default_factory=ThresholdPolicy)
    step: float | None = None  # evaluation step of the estimate; default the rate window
    peak: PeakHours = field(default_factory=lambda: PeakSpec().hours_model())


def load_rules(paths: Iterable[Path]) -> tuple[list[Rule], list[Finding]]:
    """Alerting rules of the files (plain or PrometheusRule), and findings for bad ones."""
    rules, findings = [], []
    for path in paths:
        try:
            documents = [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]
        except (OSError, yaml.YAMLError) as exc:
            findings.append(
                Finding(
                    ERROR,
                    "unreadable_file",
                    str(path),
                    "",
                    "",
                    f"{exc}.",
                    "fix the YAML (promtool check rules FILE says where).",
                )
            )
            continue
        for document in documents:
            groups = _groups(document)
            if groups is None:
                findings.append(
                    Finding(
                        ERROR,
                        "unreadable_file",
                        str(path),
                        "",
                        "",
                        "neither a rule file (groups:) nor a PrometheusRule.",
                        "give a Prometheus rule file or a PrometheusRule manifest.",
                    )
                )
                continue
            for group in groups:
                name = str(group.get("name", "")) if isinstance(group, dict) else ""
                for body in (group.get("rules") or []) if isinstance(group, dict) else []:
                    if isinstance(body, dict) and "alert" in body:
                        rules.append(Rule(str(path), name, body))
    return rules, findings


def check(rules: list[Rule], options: CheckOptions) -> list[Finding]:
    """Every finding for the kill switches among `rules`, errors first."""
    switches = [rule for rule in rules if rule.kill_switch]
    findings = _too_many(switches)
    for rule in switches:
        expr = rule.body.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            findings.append(rule.finding(ERROR, "invalid_rule", "no expr.", "add the expression."))
            continue
        findings += _hold(rule, expr)
        findings += _workload(rule, expr)
        findings += _segments(rule, expr, options)
        if options.history is not None:
            findings += _history(rule, expr, options)
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    return sorted(findings, key=lambda found: order[found.severity])


def service_of(rule: Rule) -> str:
    """Which service a kill switch guards: its `service` label, else its workload labels
    (rule labels or equality matchers), else its group."""
    if rule.labels.get("service"):
        return str(rule.labels["service"])
    matchers = promql.equality_matchers(str(rule.body.get("expr", "")))
    known = {**matchers, **rule.labels}
    workload = next((known[label] for label in WORKLOAD_LABELS if label in known), None)
    if workload:
        return f"{known.get('namespace', '')}/{workload}".lstrip("/")
    return f"group {rule.group}"


def _too_many(switches: list[Rule]) -> list[Finding]:
    by_service: dict[str, list[Rule]] = defaultdict(list)
    for rule in switches:
        by_service[service_of(rule)].append(rule)
    findings = []
    for service, rules in by_service.items():
        names = list(dict.fromkeys(rule.name for rule in rules))
        if len(names) > MAX_KILL_SWITCHES:
            first = rules[0]
            findings.append(
                Finding(
                    ERROR,
                    "too_many_kill_switches",
                    first.file,
                    first.group,
                    ", ".join(names),
                    f"{service} has {len(names)} kill switches.",
                    f"keep at most {MAX_KILL_SWITCHES} (5xx ratio, p99 latency, throughput); "
                    f"drop the {KILL_SWITCH_LABEL} label from the others so they page only.",
                )
            )
    return findings


def _hold(rule: Rule, expr: str) -> list[Finding]:
    try:
        hold = parse_duration(rule.body.get("for") or 0).total_seconds()
    except ValueError:
        return [
            rule.finding(
                ERROR,
                "invalid_rule",
                f"for: {rule.body.get('for')!r} is not a duration.",
                "write it like 5m.",
            )
        ]
    window = promql.largest_range(expr)
    if hold == 0:
        suggestion = format_duration_seconds(max(window or 300, 300))
        return [
            rule.finding(
                ERROR,
                "missing_for",
                "no for: one evaluation over the threshold rolls back.",
                f"add `for: {suggestion}` (at least the rate window) so a spike cannot.",
            )
        ]
    if window and hold < window:
        return [
            rule.finding(
                WARNING,
                "for_shorter_than_window",
                f"for: {format_duration_seconds(hold)} is shorter than the "
                f"{format_duration_seconds(window)} window: one bad window fires it.",
                f"use `for: {format_duration_seconds(window)}` or more.",
            )
        ]
    return []


def _workload(rule: Rule, expr: str) -> list[Finding]:
    split = promql.split_comparison(expr)
    kept = promql.kept_labels(split[0] if split else expr)
    if kept is None:
        return []
    missing = []
    if "namespace" not in kept and "namespace" not in rule.labels:
        missing.append("namespace")
    if not any(label in kept or label in rule.labels for label in WORKLOAD_LABELS):
        missing.append("deployment")
    if not missing:
        return []
    return [
        rule.finding(
            ERROR,
            "no_workload_labels",
            f"the expression drops {', '.join(missing)}: Backstop cannot tell which workload "
            "to roll back (decision no_workload).",
            "keep them in `by (...)`, or set them as rule labels.",
        )
    ]


def _segments(rule: Rule, expr: str, options: CheckOptions) -> list[Finding]:
    kept = promql.kept_labels(expr)
    if kept is None:
        return []
    candidates = options.segments or (DEFAULT_SEGMENTS if options.history else ())
    missing = [label for label in candidates if label not in kept]
    if options.history is not None and missing:
        names = promql.metric_names(expr)
        matchers = _matchers_text(promql.equality_matchers(expr))
        missing = [
            label
            for label in missing
            if any(options.history.carries(name, matchers, label) for name in names)
        ]
    if not missing:
        return []
    labels = ", ".join(missing)
    return [
        rule.finding(
            WARNING,
            "global_only",
            f"the metric is segmented by {labels} but the expression averages over it: "
            "a failure in one segment can hide in the global value.",
            f"add {labels} to every `by (...)` of the expression.",
        )
    ]


def _history(rule: Rule, expr: str, options: CheckOptions) -> list[Finding]:
    split = promql.split_comparison(expr)
    if split is None or split[1] in ("==", "!="):
        return [
            rule.finding(
                INFO,
                "threshold_unreadable",
                "no trailing `<expr> > <number>`: no false-positive estimate.",
                "none needed; write `<expr> > <number>` to get one.",
            )
        ]
    left, op, threshold = split
    history = options.history
    assert history is not None  # check() calls this only with a history
    step = options.step or promql.largest_range(left) or DEFAULT_STEP
    series = history.windows(left, step)
    if not series:
        return [
            rule.finding(
                INFO,
                "no_history",
                "the expression has no data in the period.",
                "check the period (--start/--end) and the metric names.",
            )
        ]
    hold = parse_duration(rule.body.get("for") or 0).total_seconds()
    masks = [firing(s.points, threshold, op, step_seconds=step, hold_seconds=hold) for s in series]
    windows = sum(len(s.points) for s in series)
    hot = sum(sum(mask) for mask in masks)
    episodes = sum(
        len(episode_starts(s.points, mask, step_seconds=step))
        for s, mask in zip(series, masks, strict=True)
    )
    weekly = per_week(episodes, history.period_seconds(step))
    direction = ABOVE if op.startswith(">") else BELOW
    proposals = segment_proposals(series, options.policy, direction, options.peak, step)
    proposal = most_conservative(proposals, direction)
    estimate = f"{episodes} firing(s) ({weekly:.2f}/week, {hot / windows:.2%} of {windows} windows)"
    if episodes:
        return [
            rule.finding(
                ERROR,
                "fires_on_baseline",
                f"threshold {threshold:g} would have fired on the known-good history: {estimate}.",
                f"raise it to {proposal:g} (or run `backstop baseline`).",
            )
        ]
    inside = threshold < proposal if direction == ABOVE else threshold > proposal
    if inside:
        return [
            rule.finding(
                WARNING,
                "threshold_near_baseline",
                f"threshold {threshold:g} is within the noise buffer (proposed "
                f"{proposal:g}); {estimate}.",
                f"move it to {proposal:g} to keep a buffer above the noise.",
            )
        ]
    return []


def _groups(document) -> list | None:
    if not isinstance(document, dict):
        return None
    if document.get("kind") == "PrometheusRule":
        return (document.get("spec") or {}).get("groups") or []
    if "groups" in document:
        return document.get("groups") or []
    return None


def _matchers_text(matchers: dict[str, str]) -> str:
    return ",".join(f'{name}="{value}"' for name, value in matchers.items())


def format_duration_seconds(seconds: float) -> str:
    """60 → "1m"."""
    return format_duration(timedelta(seconds=seconds))
