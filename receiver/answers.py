"""What the routes answer, as pydantic models: the routes build their JSON with these (or
serve a stored record as it is, core/records.py), and the OpenAPI document
(receiver/openapi.py) describes the answers from the same models.

A view that is a stored record plus a few fields (a freeze with its links) is `Flat`:
the record and an extras model, merged into one JSON object by the route and described as
`allOf` the two by the document.
"""

from datetime import datetime
from typing import Any, Literal

from flask import Response, jsonify
from pydantic import BaseModel, ConfigDict, Field

from core.records import AuditEntry, Decision, FrozenOwner, Incident, Quarantine, Rollback, Rollout
from core.vocabulary import Outcome


class Answer(BaseModel):
    """Base for answers: built by the routes, never parsed from a client."""

    model_config = ConfigDict(extra="forbid")


def respond(answer: BaseModel, status: int = 200) -> tuple[Response, int]:
    """An answer as the JSON response."""
    return jsonify(answer.model_dump(mode="json")), status


class Flat:
    """One JSON object made of several models' fields (a record and its extras)."""

    def __init__(self, name: str, description: str, *parts: type[BaseModel]):
        self.name, self.description, self.parts = name, description, parts

    @staticmethod
    def merge(*models: BaseModel) -> dict:
        """The models' JSON, merged into one object (later parts win)."""
        merged: dict = {}
        for model in models:
            merged.update(model.model_dump(mode="json"))
        return merged


class Listing:
    """A JSON object holding one list of `item` (a Flat view) under `key`."""

    def __init__(self, key: str, item: Flat):
        self.key, self.item = key, item


# -- errors ----------------------------------------------------------------------------------


class Problem(Answer):
    """One problem with a request body: where, and what."""

    path: str
    message: str


class ErrorBody(Answer):
    """What went wrong: a stable code for programs, a message for people, the request id
    (also in the X-Request-Id header) to quote."""

    code: str = Field(examples=["invalid_payload", "unauthorized", "conflict"])
    message: str
    request_id: str
    details: list[Problem] | None = Field(None, description="every problem, for bodies")


class ErrorEnvelope(Answer):
    """Every error answer: {"error": {...}}."""

    error: ErrorBody


# -- webhooks --------------------------------------------------------------------------------


class DecisionSummary(Answer):
    """A decision in short, as a webhook answer carries it."""

    id: str
    outcome: Outcome
    reason: str
    workload: str | None = Field(description="cluster/namespace/Kind/name, when one is named")


class WebhookAnswer(Answer):
    """An alert webhook, accepted: how many alerts were new, and what was decided."""

    accepted: int
    duplicates: int
    decisions: list[DecisionSummary]
    request_id: str


class DeploymentAnswer(Answer):
    """A CI deployment event, recorded (merged with the watcher's record of it)."""

    rollout: Rollout
    request_id: str


# -- reads -----------------------------------------------------------------------------------


class EpisodeView(Answer):
    """One alert episode's latest state (core/store/episodes.py Episode.to_json)."""

    id: str
    status: str
    source: str
    alertname: str
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str | None
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    notifications: int
    generator_url: str


class AlertList(Answer):
    alerts: list[EpisodeView]


class DecisionList(Answer):
    decisions: list[Decision]


class DeploymentList(Answer):
    deployments: list[Rollout]


class RollbackStepView(Answer):
    """A rollback step with its duration (core/records.py RollbackStep.to_json)."""

    name: str
    status: Literal["ok", "failed", "blocked", "skipped"]
    started_at: datetime
    finished_at: datetime
    detail: str
    data: dict
    duration_ms: int


class RollbackView(Rollback):
    """A rollback as the API shows it: its steps carry their durations."""

    steps: list[RollbackStepView] = Field(default_factory=list)  # type: ignore[assignment]


class RollbackList(Answer):
    rollbacks: list[RollbackView]


class RollbackDetail(RollbackView):
    """One rollback with its evidence and the incident filed about it."""

    evidence: dict | None
    incident: Incident | None


class IncidentList(Answer):
    incidents: list[Incident]


class WorkerView(Answer):
    """A live RQ worker (core/registries.py workers)."""

    name: str
    state: str
    current_job: str | None
    queues: list[str]
    last_heartbeat: datetime | None
    successful_jobs: int
    failed_jobs: int


