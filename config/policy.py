"""The policy file: schema, loader, and errors that name the file and the field.

The schema is strict (`extra="forbid"`): a typo in a policy file is an error, not a
silently ignored key. It grows by blocks: top-level switches, `intake`, and later
`defaults` plus per-service entries.
"""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from config.chat import ChatPolicy, TargetName
from config.durations import Duration
from config.intake import IntakePolicy
from config.judgment import JudgmentPolicy
from config.owners import OwnersPolicy
from config.quarantine import QuarantinePolicy


class StrictModel(BaseModel):
    """Base for our own configuration: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet", "Rollout"]
Matchers = dict[str, str]
MAX_KILL_SWITCHES = 3


Comparison = Literal["<", "<=", ">", ">="]


class VerifyQuery(StrictModel):
    """A KPI that must hold after a rollback: every series of `query` compared to `threshold`."""

    name: str = Field(min_length=1)
    query: str = Field(min_length=1, description="PromQL")
    comparison: Comparison = "<"
    threshold: float
    unit: str = ""


class VerifyPolicy(StrictModel):
    """How the prior version is verified once its rollout is complete."""

    queries: list[VerifyQuery] = Field(default_factory=list)
    interval: Duration = timedelta(seconds=15)
    window: Duration = timedelta(minutes=2)
    settle: Duration = Field(
        timedelta(0),
        description="wait this long after the rollout before the first evaluation, so rates "
        "over a range (rate(...[5m])) no longer include the bad version's samples",
    )
    wait_for_resolved: bool = Field(
        False, description="also wait for the kill-switch episode's resolved notification"
    )


class MigrationGuard(StrictModel):
    """Schema drift: never revert code across a change of this pod-template marker."""

    annotation: str | None = Field(
        "backstop.io/schema-version", description="pod template annotation naming the schema"
    )
    label: str | None = Field(None, description="or a pod template label")
    down_migration_cronjob: str | None = Field(
        None, description="a CronJob in the namespace whose job template migrates down first"
    )
    down_migration_timeout: Duration = timedelta(minutes=15)


class DecisionDefaults(StrictModel):
    """Decision timing and rollback settings; each service may override any of them."""

    min_firing: Duration = Field(
        timedelta(minutes=2), description="an episode younger than this is deferred, not acted on"
    )
    lookback: Duration = Field(
        timedelta(minutes=30), description="how far before an alert a rollout may have started"
    )
    clock_skew: Duration = Field(
        timedelta(seconds=60), description="tolerance between alert and cluster clocks"
    )
    cooldown: Duration = Field(
        timedelta(minutes=30), description="no second rollback of a workload within this"
    )
    rollout_timeout: Duration = Field(
        timedelta(minutes=10), description="how long the reverted rollout may take"
    )
    known_good_min_age: Duration = Field(
        timedelta(minutes=10), description="a rollback target must have been live this long"
    )
    max_depth: int = Field(3, ge=1, le=10, description="revisions to walk back for a good one")
    argo_undo: bool = Field(True, description="after aborting an Argo Rollout, also revert it")
    verify: VerifyPolicy = VerifyPolicy()
    migration_guard: MigrationGuard = MigrationGuard()


class WorkloadRef(StrictModel):
    """An explicit rollback target for a service's alerts."""

    kind: WorkloadKind = "Deployment"
    name: str = Field(min_length=1)
    namespace: str = Field(min_length=1)
    cluster: str | None = None


class ServicePolicy(StrictModel):
    """One service: which alerts are its own, which of them are kill switches, overrides."""

    name: str = Field(min_length=1)
    match: Matchers = Field(default_factory=dict, description="alert labels that must all equal")
    workload: WorkloadRef | None = None
    kill_switches: list[Matchers] = Field(default_factory=list)
    min_firing: Duration | None = None
    lookback: Duration | None = None
    clock_skew: Duration | None = None
    cooldown: Duration | None = None
    rollout_timeout: Duration | None = None
    known_good_min_age: Duration | None = None
    max_depth: int | None = Field(None, ge=1, le=10)
    argo_undo: bool | None = None
    verify: VerifyPolicy | None = None
    migration_guard: MigrationGuard | None = None
    judgment: JudgmentPolicy | None = None
    chat: list[TargetName] | None = Field(
        None, description="the chat targets of this service's rollbacks, instead of chat.routes"
    )

    @field_validator("kill_switches")
    @classmethod
    def _non_empty_matchers(cls, value: list[Matchers]) -> list[Matchers]:
        if any(not matchers for matchers in value):
            raise ValueError("a kill switch needs at least one label matcher")
        return value


