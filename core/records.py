"""Records Backstop keeps in Redis as JSON: rollouts, decisions, audit entries.

Pydantic models, so what is written is what is read back, typed, and the API can serve
them as they are.
"""

import uuid
from datetime import UTC, datetime
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from core.models import Workload
from core.owners import Claim, OwnerKind
from core.vocabulary import TERMINAL, Outcome, RollbackStatus


def new_id() -> str:
    """A random record id."""
    return uuid.uuid4().hex[:20]


def utcnow() -> datetime:
    """Now, timezone-aware."""
    return datetime.now(UTC)


class Record(BaseModel):
    """Base for stored records: tolerant of fields added by newer versions."""

    model_config = ConfigDict(extra="ignore")


class WorkloadRecord(Record):
    """A workload as stored (see core.models.Workload)."""

    cluster: str
    namespace: str
    kind: str
    name: str

    @classmethod
    def of(cls, workload: Workload) -> "WorkloadRecord":
        return cls(
            cluster=workload.cluster,
            namespace=workload.namespace,
            kind=workload.kind,
            name=workload.name,
        )

    def workload(self) -> Workload:
        return Workload(self.cluster, self.namespace, self.kind, self.name)


class OwnerRecord(Record):
    """The tool that reconciles a workload (core/owners.py), and how it was found."""

    kind: str
    namespace: str
    name: str
    found_by: str
    # False for a mark that only names a candidate (Argo CD's instance label, Helm's
    # annotations) until the owner's own objects confirm it.
    confirmed: bool = True

    @classmethod
    def of(cls, claim: Claim) -> "OwnerRecord":
        return cls(
            kind=claim.kind,
            namespace=claim.namespace,
            name=claim.name,
            found_by=claim.found_by,
            confirmed=claim.certain,
        )

    def claim(self) -> Claim:
        """The mark this record was made of, to act through the owner again."""
        kind = cast(OwnerKind, self.kind)
        return Claim(kind, self.namespace, self.name, self.found_by, self.confirmed)

    def describe(self) -> str:
        """`<kind> <namespace>/<name>`, as humans read it."""
        return f"{self.kind} {self.namespace}/{self.name}"


class Rollout(Record):
    """One rollout of a workload, from the watcher, from CI, or both merged."""

    id: str = Field(default_factory=new_id)
    workload: WorkloadRecord
    revision: str | None = None
    previous_revision: str | None = None
    images: list[str] = Field(default_factory=list)
    change_cause: str = ""
    started_at: datetime
    completed_at: datetime | None = None
    by_backstop: bool = False
    rollback_of: str | None = None
    # Who reconciles the workload, from its marks when the watcher saw this revision.
    owner: OwnerRecord | None = None
    # What labels this revision's pods (their pod-template-hash, rollouts-pod-template-hash
    # or controller-revision-hash), from the watcher; "" when only CI reported it.
    template_hash: str = ""
    sources: list[str] = Field(default_factory=list)
    version: str = ""
    commit: str = ""
    # The commit deployed before this one, the repository's web URL and the pipeline run
    # (from CI): with a known forge, a compare link (core/urls.py compare_url).
    previous_commit: str = ""
    repository: str = ""
    pipeline_url: str = ""
    author: str = ""
    url: str = ""


class DecisionStep(Record):
    """One outcome a decision went through (deferred, then rollback, ...)."""

    at: datetime
    outcome: Outcome
    reason: str
    by: str = "backstop"
    # What the human who approved or denied said (their stated reason); "" otherwise.
    note: str = ""


class Decision(Record):
    """What Backstop decided about one alert episode, and why. Its id is the episode's."""

    id: str
    episode_id: str
    alertname: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    workload: WorkloadRecord | None = None
    rollout: Rollout | None = None
    outcome: Outcome
    reason: str
    detail: str = ""
    confidence: str = ""
    evidence: dict = Field(default_factory=dict)
    policy: dict = Field(default_factory=dict)
    mode: str = ""
    job_id: str | None = None
    recheck_at: datetime | None = None
    # The webhook request that first reported the episode (its X-Request-Id), for the logs.
    request_id: str = ""
    # When several rollouts could explain the episode: each candidate judged against the
    # revision before it (workers/candidates.py), and the one picked, if exactly one was
    # confirmed worse: {"picked": revision | None, "judged_at", "revisions": {...}}.
    candidates: dict = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    history: list[DecisionStep] = Field(default_factory=list)

    def summary(self) -> dict:
        """The short form carried in webhook answers."""
        return {
            "id": self.id,
            "outcome": self.outcome,
            "reason": self.reason,
            "workload": self.workload.workload().key if self.workload else None,
        }


class AuditEntry(Record):
    """Who did what, when, to what, and why."""

    at: datetime = Field(default_factory=utcnow)
    actor: str
    action: str
    target: str = ""
    reason: str = ""
    details: dict = Field(default_factory=dict)


class RollbackStep(Record):
    """One step of a rollback: what ran, when, how long, and what it found."""

    name: str
    status: Literal["ok", "failed", "blocked", "skipped"]
    started_at: datetime
    finished_at: datetime
    detail: str = ""
    data: dict = Field(default_factory=dict)

    @property
    def duration_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)

    def to_json(self) -> dict:
        """With its duration, for the API."""
        return {**self.model_dump(mode="json"), "duration_ms": self.duration_ms}


