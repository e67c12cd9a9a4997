"""Alert webhooks: Alertmanager v4 and Grafana v1 into the intake pipeline.

Order of checks, so each answer means exactly one thing: credentials (401), content type
(415), size (413), Grafana signature (401), payload (400), alerts per webhook (413) and
labels per alert (400, receiver/limits.py), store (503), then 202.
Nothing is stored unless the whole request is valid.
"""

import logging
import time
from collections.abc import Callable

import msgspec
from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import ValidationError

from core.intake import Intake
from core.models import AlertEvent, Workload
from core.records import utcnow
from core.replication import replicated
from core.store.rollouts import rollout_for
from receiver import auth, limits, metrics
from receiver.answers import DeploymentAnswer
from receiver.bodies import invalid_payload, parse_body, require_json
from receiver.payloads import DeploymentEvent, alertmanager_events, grafana_events
from receiver.state import AppState, app_state

log = logging.getLogger("backstop.receiver.webhooks")
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
INTAKE = "backstop.intake"
_JSON = msgspec.json.Encoder()


def receive(source: str, parse: Callable[[bytes], list[AlertEvent]]):
    """Authenticate, validate and ingest one webhook of `source`."""
    g.webhook_source = source
    g.webhook_started = time.perf_counter()
    state = app_state()
    auth.require_webhook_auth(request, state.settings)
    require_json()
    body = request.get_data(cache=False)
    if source == "grafana":
        auth.verify_grafana_signature(request, state.settings, body)
    try:
        events = parse(body)
    except ValidationError as exc:
        raise invalid_payload(exc) from None
    events = limits.bounded(events, state.settings)
    replicas = state.settings.redis_min_replicas
    if replicas:
        # BACKSTOP_REDIS_MIN_REPLICAS: 202 only once replicas hold the writes, else 503.
        with replicated(
            state.store.redis,
            replicas=replicas,
            timeout=state.settings.redis_replica_timeout_seconds,
        ):
            result = intake(state).ingest(events)
    else:
        result = intake(state).ingest(events)
    g.webhook_counts = {
        "alerts": len(events),
        "accepted": result.accepted,
        "duplicates": result.duplicates,
    }
    firing = sum(1 for event in events if event.status == "firing")
    for status, count in (("firing", firing), ("resolved", len(events) - firing)):
        if count:
            metrics.child(metrics.ALERTS_RECEIVED, source, status).inc(count)
    if result.duplicates:
        metrics.child(metrics.ALERT_DUPLICATES, source).inc(result.duplicates)
    # WebhookAnswer's shape (receiver/answers.py, the OpenAPI document), built as a plain
    # dict: validating our own values into the model and dumping them again cost every
    # webhook ~15 µs (2 % of a worker's time under P1's load; py-spy). Written by msgspec
    # as jsonify would (compact, a final newline), but for non-ASCII characters, which
    # stay UTF-8 rather than \u escapes: a quarter of jsonify's time.
    answer: dict = {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "decisions": [decision.summary() for decision in result.decisions],
        "request_id": g.request_id,
    }
    return Response(_JSON.encode(answer) + b"\n", 202, mimetype="application/json")


def intake(state: AppState) -> Intake:
    """This app's intake pipeline in this process, created on first use (so after a fork)."""
    found = current_app.extensions.get(INTAKE)
    if found is None:
        # Replication confirmed per webhook means every webhook writes: no write-behind.
        write_behind = state.settings.redis_min_replicas == 0
        found = current_app.extensions.setdefault(
            INTAKE, Intake(state.engine, write_behind=write_behind)
        )
    return found


@bp.post("/alertmanager")
def alertmanager():
    """Receive an Alertmanager webhook (version 4)."""
    return receive("alertmanager", alertmanager_events)


@bp.post("/grafana")
def grafana():
    """Receive a Grafana alerting webhook (version 1)."""
    return receive("grafana", grafana_events)


@bp.post("/deployments")
def deployments():
    """Record a deployment reported by CI/CD, merged with the watcher's record."""
    g.webhook_source = "deployments"
    g.webhook_started = time.perf_counter()
    state = app_state()
    auth.require_webhook_auth(request, state.settings)
    event = parse_body(DeploymentEvent)
    workload = Workload(
        event.cluster or state.policy.cluster, event.namespace, event.kind, event.name
    )
    rollout = state.store.rollouts.record_ci(
        rollout_for(
            workload,
            revision=None if event.revision is None else str(event.revision),
            started_at=event.started_at or utcnow(),
            images=event.images,
            version=event.version,
            commit=event.commit,
            previous_commit=event.previous_commit,
            repository=event.repository,
            pipeline_url=event.pipeline_url,
            author=event.author,
            url=event.url,
            sources=["ci"],
        ),
        merge_window=state.policy.watch.ci_merge_window,
    )
    answer = DeploymentAnswer(rollout=rollout, request_id=g.request_id)
    return jsonify(answer.model_dump(mode="json")), 202


@bp.after_request
def account(response: Response) -> Response:
    """Count, time and log every webhook request, whatever its outcome."""
    source = g.get("webhook_source")
    if source is None:  # rejected before routing reached a handler (404, 405)
        return response
    elapsed = time.perf_counter() - g.webhook_started
    metrics.child(metrics.WEBHOOK_REQUESTS, source, str(response.status_code)).inc()
    metrics.child(metrics.WEBHOOK_DURATION, source).observe(elapsed)
    if log.isEnabledFor(logging.INFO):  # the fields cost more than the check
        fields = {
            "source": source,
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 2),
            **g.get("webhook_counts", {}),
        }
        log.info("webhook", extra={"fields": fields})
    return response
