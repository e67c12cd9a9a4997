"""Every operation of Backstop's HTTP interface, as data: its route, credentials, the
pydantic models of its body, query and answers, and the statuses it can answer.

receiver/openapi.py turns this table into the OpenAPI document; the routes parse their
bodies and queries with the same models (receiver/bodies.py parse_body,
receiver/queries.py parse_query) and build their answers with them (receiver/answers.py),
so the document cannot say something the code does not do. tests/integration/
test_openapi.py fails when a route of the app is missing here, or this names one the app
does not have. The dashboard's HTML pages and the login form are for browsers, not
programs, and are left out (EXCLUDED_BLUEPRINTS).
"""

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from core.records import Decision
from receiver import admission, answers, api, gates, health, owners, quarantine, snapshots, webhooks
from receiver import queries as q
from receiver.payloads import AlertmanagerWebhook, DeploymentEvent, GrafanaWebhook

# Blueprints whose routes are pages for people, not part of the API, and why.
EXCLUDED_BLUEPRINTS = {
    "dashboard": "HTML pages for people (docs/dashboard.md), not an API",
    "login": "the dashboard's HTML login form (a browser posts it, with its nonce cookie)",
}
EXCLUDED_ENDPOINTS = {"static": "the dashboard's static files (CSS, JavaScript)"}

# Who may call, as lists of OpenAPI security requirements (any one of them suffices).
Security = list[dict[str, list[str]]]
API_READ: Security = [{"apiToken": []}, {"session": []}]
API_ACTION: Security = [{"apiToken": []}, {"session": [], "csrf": []}]
WEBHOOK: Security = [{"webhookToken": []}, {"webhookBasic": []}]
GATE: Security = [{"gateToken": []}, *WEBHOOK, *API_READ]
SNAPSHOT: Security = [*API_READ, {"signedLink": []}]
ADMISSION: Security = [{"admissionToken": []}, {}]  # {}: no credentials unless a token is set
PUBLIC: Security = []

Answer = Any  # a model class, answers.Flat, answers.Listing, a Media, or a tuple of them


@dataclass(frozen=True)
class Media:
    """An answer that is not JSON: its media type, and a description."""

    media_type: str
    description: str
    schema: dict = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Operation:
    """One method on one path, and everything the document says about it."""

    method: str
    path: str  # OpenAPI template: /api/v1/decisions/{decision_id}
    view: Callable  # its docstring is the operation's summary
    tag: str
    security: list[dict]
    answers: dict[int, Answer]
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()  # statuses of this route's own refusals (404, 409, ...)
    blueprint: str = ""  # when not the `bp` of the view's module

    @property
    def endpoint(self) -> str:
        """The Flask endpoint: `<blueprint>.<function>`."""
        blueprint = self.blueprint or sys.modules[self.view.__module__].bp.name
        return f"{blueprint}.{self.view.__name__}"


def read(path: str, view: Callable, answer: Answer, *, query=None, tag="API") -> Operation:
    """A GET of the JSON API: the API token or a session, any role."""
    return Operation("get", path, view, tag, API_READ, {200: answer}, query=query)


def act(
    path: str,
    view: Callable,
    answer: Answer,
    *,
    status: int = 200,
    body: type[BaseModel] = api.ActionBody,
    required: bool = False,
    errors: tuple[int, ...] = (),
) -> Operation:
    """A POST action of the JSON API: the API token, or a session with its CSRF token, and
    the operator role; audited."""
    answers_ = {status: answer}
    return Operation(
        "post", path, view, "Actions", API_ACTION, answers_, body, required, None, errors
    )


METRICS = Media("text/plain", "Prometheus text exposition format 0.0.4")

