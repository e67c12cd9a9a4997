"""A Kubernetes validating admission webhook that keeps quarantined images out:
`POST /admission/validate` (AdmissionReview v1).

When `BACKSTOP_ADMISSION` is on, the API server asks before it creates or updates a
Deployment, StatefulSet, DaemonSet or Argo Rollout (deploy/admission/): an object whose pod
template brings in an image a quarantine in force keeps out (core/quarantine.py) is denied,
with a message naming the image, the rollback and its Jira issue. Only images the object
brings in count: an update that keeps an image it already ran (a scale, a label) is allowed,
so a quarantine never stops a workload that was running that image anyway.

The API server cannot present Backstop's usual credentials, and a managed control plane
cannot be told to present any: with `BACKSTOP_ADMISSION_TOKEN` set, the request must carry
it (an AdmissionConfiguration's kubeconfig can send a bearer token); without it, the route
answers without credentials, telling only whether the object it was sent would be allowed.
Off (the default), the route does not exist (404). Configure the webhook with
`failurePolicy: Ignore`: a Backstop outage must never block deploys.

Anything the API server could not have sent (not JSON, no `request.uid`) is a 400 with a
JSON error; an AdmissionReview about another kind is allowed.
"""

import json
import logging

from flask import Blueprint, jsonify, request

from core import quarantine as rules
from core.records import utcnow
from receiver import auth
from receiver.bodies import require_json
from receiver.errors import ApiError
from receiver.state import app_state

bp = Blueprint("admission", __name__, url_prefix="/admission")
log = logging.getLogger("backstop.admission")

KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Rollout"})
MAX_MESSAGE = 1000  # characters of the denial, shown by kubectl


@bp.before_request
def enabled() -> None:
    """404 unless switched on; the admission token when one is set."""
    settings = app_state().settings
    if not settings.admission:
        raise ApiError(404, "not_found", "the admission webhook is off (BACKSTOP_ADMISSION)")
    if settings.admission_token is not None:
        auth.require_token(request, settings.admission_token, user=settings.webhook_user)


@bp.post("/validate")
def validate():
    """Answer one AdmissionReview: allowed, or denied naming the quarantine."""
    require_json()
    review = _review(request.get_data(cache=False))
    asked = review["request"]
    uid = asked["uid"]
    kind = (asked.get("kind") or {}).get("kind")
    if kind not in KINDS or asked.get("operation") not in ("CREATE", "UPDATE"):
        return _answer(uid, None)
    brought = _images(asked.get("object")) - _images(asked.get("oldObject"))
    if not brought:
        return _answer(uid, None)
    state, now = app_state(), utcnow()
    found = rules.matching(state.store.quarantine.active(), sorted(brought), now)
    if not found:
        return _answer(uid, None)
    quarantine, image, why = found[0]
    jira = state.store.incidents.jira_of(quarantine.rollback_id)
    message = (
        f"Backstop: {image} is quarantined ({why}): rollback {quarantine.rollback_id} of "
        f"{quarantine.workload.workload().key} revision {quarantine.revision}"
        f"{f', {jira}' if jira else ''}; deploy a fixed image, or release the quarantine"
    )
    fields = {
        "image": image,
        "rollback_id": quarantine.rollback_id,
        "operation": asked.get("operation"),
    }
    log.info("admission denied", extra={"fields": fields})
    return _answer(uid, message[:MAX_MESSAGE])


def _review(body: bytes) -> dict:
    """The AdmissionReview sent, or a 400 for anything else."""
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
    asked = review.get("request") if isinstance(review, dict) else None
    if not isinstance(asked, dict) or not isinstance(asked.get("uid"), str) or not asked["uid"]:
        raise ApiError(400, "invalid_body", "not an AdmissionReview: request.uid is missing")
    return review


def _images(obj) -> set[str]:
    """The images a workload's pod template names (containers and init containers)."""
    if not isinstance(obj, dict):
        return set()
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    found = set()
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if isinstance(container, dict) and isinstance(container.get("image"), str):
                found.add(container["image"])
    return found


def _answer(uid: str, denial: str | None):
    response: dict = {"uid": uid, "allowed": denial is None}
    if denial is not None:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": denial}
    return jsonify(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    )
