"""The on-call dashboard: server-rendered pages over the same Redis records as the API.

Pages only read. Every button posts to the JSON API (static/backstop.js adds the session's
CSRF token), so the dashboard can do nothing the API does not allow, and every action is
audited there. Pages refresh themselves every few seconds.
"""

from collections.abc import Collection
from datetime import datetime, timedelta
from urllib.parse import urlencode

from flask import Blueprint, Flask, abort, g, redirect, render_template, request, url_for

from core import markup, queues, registries, urls
from core.decisions import rollback_id
from core.records import Decision, utcnow
from core.vocabulary import OUTCOMES, REASONS, ROLLBACK_STATUSES
from receiver import access, charts, owners, quarantine_page
from receiver.state import app_state

bp = Blueprint("dashboard", __name__)

PAGE = 50
MAX_PAGE = 500
# Filters read at most this many of the newest records, so a page costs the same with a
# year of history as with a day's; the page says when it stopped looking.
SCAN_LIMIT = 5_000
REFRESH_SECONDS = 5


@bp.before_request
def require_login():
    """Pages need a session (or insecure local mode); else go to the login page."""
    state = app_state()
    if state.settings.api_token is None:
        g.principal = access.Principal("local", "operator", "token")
        return None
    principal = access.session_principal(request, state)
    if principal is None:
        return redirect(url_for("login.login_form", next=request.full_path.rstrip("?")), 303)
    g.principal = principal
    return None


@bp.after_request
def security_headers(response):
    """No framing, no foreign scripts or styles, no caching of on-call data."""
    return with_security_headers(response)


