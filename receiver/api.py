"""The JSON API under /api/v1, for the API bearer token or a dashboard session.

Reads: alerts, decisions, deployments, rollbacks, incidents, jobs and queues, automation
state, audit. Actions: approve or deny a decision, retry a rollback, retry or cancel a job,
pause or resume automation (globally or per workload), reset the circuit breaker. Actions
need the operator role (and a session's CSRF token); every one is audited with who did it,
when, and why.
"""

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from core import registries
from core.decisions import DecisionError, UnknownRollback
from core.models import KINDS, Workload
from core.records import AuditEntry, utcnow
from receiver import access
from receiver import queries as q
from receiver.answers import (
    AuditList,
    AutomationState,
    CircuitClosed,
    DecisionList,
    DeploymentList,
    IncidentList,
    Paused,
    Resumed,
    respond,
)
from receiver.bodies import parse_body
from receiver.errors import ApiError
from receiver.payloads import VisibleName
from receiver.queries import parse_query
from receiver.state import app_state

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def authenticate() -> None:
    """Every API route needs credentials; actions need an operator (and CSRF for sessions)."""
    principal = access.authenticate(request, app_state())
    access.require_action_allowed(request, principal)
    g.principal = principal


def actor() -> str:
    """Who is acting, as the audit log names them (`api:<name>` or `user:<name>`)."""
    return g.principal.actor


class ActionBody(BaseModel):
    """An optional reason for an action."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=1000)


class WorkloadBody(BaseModel):
    """A workload named in an action."""

    model_config = ConfigDict(extra="forbid")
    namespace: VisibleName = Field(min_length=1, max_length=253)
    name: VisibleName = Field(min_length=1, max_length=253)
    kind: str = "Deployment"
    cluster: VisibleName | None = None

    def workload(self, default_cluster: str) -> Workload:
        if self.kind not in KINDS:
            raise ApiError(400, "invalid_payload", f"workload.kind: must be one of {KINDS}")
        return Workload(self.cluster or default_cluster, self.namespace, self.kind, self.name)


class PauseBody(BaseModel):
    """Pause automation globally, or for one workload; a reason is required."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000)
    workload: WorkloadBody | None = None


