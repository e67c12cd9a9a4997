"""Liveness, readiness and Backstop's own metrics; no credentials needed."""

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from receiver import metrics
from receiver.answers import Health, Readiness
from receiver.state import app_state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up and serving."""
    return jsonify(Health(status="ok").model_dump())


@bp.get("/readyz")
def readyz():
    """Ready when Redis answers; the policy is loaded before the app exists at all."""
    try:
        app_state().store.ping()
    except RedisError as exc:
        checks = {"redis": f"unavailable ({type(exc).__name__})", "config": "ok"}
        return jsonify(Readiness(status="unavailable", checks=checks).model_dump()), 503
    return jsonify(Readiness(status="ready", checks={"redis": "ok", "config": "ok"}).model_dump())


@bp.get("/metrics")
def prometheus_metrics():
    """Prometheus text exposition of Backstop's metrics."""
    payload, content_type = metrics.render(app_state().store)
    return Response(payload, content_type=content_type)