class QueueState(Answer):
    """Jobs per queue and registry, and the live workers."""

    queues: dict[str, dict[str, int]]
    workers: list[WorkerView]


class JobModel(Answer):
    """One RQ job (core/registries.py JobView.to_json)."""

    id: str
    queue: str
    status: str
    description: str
    function: str
    kwargs: dict[str, Any]
    enqueued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    scheduled_for: datetime | None
    retries_left: int | None
    error: str | None


class JobList(Answer):
    registry: str
    jobs: list[JobModel]


class AutomationState(Answer):
    """Mode, pauses, and the circuit breaker."""

    mode: str
    paused: dict[str, str] | None = Field(description="the global pause: who, why, when")
    paused_workloads: dict[str, dict[str, str]]
    circuit: dict[str, str | int] = Field(
        description="state, why it opened, rollbacks_in_window, max_rollbacks"
    )


class AuditList(Answer):
    audit: list[AuditEntry]


# -- actions ---------------------------------------------------------------------------------


class Paused(Answer):
    paused: str = Field(description='"global", or the workload key')


class Resumed(Answer):
    resumed: str = Field(description='"global", or the workload key')
    was_paused: bool


class CircuitClosed(Answer):
    circuit: Literal["closed"]


# -- owners and quarantine -------------------------------------------------------------------


class FreezeLinks(Answer):
    rollback: str
    dashboard: str
    lift: str | None
    jira: str | None


class FreezeExtras(Answer):
    """What a freeze's view adds to its record."""

    active: bool
    jira: str | None = Field(description="the rollback's Jira issue key")
    links: FreezeLinks


class ReviewJob(Answer):
    review_job_id: str = Field(description="the freeze review job that lifts the freeze")


FreezeView = Flat(
    "FreezeView", "A frozen owner, whether active, its Jira key, links", FrozenOwner, FreezeExtras
)
LiftAnswer = Flat(
    "LiftAnswer",
    "The freeze, and the review job that lifts it",
    FrozenOwner,
    FreezeExtras,
    ReviewJob,
)


FrozenList = Listing("frozen", FreezeView)


class QuarantineLinks(Answer):
    rollback: str
    dashboard: str
    release: str | None
    jira: str | None


class QuarantineExtras(Answer):
    """What a quarantine's view adds to its record."""

    status: str = Field(description="in force, expired, released, ...")
    jira: str | None
    links: QuarantineLinks


QuarantineView = Flat(
    "QuarantineView", "A quarantine, its status, its Jira key, links", Quarantine, QuarantineExtras
)


QuarantineList = Listing("quarantine", QuarantineView)


class Objection(Answer):
    """A quarantine that keeps an image out."""

    image: str
    why: str
    quarantine_id: str
    workload: str
    revision: str
    rollback_id: str
    jira: str | None
    jira_url: str | None
    expires_at: datetime


class CheckAnswer(Answer):
    """May these images deploy?"""

    allowed: bool
    images: list[str]
    quarantined: list[Objection]


# -- gates, admission, health ----------------------------------------------------------------


class WorkloadView(Answer):
    cluster: str
    namespace: str
    kind: str
    name: str
    key: str


class GateChecks(Answer):
    kill_switches_firing: list[dict[str, Any]]
    firing_since_before_this_revision: list[dict[str, Any]]
    rolling_back: str | None
    verify: dict[str, Any]
    quarantined: list[dict[str, Any]]
    judgment: dict[str, Any]
    not_blamed_on_this_revision: list[str]


class GateVerdict(Answer):
    """A gate's verdict on the workload's current revision (core/gates.py Verdict)."""

    healthy: bool
    workload: WorkloadView
    revision: str | None
    rollout_started_at: datetime
    service: str | None
    reasons: list[str]
    checks: GateChecks
    checked_at: datetime


class AdmissionStatus(Answer):
    code: int
    reason: str
    message: str


class AdmissionResponse(Answer):
    uid: str
    allowed: bool
    status: AdmissionStatus | None = None


class AdmissionAnswer(Answer):
    """An AdmissionReview (admission.k8s.io/v1) with its response."""

    apiVersion: Literal["admission.k8s.io/v1"] = "admission.k8s.io/v1"
    kind: Literal["AdmissionReview"] = "AdmissionReview"
    response: AdmissionResponse


class Health(Answer):
    status: Literal["ok"]


class Readiness(Answer):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