class Rollback(Record):
    """The execution of one rollback decision, step by step. Its id is the RQ job id."""

    id: str
    decision_id: str
    workload: WorkloadRecord
    bad_revision: str
    target_revision: str | None = None
    created_revision: str | None = None
    mode: str = "enforce"
    # Who reconciles the workload, as pre-flight found it (see core/owners.py).
    owner: OwnerRecord | None = None
    # An Argo Rollout aborted without undoing its template (its owner would re-apply it).
    aborted_only: bool = False
    status: RollbackStatus = "running"
    reason: str = ""
    steps: list[RollbackStep] = Field(default_factory=list)
    preflight: dict = Field(default_factory=dict)
    patch_type: str = ""
    patch: dict | list | None = None
    # Was the bad revision really worse than the target? (core/judging.py)
    judgment: dict = Field(default_factory=dict)
    verification: dict = Field(default_factory=dict)
    attempts: int = 0
    incident_job_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def step(self, name: str) -> RollbackStep | None:
        """The last recorded step called `name`."""
        return next((s for s in reversed(self.steps) if s.name == name), None)

    def to_json(self) -> dict:
        """The API view: steps carry their durations."""
        data = self.model_dump(mode="json")
        data["steps"] = [s.to_json() for s in self.steps]
        return data


DeliveryState = Literal["not_configured", "pending", "delivered", "failed"]


class Delivery(Record):
    """The delivery of an incident to one target (Jira or PagerDuty)."""

    state: DeliveryState = "pending"
    ref: str = ""
    detail: str = ""
    attempts: int = 0
    done: list[str] = Field(default_factory=list)
    updated_at: datetime | None = None


class Incident(Record):
    """What humans were told about a rollback (or a decision that needs one), and where."""

    id: str
    kind: Literal["rollback", "decision"] = "rollback"
    key: str
    workload: str = ""
    summary: str = ""
    severity: str = ""
    status: str = ""
    events: list[str] = Field(default_factory=list)
    snapshots: list[dict] = Field(default_factory=list)
    jira: Delivery = Field(default_factory=Delivery)
    pagerduty: Delivery = Field(default_factory=Delivery)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


FreezeEnd = Literal["moved_past", "expired", "lifted"]


class FrozenOwner(Record):
    """An owner object Backstop froze so a rollback sticks: an Application's auto-sync, a
    Kustomization, a HelmRelease, an image automation, or one workload's reconcile.

    `stash` is what thawing puts back (the owner's own settings before the freeze);
    `source` is the owner's source revision when frozen, so a later one shows the source
    moved past the bad revision. Ended freezes keep their record, with how they ended.
    """

    id: str
    # argoproj.io/Application, argoproj.io/ApplicationSet, kustomize.toolkit.fluxcd.io/
    # Kustomization, helm.toolkit.fluxcd.io/HelmRelease, image.toolkit.fluxcd.io/
    # ImageUpdateAutomation, or apps/Deployment (one workload's reconcile disabled).
    api_version: str
    kind: str
    namespace: str
    name: str
    # What was done, in words: "auto-sync disabled", "suspended", "reconcile disabled".
    how: str
    owner: OwnerRecord
    workload: WorkloadRecord
    rollback_id: str
    bad_revision: str
    reason: str
    stash: dict = Field(default_factory=dict)
    source: str = ""
    frozen_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None
    ended_by: str = ""
    end: FreezeEnd | None = None
    end_reason: str = ""
    # A human asked for the freeze to be lifted; the review job lifts it.
    lift_requested_by: str = ""
    lift_reason: str = ""

    @property
    def active(self) -> bool:
        return self.end is None

    @staticmethod
    def key(api_version: str, kind: str, namespace: str, name: str) -> str:
        """The id of a freeze: one per owner object (a second rollback joins the first)."""
        group = api_version.rpartition("/")[0] or "core"
        return f"{group}.{kind}.{namespace}.{name}".lower()

    def describe(self) -> str:
        """`<Kind> <namespace>/<name> (<how>)`, as humans read it."""
        return f"{self.kind} {self.namespace}/{self.name} ({self.how})"


QuarantineEnd = Literal["released", "expired", "issue_done"]


class Quarantine(Record):
    """A revision Backstop rolled back, kept out until its root cause is handled: the image
    references its pod template named and the digests its pods ran (`imageID`), matched
    by core/quarantine.py. One per rollback (its id is the rollback's); an ended one keeps
    its record, with how it ended."""

    id: str
    workload: WorkloadRecord
    revision: str
    template_hash: str = ""
    images: list[str] = Field(default_factory=list)
    digests: list[str] = Field(default_factory=list)
    rollback_id: str
    decision_id: str
    # Why the revision was rolled back: the rollback's status and reason.
    reason: str = ""
    quarantined_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None
    ended_by: str = ""
    end: QuarantineEnd | None = None
    end_reason: str = ""

    @property
    def active(self) -> bool:
        return self.end is None