def with_security_headers(response):
    """Headers every HTML page of Backstop carries (the login page too)."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def register_template_helpers(app: Flask) -> None:
    """Filters and globals the templates use."""
    app.jinja_env.filters["ago"] = ago
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["ms"] = milliseconds
    app.jinja_env.filters["visible"] = markup.html
    app.jinja_env.filters["revealed"] = markup.reveal
    app.jinja_env.filters["http_url"] = urls.http_url
    app.jinja_env.filters["number"] = charts.number
    app.jinja_env.globals["reason_text"] = REASONS.get
    app.jinja_env.globals["query_with"] = query_with
    app.jinja_env.globals["judgment_chart"] = charts.chart
    app.jinja_env.globals["judged_kpis"] = charts.judged_kpis
    app.after_request_funcs.setdefault("login", []).append(with_security_headers)


# -- formatting ----------------------------------------------------------------------------


def _parse(moment: datetime | str | None) -> datetime | None:
    if isinstance(moment, str):
        try:
            return datetime.fromisoformat(moment)
        except ValueError:
            return None
    return moment


def when(moment: datetime | str | None) -> str:
    """An absolute UTC time, to the second."""
    moment = _parse(moment)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def ago(moment: datetime | str | None) -> str:
    """How long ago, roughly ("3m ago", "in 20s")."""
    moment = _parse(moment)
    if moment is None:
        return "—"
    seconds = int((utcnow() - moment).total_seconds())
    span = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if span >= size:
            text = f"{span // size}{unit}"
            break
    else:
        text = f"{span}s"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def milliseconds(value: int | float | None) -> str:
    """A duration in ms, in the unit that reads best."""
    if value is None:
        return "—"
    if value < 1000:
        return f"{int(value)} ms"
    if value < 120_000:
        return f"{value / 1000:.1f} s"
    return f"{value / 60_000:.1f} min"


def query_with(**changes) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    args = {k: v for k, v in request.args.items()}
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return f"{request.path}?{urlencode(args)}" if args else request.path


def _choice(name: str, choices: Collection[str]) -> str | None:
    value = request.args.get(name) or None
    return value if value in choices else None


def _limit() -> int:
    raw = request.args.get("limit", "")
    return min(int(raw), MAX_PAGE) if raw.isdigit() and int(raw) > 0 else PAGE


def page(template: str, **context):
    """Render a page with what every page needs."""
    state = app_state()
    return render_template(
        template,
        principal=g.principal,
        mode=state.policy.mode,
        paused=state.store.automation.paused(None),
        awaiting=state.store.decisions.count_with("awaiting_approval"),
        refresh=REFRESH_SECONDS,
        **context,
    )


# -- pages ---------------------------------------------------------------------------------


@bp.get("/")
def overview():
    """Mode, switches, breaker, queues, workers, and the last 24 hours in numbers."""
    state = app_state()
    store, now = state.store, utcnow()
    since = now - timedelta(hours=24)
    breaker = state.policy.circuit_breaker
    return page(
        "overview.html",
        paused_workloads=store.automation.paused_workloads(),
        circuit={
            **store.automation.circuit(now=now, window=breaker.window),
            "max_rollbacks": breaker.max_rollbacks,
            "window": breaker.window,
        },
        queue_counts=registries.counts(store.redis),
        registries=registries.REGISTRIES,
        workers=registries.workers(store.redis),
        day={
            "episodes": store.episodes.active_since(since),
            "decisions": store.decisions.counts(since=since),
            "rollbacks": store.rollbacks.counts(since=since),
            "incidents": store.incidents.count_since(since),
        },
        recent_rollbacks=store.rollbacks.recent(limit=5),
    )


@bp.get("/alerts")
def alerts():
    """Episodes with their decision and its reason; filter by status, workload, outcome."""
    store = app_state().store
    status = _choice("status", ("firing", "resolved"))
    outcome = _choice("outcome", OUTCOMES)
    workload = request.args.get("workload", "").strip()[:300]
    limit = _limit()
    if outcome or workload:
        rows, exhausted = _alerts_by_decision(store, status, outcome, workload, limit)
    else:
        episodes = store.episodes.recent_episodes(status=status, limit=limit)
        decisions = store.decisions.get_many([e.id for e in episodes])
        rows = [(episode, decisions.get(episode.id)) for episode in episodes]
        exhausted = len(rows) < limit
    return page(
        "alerts.html",
        rows=rows,
        filters={"status": status, "outcome": outcome, "workload": workload},
        outcomes=OUTCOMES,
        limit=limit,
        more=not exhausted and limit < MAX_PAGE,
        scan_limit=SCAN_LIMIT,
    )


def _alerts_by_decision(store, status, outcome, workload, limit):
    """Filter through decisions (the newest SCAN_LIMIT), then join their episodes, a page
    at a time, stopping as soon as `limit` rows are found. Returns (rows, exhausted)."""
    parts = [part.encode() for part in workload.split("/") if part]

    def maybe(raw: bytes) -> bool:
        # Every part of the filter must at least appear in the record's text.
        return all(part in raw for part in parts)

    def matches(decision: Decision) -> bool:
        if not workload:
            return True
        if decision.workload is None:
            return False
        named = decision.workload
        return workload in named.workload().key or workload in f"{named.namespace}/{named.name}"

    rows = []
    pages = store.decisions.scan(
        outcome=outcome, first_page=limit, scan=SCAN_LIMIT, raw_filter=maybe if parts else None
    )
    for page in pages:
        found = [decision for decision in page if matches(decision)]
        episodes = store.episodes.get_many([d.episode_id for d in found])
        for decision in found:
            episode = episodes.get(decision.episode_id)
            if episode is not None and (status is None or episode.status == status):
                rows.append((episode, decision))
        if len(rows) >= limit:
            return rows[:limit], False
    return rows, True


@bp.get("/decisions/<decision_id>")
def decision(decision_id: str):
    """One decision: outcome, reason, history, evidence, and its rollback if any."""
    store = app_state().store
    found = store.decisions.get(decision_id)
    if found is None:
        abort(404, f"no decision {decision_id}")
    rollback = store.rollbacks.get(found.job_id) if found.job_id else None
    return page(
        "decision.html",
        decision=found,
        episode=store.episodes.episode(found.episode_id),
        rollback=rollback,
        chat={} if rollback else _approval_chat(store, found),
    )


def _approval_chat(store, decision: Decision) -> dict:
    """What chat was told of a decision's wait for approval, or its denial: under the id of
    the rollback it would run (the rollback's page shows it all once that runs)."""
    if decision.workload is None or decision.rollout is None:
        return {}
    return store.chat.threads(rollback_id(decision))


@bp.get("/rollbacks")
def rollbacks():
    """Rollbacks newest first, and rollback jobs still waiting for a worker."""
    store = app_state().store
    status = _choice("status", ROLLBACK_STATUSES)
    limit = _limit()
    found = store.rollbacks.recent(status=status, limit=limit)
    waiting = []
    if status is None:
        for registry in ("queued", "scheduled"):
            waiting += registries.jobs(
                store.redis, registry=registry, queue_name=queues.ROLLBACKS, limit=PAGE
            )
        known = {r.id for r in found}
        waiting = [job for job in waiting if job.id not in known]
    return page(
        "rollbacks.html",
        rollbacks=found,
        waiting=waiting,
        statuses=ROLLBACK_STATUSES,
        status=status,
        limit=limit,
        more=len(found) == limit and limit < MAX_PAGE,
    )


@bp.get("/rollbacks/<rollback_id>")
def rollback(rollback_id: str):
    """One rollback: timeline, graphs, evidence, verification, incident links."""
    state = app_state()
    store = state.store
    found = store.rollbacks.get(rollback_id)
    if found is None:
        abort(404, f"no rollback {rollback_id}")
    incident = store.incidents.get(rollback_id)
    total = sum(step.duration_ms for step in found.steps) or 1
    return page(
        "rollback.html",
        rollback=found,
        decision=store.decisions.get(found.decision_id),
        evidence=store.rollbacks.evidence(rollback_id) or {},
        incident=incident,
        jira_url=_jira_link(state.settings.jira_url, incident.jira.ref if incident else ""),
        total_ms=total,
        retryable=found.status in ("blocked", "failed", "verification_failed"),
        chat=store.chat.threads(rollback_id),
    )


def _jira_link(base: str | None, key: str) -> str | None:
    if not base or not key:
        return None
    return f"{base.rstrip('/')}/browse/{key}"


@bp.get("/deployments")
def deployments():
    """Per-workload deployment history: revisions, images, sources, Backstop's own."""
    store = app_state().store
    namespace = request.args.get("namespace", "").strip()[:253] or None
    name = request.args.get("name", "").strip()[:253] or None
    limit = _limit() * 4
    found = store.rollouts.recent(namespace=namespace, name=name, limit=limit)
    by_workload: dict[str, list] = {}
    for rollout in found:
        by_workload.setdefault(rollout.workload.workload().key, []).append(rollout)
    return page(
        "deployments.html",
        workloads=by_workload,
        filters={"namespace": namespace or "", "name": name or ""},
    )


@bp.get("/jobs")
def jobs():
    """The RQ registries, with retry for failed jobs and cancel for waiting ones."""
    store = app_state().store
    registry = _choice("registry", registries.REGISTRIES) or "failed"
    queue_name = _choice("queue", queues.QUEUE_NAMES)
    limit = min(_limit(), registries.MAX_PAGE)
    return page(
        "jobs.html",
        registry=registry,
        registries=registries.REGISTRIES,
        queue_name=queue_name,
        queue_names=queues.QUEUE_NAMES,
        queue_counts=registries.counts(store.redis),
        jobs=registries.jobs(store.redis, registry=registry, queue_name=queue_name, limit=limit),
        cancellable=("queued", "scheduled", "deferred"),
    )


@bp.get("/owners/frozen")
def frozen_owners():
    """Owners frozen so that rollbacks stick: the active ones (operators can lift them),
    newest first, then those ended lately."""
    state = app_state()
    store = state.store
    active = sorted(store.freezes.active(), key=lambda f: f.frozen_at, reverse=True)[:MAX_PAGE]
    ended = [f for f in store.freezes.recent(limit=_limit() * 2) if not f.active][: _limit()]
    jira = {}
    for freeze in active + ended:
        if freeze.rollback_id not in jira:
            key = owners.jira_key(store, freeze.rollback_id)
            jira[freeze.rollback_id] = (key, owners.jira_url(state.settings.jira_url, key))
    return page("frozen.html", active=active, ended=ended, jira=jira)


@bp.get("/quarantine")
def quarantines():
    """Quarantined revisions: those in force (operators can release them, with a reason),
    newest first, then those ended lately, with how, by whom and why."""
    return page("quarantine.html", **quarantine_page.listing(app_state(), _limit()))


@bp.get("/approvals")
def approvals():
    """Decisions waiting for a human, oldest question first."""
    found = app_state().store.decisions.recent(outcome="awaiting_approval", limit=MAX_PAGE)
    return page("approvals.html", decisions=list(reversed(found)))


@bp.get("/audit")
def audit():
    """Who did what, when, and why."""
    return page("audit.html", entries=app_state().store.automation.audit_log(limit=_limit() * 4))
