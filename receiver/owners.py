"""The API of frozen owners, under /api/v1/owners: list the freezes, and lift one.

A freeze (core/records.py FrozenOwner) keeps Argo CD, Flux or Helm from undoing a rollback
(docs/owners.md). A human lifts one by asking: the request is recorded and audited, and the
freeze review (workers/freezes.py), scheduled at once, thaws the owner and ends the
freeze in their name. The same credentials, roles and CSRF rules as the rest of the API
(receiver/api.py) apply.
"""

from typing import Annotated
from urllib.parse import quote

from flask import Blueprint, jsonify, url_for
from pydantic import BaseModel, ConfigDict, StringConstraints

from core import queues
from core.records import FrozenOwner, utcnow
from core.store import Store
from receiver import api
from receiver.answers import Flat, FreezeExtras, FreezeLinks, ReviewJob
from receiver.bodies import parse_body
from receiver.errors import ApiError
from receiver.queries import ListQuery, parse_query
from receiver.state import app_state

bp = Blueprint("owners", __name__, url_prefix="/api/v1/owners")
bp.before_request(api.authenticate)

# Freeze ids are `<group>.<kind>.<namespace>.<name>` (FrozenOwner.key): never longer.
MAX_ID = 600


class LiftBody(BaseModel):
    """Why the freeze is lifted: required, since the owner will reconcile again."""

    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


def jira_key(store: Store, rollback_id: str) -> str | None:
    """The Jira issue of the rollback's incident, when it has one."""
    return store.incidents.jira_of(rollback_id)


def jira_url(base: str | None, key: str | None) -> str | None:
    """The issue's page on the configured Jira."""
    return f"{base.rstrip('/')}/browse/{quote(key, safe='')}" if base and key else None


def freeze_json(freeze: FrozenOwner, store: Store, jira_base: str | None) -> dict:
    """A freeze as the API shows it: its record, whether active, its Jira key, links."""
    key = jira_key(store, freeze.rollback_id)
    links = FreezeLinks(
        rollback=url_for("api.rollback", rollback_id=freeze.rollback_id),
        dashboard=url_for("dashboard.rollback", rollback_id=freeze.rollback_id),
        lift=url_for("owners.lift", freeze_id=freeze.id) if freeze.active else None,
        jira=jira_url(jira_base, key),
    )
    return Flat.merge(freeze, FreezeExtras(active=freeze.active, jira=key, links=links))


@bp.get("/frozen")
def frozen():
    """Active freezes, newest first; `?all=true`: ended ones too (the newest `limit`)."""
    query = parse_query(ListQuery)
    limit = query.limit
    state = app_state()
    store = state.store
    if query.all:
        found = store.freezes.recent(limit=limit)
    else:
        found = sorted(store.freezes.active(), key=lambda f: f.frozen_at, reverse=True)[:limit]
    jira_base = state.settings.jira_url
    return jsonify({"frozen": [freeze_json(f, store, jira_base) for f in found]})


@bp.post("/frozen/<freeze_id>/lift")
def lift(freeze_id: str):
    """Ask for a freeze to be lifted now: the review thaws its owner and ends it."""
    body = parse_body(LiftBody)
    if len(freeze_id) > MAX_ID:
        raise ApiError(404, "not_found", "no such freeze")
    state = app_state()
    who = api.actor()

    def ask(freeze: FrozenOwner) -> None:
        freeze.lift_requested_by, freeze.lift_reason = who, body.reason

    found, changed = state.store.freezes.change_active(freeze_id, ask)
    if found is None:
        raise ApiError(404, "not_found", f"no freeze {freeze_id}")
    if not changed:
        raise ApiError(409, "conflict", f"freeze {freeze_id} already ended ({found.end})")
    api.audit("lift_freeze_requested", freeze_id, body.reason, owner=found.describe())
    job_id = queues.schedule_freeze_review(state.store.redis, at=utcnow())
    view = freeze_json(found, state.store, state.settings.jira_url)
    return jsonify({**view, **ReviewJob(review_job_id=job_id).model_dump()}), 202
