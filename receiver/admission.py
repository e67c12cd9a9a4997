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

import logging
from typing import Any

from flask import Blueprint, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.policy import field_path
from core import quarantine as rules
from core.records import utcnow
from receiver import auth
from receiver.answers import AdmissionAnswer, AdmissionResponse, AdmissionStatus
from receiver.bodies import require_json
from receiver.errors import ApiError
from receiver.state import app_state

bp = Blueprint("admission", __name__, url_prefix="/admission")
log = logging.getLogger("backstop.admission")

KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Rollout"})
MAX_MESSAGE = 1000  # characters of the denial, shown by kubectl


class Kubernetes(BaseModel):
    """Base for what the API server sends: its fields Backstop does not read are kept."""

    model_config = ConfigDict(extra="allow")


class GroupVersionKind(Kubernetes):
    kind: str | None = None


class AdmissionRequest(Kubernetes):
    """The part of an AdmissionReview's request Backstop reads; an object is any JSON
    object (its pod template is read only where it is one: see _images)."""

    uid: str = Field(min_length=1)
    kind: GroupVersionKind | None = None
    operation: str | None = None
    object: dict[str, Any] | None = None
    oldObject: dict[str, Any] | None = None


class AdmissionReview(Kubernetes):
    """An AdmissionReview (admission.k8s.io/v1) as the API server sends it."""

    request: AdmissionRequest


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
    asked = _review(request.get_data(cache=False)).request
    uid = asked.uid
    kind = asked.kind.kind if asked.kind else None
    if kind not in KINDS or asked.operation not in ("CREATE", "UPDATE"):
        return _answer(uid, None)
    brought = _images(asked.object) - _images(asked.oldObject)
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
        "operation": asked.operation,
    }
    log.info("admission denied", extra={"fields": fields})
    return _answer(uid, message[:MAX_MESSAGE])


def _review(body: bytes) -> AdmissionReview:
    """The AdmissionReview sent, or a 400 for anything else."""
    try:
        return AdmissionReview.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        if error["type"] == "json_invalid":
            raise ApiError(400, "invalid_json", "the body is not JSON") from None
        where = field_path(error["loc"]) or "body"
        raise ApiError(
            400, "invalid_body", f"not an AdmissionReview: {where}: {error['msg']}"
        ) from None


def _images(obj: dict | None) -> set[str]:
    """The images a workload's pod template names (containers and init containers). Any
    level that is not what Kubernetes would send (a spec that is no object, containers
    that are no list) names none: the API server validates objects, others may not."""
    spec = _field(_field(_field(obj, "spec"), "template"), "spec")
    found = set()
    for name in ("initContainers", "containers"):
        containers = spec.get(name) if spec else None
        for container in containers if isinstance(containers, list) else []:
            if isinstance(container, dict) and isinstance(container.get("image"), str):
                found.add(container["image"])
    return found


def _field(obj: Any, name: str) -> dict | None:
    """`obj[name]` when both are JSON objects, else None."""
    value = obj.get(name) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else None


def _answer(uid: str, denial: str | None):
    status = AdmissionStatus(code=403, reason="Forbidden", message=denial) if denial else None
    answer = AdmissionAnswer(
        response=AdmissionResponse(uid=uid, allowed=denial is None, status=status)
    )
    return jsonify(answer.model_dump(mode="json", exclude_none=True))
