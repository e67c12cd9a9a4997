"""What to baseline: a service's kill-switch KPIs, from a YAML file and/or flags.

Each KPI becomes one PromQL expression per use: for the history it carries the stable
version's matcher (`version`), for the rule it does not (the rule must catch the new
version). Custom queries use the placeholders `$window` (the alert window, e.g. `5m`),
`$selector` (the label matchers, comma-separated, no braces) and `$by` (the labels kept:
`group_by` then `segments`).
"""

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cli.baseline.periods import PeakHours, parse_days, parse_hours
from cli.baseline.thresholds import ABOVE, BELOW, ThresholdPolicy
from config.durations import Duration, format_duration

MAX_KILL_SWITCHES = 3  # the source article: at most three kill-switch KPIs per service
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
PLACEHOLDER = re.compile(r"\$(?:\{(\w+)\}|(\w+))")  # $name or ${name}
DEFAULT_METRICS = {
    "error_ratio": "http_requests_total",
    "throughput": "http_requests_total",
    "latency": "http_request_duration_seconds",
}
DIRECTIONS = {"error_ratio": ABOVE, "latency": ABOVE, "throughput": BELOW}


class SpecError(ValueError):
    """The spec (file or flags) is invalid; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ThresholdSettings(_Strict):
    """How far beyond the noise thresholds go (see thresholds.ThresholdPolicy)."""

    quantile: float = Field(0.99, gt=0.5, lt=1)
    margin: float = Field(0.25, ge=0)
    sigmas: float = Field(3.0, ge=0)
    floor: float = Field(0.0, ge=0)

    def policy(self, override: "ThresholdOverride | None") -> ThresholdPolicy:
        """This policy with a KPI's own values on top."""
        values = self.model_dump()
        if override is not None:
            values.update(override.model_dump(exclude_none=True))
        return ThresholdPolicy(**values)


class ThresholdOverride(_Strict):
    """A KPI's own threshold settings; unset fields come from the spec's."""

    quantile: float | None = Field(None, gt=0.5, lt=1)
    margin: float | None = Field(None, ge=0)
    sigmas: float | None = Field(None, ge=0)
    floor: float | None = Field(None, ge=0)


class PeakSpec(_Strict):
    """Peak hours; every other window is off-peak."""

    days: str = "mon-fri"
    hours: str = "08:00-20:00"
    timezone: str = "UTC"

    def hours_model(self) -> PeakHours:
        """The checked, usable form."""
        start, end = parse_hours(self.hours)
        return PeakHours(parse_days(self.days), start, end, ZoneInfo(self.timezone))

    @model_validator(mode="after")
    def _parses(self):
        try:
            self.hours_model()
        except ZoneInfoNotFoundError:
            raise ValueError(
                f"unknown timezone {self.timezone!r} (e.g. UTC, Europe/Berlin)"
            ) from None
        return self


class VersionSpec(_Strict):
    """Only the stable version's series: `label` equals `value` in the history queries."""

    label: str = Field(pattern=LABEL_NAME)
    value: str = Field(min_length=1)


