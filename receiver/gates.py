"""Gates for progressive delivery: /api/v1/gates/<namespace>/<name>.

GET (Argo Rollouts' `web` metric) or POST (Flagger's webhooks, whose JSON body is read by
nobody: the URL names the workload). Healthy: 200 with the reasons as JSON; unhealthy: 412.
`?verdict=body` answers 200 either way, with `healthy` in the body, for Argo Rollouts,
which counts a non-2xx answer as a measurement *error* (retried, `consecutiveErrorLimit`)
rather than a *failure*. 404 when no rollout of the workload is recorded, 503 when
Prometheus cannot evaluate a verify query: a gate that cannot vouch never says healthy.

Credentials, any of: the gate token (BACKSTOP_GATE_TOKEN, good for nothing else, so it is
the one to put in a Canary's webhook URL), the webhook credentials, or the API's (token or
session, any role). Bearer, or basic auth as BACKSTOP_WEBHOOK_USER.
"""

from flask import Blueprint, current_app, jsonify, request

from core.gates import PrometheusUnavailable, UnknownService, UnknownWorkload, judge
from core.integrations.prometheus import Prometheus
from core.models import Workload
from core.records import utcnow
from receiver import access, auth
from receiver.errors import ApiError
from receiver.queries import GateQuery, parse_query
from receiver.state import app_state

bp = Blueprint("gates", __name__, url_prefix="/api/v1/gates")
PROMETHEUS = "backstop.gates.prometheus"
# A gate answers within a controller's webhook timeout (Flagger's default is 10 s).
PROMETHEUS_TIMEOUT = 5.0


@bp.before_request
def authenticate() -> None:
    """The gate or webhook token, else API credentials; a 401 otherwise."""
    state = app_state()
    settings = state.settings
    for token in (settings.gate_token, settings.webhook_token):
        if token is None:
            continue  # an unset token must not open the gate (require_token would)
        try:
            auth.require_token(request, token, user=settings.webhook_user)
            return
        except ApiError:
            pass
    access.authenticate(request, state)


@bp.route("/<namespace>/<name>", methods=["GET", "POST"])
def gate(namespace: str, name: str):
    """Judge the workload's current revision now."""
    state = app_state()
    query = parse_query(GateQuery)
    cluster = query.cluster or state.policy.cluster
    if cluster not in state.policy.guarded_clusters():
        raise ApiError(404, "unknown_cluster", f"Backstop does not guard cluster {cluster!r}")
    workload = Workload(cluster, namespace, query.kind, name)
    try:
        verdict = judge(
            state.store,
            state.policy,
            _prometheus(),
            workload,
            utcnow(),
            service_name=query.service,
        )
    except (UnknownWorkload, UnknownService) as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except PrometheusUnavailable as exc:
        raise ApiError(503, "prometheus_unavailable", str(exc)) from None
    status = 200 if verdict.healthy or query.verdict == "body" else 412
    return jsonify(verdict.to_json()), status


def _prometheus() -> Prometheus | None:
    """One Prometheus client per app (its HTTP session is reused), or None when unset."""
    url = app_state().settings.prometheus_url
    if not url:
        return None
    client = current_app.extensions.get(PROMETHEUS)
    if client is None:
        client = current_app.extensions[PROMETHEUS] = Prometheus(url, timeout=PROMETHEUS_TIMEOUT)
    return client
