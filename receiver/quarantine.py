"""The API of quarantined revisions, under /api/v1/quarantine: list them, release one, and
the check a pipeline makes before it deploys.

A revision Backstop rolled back stays quarantined (core/quarantine.py) until a human
releases it with a reason (audited) or it expires. Listing and releasing take the API's
credentials and roles (receiver/api.py); the check also takes the gate or webhook token,
like the gates (receiver/gates.py), so a pipeline needs no API account.
"""

from typing import Annotated

from flask import Blueprint, jsonify, url_for
from pydantic import BaseModel, ConfigDict, StringConstraints

from core import quarantine as rules
from core import queues
from core.records import Quarantine, utcnow
from core.store import Store
from receiver import api, gates
from receiver.answers import CheckAnswer, Flat, Objection, QuarantineExtras, QuarantineLinks
from receiver.bodies import parse_body
from receiver.errors import ApiError
from receiver.owners import jira_key, jira_url
from receiver.queries import CheckQuery, ListQuery, parse_query
from receiver.state import app_state

bp = Blueprint("quarantine", __name__, url_prefix="/api/v1/quarantine")
bp.before_request(api.authenticate)
check_bp = Blueprint("quarantine_check", __name__, url_prefix="/api/v1/quarantine")
check_bp.before_request(gates.authenticate)

MAX_ID = 200


class ReleaseBody(BaseModel):
    """Why the quarantine ends: required, since the revision may then deploy again."""

    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


def quarantine_json(quarantine: Quarantine, store: Store, jira_base: str | None, now) -> dict:
    """A quarantine as the API shows it: its record, its status, its Jira key, links."""
    key = jira_key(store, quarantine.rollback_id)
    links = QuarantineLinks(
        rollback=url_for("api.rollback", rollback_id=quarantine.rollback_id),
        dashboard=url_for("dashboard.rollback", rollback_id=quarantine.rollback_id),
        release=url_for("quarantine.release", quarantine_id=quarantine.id)
        if quarantine.active
        else None,
        jira=jira_url(jira_base, key),
    )
    extras = QuarantineExtras(status=rules.status(quarantine, now), jira=key, links=links)
    return Flat.merge(quarantine, extras)


@bp.get("")
def listed():
    """Quarantines in force, newest first; `?all=true`: ended and expired ones too."""
    query = parse_query(ListQuery)
    limit = query.limit
    state, now = app_state(), utcnow()
    if query.all:
        found = state.store.quarantine.recent(limit=limit)
    else:
        active = state.store.quarantine.active()
        found = sorted(
            (q for q in active if rules.in_force(q, now)),
            key=lambda q: q.quarantined_at,
            reverse=True,
        )[:limit]
    jira_base = state.settings.jira_url
    return jsonify({"quarantine": [quarantine_json(q, state.store, jira_base, now) for q in found]})


@check_bp.get("/check")
def check():
    """May these images deploy (`?image=` once or more, optionally `&workload=`
    namespace/kind/name)? 200 either way: `allowed`, and every quarantine that objects."""
    query = parse_query(CheckQuery)
    state, now = app_state(), utcnow()
    found = rules.matching(state.store.quarantine.active(), query.image, now, query.workload)
    jira_base = state.settings.jira_url
    objections = [_objection(q, image, why, state.store, jira_base) for q, image, why in found]
    answer = CheckAnswer(allowed=not objections, images=query.image, quarantined=objections)
    return jsonify(answer.model_dump(mode="json"))


def _objection(quarantine: Quarantine, image: str, why: str, store: Store, jira_base) -> Objection:
    key = jira_key(store, quarantine.rollback_id)
    return Objection(
        image=image,
        why=why,
        quarantine_id=quarantine.id,
        workload=quarantine.workload.workload().key,
        revision=quarantine.revision,
        rollback_id=quarantine.rollback_id,
        jira=key,
        jira_url=jira_url(jira_base, key),
        expires_at=quarantine.expires_at,
    )


@bp.post("/<quarantine_id>/release")
def release(quarantine_id: str):
    """End a quarantine now: its images may deploy again. The reason is audited."""
    body = parse_body(ReleaseBody)
    if len(quarantine_id) > MAX_ID:
        raise ApiError(404, "not_found", "no such quarantine")
    state, now = app_state(), utcnow()
    found, changed = state.store.quarantine.end(
        quarantine_id, "released", by=api.actor(), reason=body.reason, at=now
    )
    if found is None:
        raise ApiError(404, "not_found", f"no quarantine {quarantine_id}")
    if not changed:
        raise ApiError(409, "conflict", f"quarantine {quarantine_id} already ended ({found.end})")
    api.audit("release_quarantine", quarantine_id, body.reason, images=found.images)
    queues.notify_chat(
        state.store.redis,
        state.policy.chat,
        rollback_id=found.rollback_id,
        event="quarantine_released",
    )
    return jsonify(quarantine_json(found, state.store, state.settings.jira_url, now))