OPERATIONS: tuple[Operation, ...] = (
    # -- webhooks
    Operation(
        "post",
        "/webhooks/alertmanager",
        webhooks.alertmanager,
        "Webhooks",
        WEBHOOK,
        {202: answers.WebhookAnswer},
        AlertmanagerWebhook,
    ),
    Operation(
        "post",
        "/webhooks/grafana",
        webhooks.grafana,
        "Webhooks",
        WEBHOOK,
        {202: answers.WebhookAnswer},
        GrafanaWebhook,
    ),
    Operation(
        "post",
        "/webhooks/deployments",
        webhooks.deployments,
        "Webhooks",
        WEBHOOK,
        {202: answers.DeploymentAnswer},
        DeploymentEvent,
    ),
    # -- reads
    read("/api/v1/alerts", api.alerts, answers.AlertList, query=q.AlertsQuery),
    read("/api/v1/decisions", api.decisions, answers.DecisionList, query=q.DecisionsQuery),
    read("/api/v1/decisions/{decision_id}", api.decision, Decision),
    read("/api/v1/deployments", api.deployments, answers.DeploymentList, query=q.DeploymentsQuery),
    read("/api/v1/rollbacks", api.rollbacks, answers.RollbackList, query=q.RollbacksQuery),
    read("/api/v1/rollbacks/{rollback_id}", api.rollback, answers.RollbackDetail),
    read("/api/v1/incidents", api.incidents, answers.IncidentList, query=q.LimitQuery),
    read("/api/v1/queues", api.queue_state, answers.QueueState),
    read("/api/v1/jobs", api.job_list, answers.JobList, query=q.JobsQuery),
    read("/api/v1/automation", api.automation, answers.AutomationState),
    read("/api/v1/audit", api.audit_log, answers.AuditList, query=q.AuditQuery),
    read("/api/v1/owners/frozen", owners.frozen, answers.FrozenList, query=q.ListQuery),
    read("/api/v1/quarantine", quarantine.listed, answers.QuarantineList, query=q.ListQuery),
    Operation(
        "get",
        "/api/v1/quarantine/check",
        quarantine.check,
        "Quarantine",
        GATE,
        {200: answers.CheckAnswer},
        query=q.CheckQuery,
        blueprint=quarantine.check_bp.name,
    ),
    # -- actions
    act("/api/v1/decisions/{decision_id}/approve", api.approve, Decision, errors=(409,)),
    act("/api/v1/decisions/{decision_id}/deny", api.deny, Decision, errors=(409,)),
    act(
        "/api/v1/rollbacks/{rollback_id}/retry",
        api.retry_rollback,
        answers.RollbackView,
        status=202,
        errors=(409,),
    ),
    act("/api/v1/jobs/{job_id}/retry", api.retry_job, answers.JobModel, status=202, errors=(409,)),
    act("/api/v1/jobs/{job_id}/cancel", api.cancel_job, answers.JobModel, errors=(409,)),
    act("/api/v1/automation/pause", api.pause, answers.Paused, body=api.PauseBody, required=True),
    act("/api/v1/automation/resume", api.resume, answers.Resumed, body=api.ResumeBody),
    act("/api/v1/automation/circuit/reset", api.reset_circuit, answers.CircuitClosed),
    act(
        "/api/v1/owners/frozen/{freeze_id}/lift",
        owners.lift,
        answers.LiftAnswer,
        status=202,
        body=owners.LiftBody,
        required=True,
        errors=(409,),
    ),
    act(
        "/api/v1/quarantine/{quarantine_id}/release",
        quarantine.release,
        answers.QuarantineView,
        body=quarantine.ReleaseBody,
        required=True,
        errors=(409,),
    ),
    # -- gates and admission
    *(
        Operation(
            method,
            "/api/v1/gates/{namespace}/{name}",
            gates.gate,
            "Gates",
            GATE,
            {200: answers.GateVerdict, 412: answers.GateVerdict},
            query=q.GateQuery,
            errors=(404, 503),
        )
        for method in ("get", "post")
    ),
    Operation(
        "post",
        "/admission/validate",
        admission.validate,
        "Admission",
        ADMISSION,
        {200: answers.AdmissionAnswer},
        admission.AdmissionReview,
        errors=(404,),
    ),
    # -- files, health, the document itself
    Operation(
        "get",
        "/snapshots/{snapshot_id}.{ext}",
        snapshots.snapshot,
        "Snapshots",
        SNAPSHOT,
        {200: (Media("image/png", "the graph"), Media("text/csv", "the data"))},
        query=q.SnapshotQuery,
        errors=(403, 404),
    ),
    Operation("get", "/healthz", health.healthz, "Health", PUBLIC, {200: answers.Health}),
    Operation(
        "get",
        "/readyz",
        health.readyz,
        "Health",
        PUBLIC,
        {200: answers.Readiness, 503: (answers.Readiness, answers.ErrorEnvelope)},
    ),
    Operation("get", "/metrics", health.prometheus_metrics, "Health", PUBLIC, {200: METRICS}),
)


def by_endpoint() -> dict[tuple[str, str], Operation]:
    """The operations by (Flask endpoint, method)."""
    return {(op.endpoint, op.method): op for op in OPERATIONS}