class CircuitBreakerPolicy(StrictModel):
    """At most `max_rollbacks` within `window`; then automation stops until a human resets it."""

    max_rollbacks: int = Field(3, ge=1)
    window: Duration = timedelta(hours=1)


class CorrelationPolicy(StrictModel):
    """How alerts name their workload when no service entry says so."""

    kill_switch_label: str = "backstop_rollback"
    workload_labels: list[str] = Field(
        default_factory=list, description="extra labels naming a Deployment, e.g. app, service"
    )


class WatchPolicy(StrictModel):
    """What the deployment watcher observes."""

    namespaces: list[str] = Field(default_factory=list, description="empty: every namespace")
    ci_merge_window: Duration = Field(
        timedelta(minutes=10), description="a CI event without revision joins a rollout this near"
    )


# A cluster name is part of workload keys (`cluster/namespace/Kind/name`): no slash.
ClusterName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$", max_length=253)
]


class ClusterAccess(StrictModel):
    """How to reach one cluster: a kubeconfig context, or the pod's in-cluster credentials."""

    context: str | None = Field(None, min_length=1, description="a context of the kubeconfig")
    kubeconfig: str | None = Field(
        None, min_length=1, description="kubeconfig file (default: KUBECONFIG)"
    )
    in_cluster: bool = Field(False, description="the service account of the pod Backstop runs in")

    @model_validator(mode="after")
    def _one_way_in(self) -> "ClusterAccess":
        if self.in_cluster and (self.context or self.kubeconfig):
            raise ValueError("in_cluster: true takes no context or kubeconfig: use one way")
        if not self.in_cluster and not self.context:
            raise ValueError("say how to reach the cluster: context: <name> or in_cluster: true")
        return self


Severity = Literal["critical", "error", "warning", "info"]


class JiraPolicy(StrictModel):
    """How rollback tickets are filed in Jira (when JIRA_URL is set)."""

    project: str = Field("OPS", min_length=1)
    issue_type: str = Field("Bug", min_length=1)
    priority: dict[str, str] = Field(
        default_factory=lambda: {
            "verified": "Medium",
            "verification_failed": "Highest",
            "blocked": "High",
            "failed": "Highest",
        }
    )
    labels: list[str] = Field(default_factory=lambda: ["backstop"])
    transition_when_verified: str | None = Field(
        None, description="a transition to apply once the rollback is verified, e.g. 'In Progress'"
    )


def _default_severity() -> dict[str, Severity]:
    return {
        "verified": "warning",
        "verification_failed": "critical",
        "blocked": "critical",
        "failed": "critical",
    }


class PagerDutyPolicy(StrictModel):
    """How PagerDuty is paged (when PAGERDUTY_ROUTING_KEY is set)."""

    severity: dict[str, Severity] = Field(default_factory=_default_severity)
    resolve_when_verified: bool = True
    page_decisions: list[str] = Field(
        default_factory=lambda: [
            "ambiguous",
            "circuit_open",
            "no_recent_deployment",
            "unknown_cluster",
        ],
        description="decisions that need a human although nothing was rolled back",
    )
    decision_severity: Severity = "error"
    coalesce_window: Duration = Field(
        timedelta(hours=1),
        gt=timedelta(0),
        description="decisions that would page about one workload (or, without one, one "
        "cluster/namespace) for one reason within this window page once, saying how many",
    )
    max_pages_per_window: int = Field(
        20,
        ge=1,
        description="distinct decision pages per window; beyond it, one page per reason "
        "covers the rest, so a flood of alerts about distinct workloads pages a few times",
    )


class IncidentPolicy(StrictModel):
    """Incidents: Jira tickets, PagerDuty events and the metric snapshots they carry."""

    jira: JiraPolicy = JiraPolicy()
    pagerduty: PagerDutyPolicy = PagerDutyPolicy()
    snapshot_before: Duration = Field(
        timedelta(minutes=30), description="graphs start this long before the deployment"
    )