class KpiSpec(_Strict):
    """One kill-switch KPI."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["error_ratio", "latency", "throughput", "query"]
    metric: str | None = Field(None, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    errors: str = 'code=~"5.."'  # error_ratio: the matcher of failed requests
    quantile: float = Field(0.99, gt=0, lt=1)  # latency: which quantile of the histogram
    query: str | None = None  # query: PromQL with $window, $selector, $by
    direction: Literal["above", "below"] | None = None
    threshold: ThresholdOverride | None = None
    summary: str | None = None  # the rule's summary annotation

    @model_validator(mode="after")
    def _query_only_for_custom(self):
        if self.kind == "query":
            if not self.query:
                raise ValueError("a KPI of kind 'query' needs a query")
            used = {braced or bare for braced, bare in PLACEHOLDER.findall(self.query)}
            unknown = used - {"window", "selector", "by"}
            if unknown:
                raise ValueError(
                    f"unknown placeholders {sorted(unknown)}: use $window, $selector, $by"
                )
        elif self.query:
            raise ValueError(f"'query' is only for kind 'query', not {self.kind!r}")
        return self

    @property
    def compares(self) -> str:
        """ABOVE when a high value is bad (errors, latency), BELOW when a low one is."""
        return self.direction or DIRECTIONS.get(self.kind, ABOVE)


class Spec(_Strict):
    """A service's KPIs and how to baseline them."""

    service: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    selector: dict[str, str] = {}
    version: VersionSpec | None = None
    group_by: list[str] = ["namespace", "deployment"]
    segments: list[str] = []
    labels: dict[str, str] = {}  # extra labels on every rule (e.g. the workload, if absent)
    window: Duration = timedelta(minutes=5)
    for_: Duration = Field(timedelta(minutes=10), alias="for")
    period: Duration = timedelta(days=7)
    start: datetime | None = None
    end: datetime | None = None
    peak: PeakSpec = PeakSpec()
    threshold: ThresholdSettings = ThresholdSettings()
    rule_namespace: str | None = None  # the PrometheusRule's namespace
    rule_labels: dict[str, str] = {}  # the PrometheusRule's metadata labels (ruleSelector)
    kpis: list[KpiSpec] = Field(min_length=1)

    @field_validator("selector", "labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(LABEL_NAME, name):
                raise ValueError(f"invalid label name {name!r}")
        return value

    @field_validator("group_by", "segments")
    @classmethod
    def _label_list(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(LABEL_NAME, name):
                raise ValueError(f"invalid label name {name!r}")
        return list(dict.fromkeys(value))

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a timezone, e.g. 2026-03-01T00:00:00Z")
        return value

    @model_validator(mode="after")
    def _coherent(self):
        names = [kpi.name for kpi in self.kpis]
        if len(set(names)) != len(names):
            raise ValueError("KPI names must be unique")
        if len(self.kpis) > MAX_KILL_SWITCHES:
            raise ValueError(
                f"{len(self.kpis)} KPIs: choose at most {MAX_KILL_SWITCHES} kill switches "
                "per service (more alerts, more false rollbacks)"
            )
        if self.window.total_seconds() < 1 or self.window.total_seconds() % 1:
            raise ValueError("window must be a whole number of seconds, at least 1s")
        if self.start and self.end and self.start >= self.end:
            raise ValueError("start must be before end")
        return self

    @property
    def kept(self) -> list[str]:
        """The labels every expression keeps: group_by, then segments."""
        return list(dict.fromkeys([*self.group_by, *self.segments]))

    def matchers(self, *, history: bool) -> str:
        """The label matchers; with the stable version's only for the history."""
        pairs = dict(self.selector)
        if history and self.version is not None:
            pairs[self.version.label] = self.version.value
        return ",".join(f'{name}="{_escape(value)}"' for name, value in pairs.items())

    def expression(self, kpi: KpiSpec, *, history: bool) -> str:
        """The KPI's PromQL over one alert window, per group_by + segments."""
        window = format_duration(self.window)
        selector = self.matchers(history=history)
        by = ", ".join(self.kept)
        if kpi.kind == "query":
            assert kpi.query is not None  # KpiSpec requires one for kind "query"
            values = {"window": window, "selector": selector, "by": by}
            return PLACEHOLDER.sub(lambda m: values[m.group(1) or m.group(2)], kpi.query)
        metric = kpi.metric or DEFAULT_METRICS[kpi.kind]
        if kpi.kind == "error_ratio":
            failed = ",".join(part for part in (selector, kpi.errors) if part)
            return (
                f"sum by ({by}) (rate({metric}{{{failed}}}[{window}]))"
                f" / sum by ({by}) (rate({metric}{{{selector}}}[{window}]))"
            )
        if kpi.kind == "latency":
            keep = ", ".join([*self.kept, "le"])
            return (
                f"histogram_quantile({kpi.quantile:g}, sum by ({keep}) "
                f"(rate({metric}_bucket{{{selector}}}[{window}])))"
            )
        return f"sum by ({by}) (rate({metric}{{{selector}}}[{window}]))"

    def time_range(self, now: datetime) -> tuple[datetime, datetime]:
        """The history's [start, end]: given, or the `period` before end (default now)."""
        end = self.end or now
        return (self.start or end - self.period), end


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def load_spec(path: Path | None, overrides: dict) -> Spec:
    """Read the YAML spec (if any), apply flag values on top, validate."""
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"{path}: {exc}") from None
        if not isinstance(data, dict):
            raise SpecError(f"{path}: the spec must be a mapping")
    merged = _merge(data, overrides)
    try:
        return Spec.model_validate(merged)
    except ValidationError as exc:
        where = path or "flags"
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise SpecError(f"{where}: {problems}") from None


def _merge(base: dict, top: dict) -> dict:
    # Flags win; nested mappings (peak, threshold, selector) merge key by key.
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