class ResumeBody(BaseModel):
    """Resume automation globally, or for one workload."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=1000)
    workload: WorkloadBody | None = None


def audit(action: str, target: str, reason: str = "", **details) -> None:
    """Record an on-call action."""
    app_state().store.automation.audit(
        AuditEntry(
            at=utcnow(),
            actor=actor(),
            action=action,
            target=target,
            reason=reason,
            details={"request_id": g.request_id, **details},
        )
    )


# -- reads ---------------------------------------------------------------------------------


@bp.get("/alerts")
def alerts():
    """Recent alert episodes, most recently active first."""
    query = parse_query(q.AlertsQuery)
    episodes = app_state().store.episodes.recent_episodes(status=query.status, limit=query.limit)
    return jsonify({"alerts": [episode.to_json() for episode in episodes]})


@bp.get("/decisions")
def decisions():
    """Decisions, newest first; filter by outcome, reason, workload key."""
    query = parse_query(q.DecisionsQuery)
    found = app_state().store.decisions.recent(
        outcome=query.outcome, reason=query.reason, workload=query.workload, limit=query.limit
    )
    return respond(DecisionList(decisions=found))


@bp.get("/decisions/<decision_id>")
def decision(decision_id: str):
    """One decision with its evidence and history."""
    found = app_state().store.decisions.get(decision_id)
    if found is None:
        raise ApiError(404, "not_found", f"no decision {decision_id}")
    return jsonify(found.model_dump(mode="json"))


@bp.get("/deployments")
def deployments():
    """Deployment history, newest first; filter by namespace and name."""
    query = parse_query(q.DeploymentsQuery)
    found = app_state().store.rollouts.recent(
        namespace=query.namespace, name=query.name, limit=query.limit
    )
    return respond(DeploymentList(deployments=found))


@bp.get("/rollbacks")
def rollbacks():
    """Rollbacks, newest first; filter by status."""
    query = parse_query(q.RollbacksQuery)
    found = app_state().store.rollbacks.recent(status=query.status, limit=query.limit)
    return jsonify({"rollbacks": [r.to_json() for r in found]})


@bp.get("/rollbacks/<rollback_id>")
def rollback(rollback_id: str):
    """One rollback with its steps, evidence and incident."""
    store = app_state().store.rollbacks
    found = store.get(rollback_id)
    if found is None:
        raise ApiError(404, "not_found", f"no rollback {rollback_id}")
    incident = app_state().store.incidents.get(rollback_id)
    return jsonify(
        {
            **found.to_json(),
            "evidence": store.evidence(rollback_id),
            "incident": incident.model_dump(mode="json") if incident else None,
        }
    )


@bp.post("/rollbacks/<rollback_id>/retry")
def retry_rollback(rollback_id: str):
    """Run a blocked, failed or verification-failed rollback again."""
    body = parse_body(ActionBody, optional=True)
    try:
        found = app_state().engine.retry_rollback(rollback_id, actor=actor())
    except UnknownRollback as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except DecisionError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    audit("retry", f"rollback/{rollback_id}", body.reason)
    return jsonify(found.to_json()), 202


@bp.get("/incidents")
def incidents():
    """Incidents with their delivery state per target, newest first."""
    found = app_state().store.incidents.recent(limit=parse_query(q.LimitQuery).limit)
    return respond(IncidentList(incidents=found))


@bp.get("/queues")
def queue_state():
    """Jobs per queue and registry, and the live workers."""
    connection = app_state().store.redis
    return jsonify(
        {"queues": registries.counts(connection), "workers": registries.workers(connection)}
    )


@bp.get("/jobs")
def job_list():
    """Jobs in one registry (default failed), optionally of one queue, newest first."""
    query = parse_query(q.JobsQuery)
    limit = min(query.limit, registries.MAX_PAGE)
    found = registries.jobs(
        app_state().store.redis, registry=query.registry, queue_name=query.queue, limit=limit
    )
    return jsonify({"registry": query.registry, "jobs": [job.to_json() for job in found]})


@bp.get("/automation")
def automation():
    """Mode, pauses, and the circuit breaker."""
    state = app_state()
    store, breaker = state.store.automation, state.policy.circuit_breaker
    answer = AutomationState(
        mode=state.policy.mode,
        paused=store.paused(None),
        paused_workloads=store.paused_workloads(),
        circuit={
            **store.circuit(now=utcnow(), window=breaker.window),
            "max_rollbacks": breaker.max_rollbacks,
        },
    )
    return respond(answer)


@bp.get("/audit")
def audit_log():
    """On-call actions, newest first."""
    entries = app_state().store.automation.audit_log(limit=parse_query(q.AuditQuery).limit)
    return respond(AuditList(audit=entries))


# -- actions -------------------------------------------------------------------------------


@bp.post("/decisions/<decision_id>/approve")
def approve(decision_id: str):
    """Approve a rollback that awaits a human."""
    body = parse_body(ActionBody, optional=True)
    try:
        result = app_state().engine.approve(decision_id, actor=actor(), reason=body.reason)
    except DecisionError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return jsonify(result.model_dump(mode="json"))


@bp.post("/decisions/<decision_id>/deny")
def deny(decision_id: str):
    """Deny a rollback that awaits a human."""
    body = parse_body(ActionBody, optional=True)
    try:
        result = app_state().engine.deny(decision_id, actor=actor(), reason=body.reason)
    except DecisionError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    return jsonify(result.model_dump(mode="json"))


def _job_action(job_id: str, action: str):
    """Retry or cancel a job, audited."""
    body = parse_body(ActionBody, optional=True)
    act = registries.retry if action == "retry" else registries.cancel
    try:
        found = act(app_state().store.redis, job_id)
    except registries.JobActionError as exc:
        code = "not_found" if exc.status == 404 else "conflict"
        raise ApiError(exc.status, code, str(exc)) from None
    audit(f"job_{action}", f"job/{job_id}", body.reason, queue=found.queue)
    return jsonify(found.to_json()), 202 if action == "retry" else 200


@bp.post("/jobs/<job_id>/retry")
def retry_job(job_id: str):
    """Put a failed job back on its queue."""
    return _job_action(job_id, "retry")


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    """Cancel a queued, scheduled or deferred job."""
    return _job_action(job_id, "cancel")


@bp.post("/automation/pause")
def pause():
    """Pause automation, globally or for one workload."""
    state = app_state()
    body = parse_body(PauseBody)
    workload = body.workload.workload(state.policy.cluster) if body.workload else None
    state.store.automation.pause(workload=workload, actor=actor(), reason=body.reason, now=utcnow())
    audit("pause", workload.key if workload else "global", body.reason)
    return respond(Paused(paused=workload.key if workload else "global"))


@bp.post("/automation/resume")
def resume():
    """Resume automation, globally or for one workload."""
    state = app_state()
    body = parse_body(ResumeBody, optional=True)
    workload = body.workload.workload(state.policy.cluster) if body.workload else None
    was_paused = state.store.automation.resume(workload=workload)
    audit("resume", workload.key if workload else "global", body.reason, was_paused=was_paused)
    return respond(Resumed(resumed=workload.key if workload else "global", was_paused=was_paused))


@bp.post("/automation/circuit/reset")
def reset_circuit():
    """Close the circuit breaker after a human looked at what tripped it."""
    body = parse_body(ActionBody, optional=True)
    app_state().store.automation.reset_circuit(actor=actor(), now=utcnow())
    audit("circuit_reset", "circuit", body.reason)
    return respond(CircuitClosed(circuit="closed"))