class Policy(StrictModel):
    """The whole policy file."""

    mode: Literal["dry-run", "enforce", "approve"] = "dry-run"
    cluster: str = Field("default", min_length=1, description="name of the local cluster")
    clusters: dict[ClusterName, ClusterAccess] | None = Field(
        None,
        min_length=1,
        description="every cluster Backstop guards; unset: only the local one, named `cluster`",
    )
    defaults: DecisionDefaults = DecisionDefaults()
    circuit_breaker: CircuitBreakerPolicy = CircuitBreakerPolicy()
    correlation: CorrelationPolicy = CorrelationPolicy()
    watch: WatchPolicy = WatchPolicy()
    services: list[ServicePolicy] = Field(default_factory=list)
    incidents: IncidentPolicy = IncidentPolicy()
    intake: IntakePolicy = IntakePolicy()
    owners: OwnersPolicy = OwnersPolicy()
    quarantine: QuarantinePolicy = QuarantinePolicy()
    chat: ChatPolicy = ChatPolicy()

    @model_validator(mode="after")
    def _chat_targets_known(self) -> "Policy":
        for index, service in enumerate(self.services):
            unknown = sorted(set(service.chat or ()) - set(self.chat.targets))
            if unknown:
                raise ValueError(
                    f"services.{index} ({service.name}): chat names no target called "
                    + ", ".join(unknown)
                )
        return self

    def service_for(self, labels: dict[str, str]) -> ServicePolicy | None:
        """The first service whose `match` labels all equal the alert's."""
        for service in self.services:
            if service.match and matches(service.match, labels):
                return service
        return None

    def guarded_clusters(self) -> tuple[str, ...]:
        """The clusters Backstop may act on: `clusters`, or else only the local `cluster`."""
        return tuple(self.clusters) if self.clusters else (self.cluster,)

    def timing(self, service: ServicePolicy | None) -> DecisionDefaults:
        """The defaults with the service's overrides applied."""
        if service is None:
            return self.defaults
        overrides = {
            name: getattr(service, name)
            for name in DecisionDefaults.model_fields
            if getattr(service, name) is not None
        }
        return self.defaults.model_copy(update=overrides)

    def warnings(self) -> list[str]:
        """Valid but unwise settings, for check-config."""
        found = []
        for index, service in enumerate(self.services):
            if len(service.kill_switches) > MAX_KILL_SWITCHES:
                found.append(
                    f"services.{index} ({service.name}): {len(service.kill_switches)} kill "
                    f"switches; keep at most {MAX_KILL_SWITCHES} KPIs per service"
                )
            if not service.match:
                found.append(f"services.{index} ({service.name}): no match, it applies to nothing")
        reached: dict[tuple, str] = {}
        for name, access in (self.clusters or {}).items():
            way = (access.in_cluster, access.kubeconfig, access.context)
            if way in reached:
                found.append(f"clusters: {reached[way]} and {name} are reached the same way")
            reached.setdefault(way, name)
        if self.clusters and self.cluster not in self.clusters:
            found.append(
                f"cluster: {self.cluster!r} is not in clusters ({', '.join(self.clusters)}): "
                "alerts without a cluster label will be skipped as unknown_cluster"
            )
        return found


def matches(matchers: Matchers, labels: dict[str, str]) -> bool:
    """True when every matcher label is present with exactly that value."""
    return all(labels.get(name) == value for name, value in matchers.items())


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file, located by its field path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class PolicyError(Exception):
    """The policy file could not be read or is invalid."""

    def __init__(self, file: Path, problems: list[PolicyProblem]):
        self.file = file
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{file}: invalid policy\n{lines}")


def field_path(location: tuple) -> str:
    """Render a pydantic error location as a dotted path, e.g. `alerts.0.status`."""
    return ".".join(str(part) for part in location)


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; raise PolicyError naming the file and each field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(path, [PolicyProblem("", f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(path, [PolicyProblem("", f"not valid YAML: {exc}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(path, [PolicyProblem("", "the top level must be a mapping")])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [PolicyProblem(field_path(err["loc"]), err["msg"]) for err in exc.errors()]
        raise PolicyError(path, problems) from None
