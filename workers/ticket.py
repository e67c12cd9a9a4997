"""The Jira ticket of a rollback, in Jira wiki markup: what happened, why, and what is left.

"A rollback is a save, not a fix": the ticket carries what the revert erased — the timeline,
the alerts with their links, the deployment, the decision and its reasons, pre-flight,
each step with its duration, verification values — and a root-cause checklist.

Every value interpolated here passes through `markup.wiki` (or `markup.link`): labels,
annotations, URLs and CI fields come from whoever can send a webhook, and must render as
the text they are, never as markup. Only the template's own markup is live.
"""

from typing import NamedTuple

from core.markup import link, plain, wiki
from core.records import Decision, Quarantine, Rollback
from core.urls import compare_url
from workers.ticketparts import changes_section, judgment_section, quarantine_line


class _Link(NamedTuple):
    """A table cell that links `text` to `url` (when it is an http(s) URL)."""

    text: str
    url: str


def _cell(value) -> str:
    """A table cell: every value is text, escaped; a _Link is a link."""
    if isinstance(value, _Link):
        return link(value.text, value.url)
    return wiki(value) or " "


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["||" + "||".join(header) + "||"]
    lines += ["|" + "|".join(_cell(v) for v in row) + "|" for row in rows]
    return "\n".join(lines)


def summary(rollback: Rollback, decision: Decision | None) -> str:
    """One plain line (Jira's summary field, PagerDuty's): workload, both revisions, the
    alert and the outcome, invisible characters shown."""
    target = rollback.created_revision or rollback.target_revision or "?"
    alert = decision.alertname if decision else "alert"
    return plain(
        f"[Backstop] {rollback.workload.workload().key}: rollback {rollback.bad_revision} "
        f"-> {target} after {alert}: {rollback.status}"
    )


def _owner(rollback: Rollback) -> list[str]:
    """Who reconciles the workload, when pre-flight found an owner."""
    owner = rollback.owner
    if owner is None:
        return []
    return [f"*Owner:* {wiki(owner.describe())} (found by {wiki(owner.found_by)})"]


def description(
    rollback: Rollback,
    decision: Decision | None,
    *,
    links: dict[str, str],
    snapshots: list[dict],
    evidence: dict | None = None,
    quarantine: Quarantine | None = None,
) -> str:
    """The ticket body."""
    parts = [
        f"h2. {wiki(summary(rollback, decision))}",
        f"*Outcome:* {wiki(rollback.status)} ({wiki(rollback.reason)}). {_what_was_done(rollback)}",
        *_owner(rollback),
        *filter(None, [quarantine_line(quarantine)]),
        "h3. Timeline",
        _table(["when (UTC)", "what"], _timeline(rollback, decision)),
        "h3. Alert",
        _alert(decision),
        "h3. Deployment",
        _deployment(decision),
        *_section("What changed", changes_section(evidence)),
        *_section("Judgment", judgment_section(rollback.judgment)),
        "h3. Decision",
        _decision(decision),
        "h3. Pre-flight",
        _table(
            ["check", "ok", "detail"],
            [
                [name, "yes" if c.get("ok") else "NO", c.get("detail")]
                for name, c in rollback.preflight.items()
            ],
        ),
        "h3. Rollback steps",
        _table(
            ["step", "status", "duration", "detail"],
            [[s.name, s.status, f"{s.duration_ms} ms", s.detail] for s in rollback.steps],
        ),
        "h3. Verification",
        _verification(rollback),
    ]
    if snapshots:
        parts += [
            "h3. Metric snapshots",
            "\n".join(
                f"* {wiki(s['name'])}: {{{{{wiki(s['expr'])}}}}} (graph and data attached: "
                f"{wiki(s['file'])}.png, {wiki(s['file'])}.csv)"
                for s in snapshots
            ),
        ]
    parts += [
        "h3. Links",
        "\n".join(f"* {link(name, url)}" for name, url in links.items() if url) or "none",
        "h3. Root-cause checklist",
        _CHECKLIST,
    ]
    return "\n\n".join(parts)


def _what_was_done(rollback: Rollback) -> str:
    """Whether the workload was reverted: only a revert step that succeeded says so."""
    revert = rollback.step("revert")
    if revert is not None and revert.status == "ok":
        return (
            "Backstop reverted the workload to save the service; the root cause is still to "
            "be found."
        )
    if rollback.status == "dry_run":
        return "Dry run: Backstop recorded the revert it would have made and changed nothing."
    return "Nothing was reverted: the workload still runs the revision the alert blamed."


def _section(title: str, body: str) -> list[str]:
    return [f"h3. {title}", body] if body else []


def _timeline(rollback: Rollback, decision: Decision | None) -> list[list]:
    rows = []
    if decision and decision.rollout:
        rows.append(
            [
                decision.rollout.started_at.isoformat(),
                f"rollout of revision {decision.rollout.revision} started",
            ]
        )
    if decision:
        rows.append([decision.starts_at.isoformat(), f"alert {decision.alertname} firing"])
        rows += [
            [h.at.isoformat(), f"decision: {h.outcome} ({h.reason}) by {h.by}"]
            for h in decision.history
        ]
    rows += [
        [s.started_at.isoformat(), f"{s.name}: {s.status} ({s.duration_ms} ms)"]
        for s in rollback.steps
    ]
    if rollback.finished_at:
        rows.append([rollback.finished_at.isoformat(), f"rollback {rollback.status}"])
    return sorted(rows, key=lambda row: row[0])


def _alert(decision: Decision | None) -> str:
    if decision is None:
        return "unknown"
    labels = ", ".join(f"{wiki(k)}={wiki(v)}" for k, v in sorted(decision.labels.items()))
    return (
        f"*{wiki(decision.alertname)}* since {decision.starts_at.isoformat()}\n"
        f"Labels: {{{{{labels}}}}}"
    )


def _deployment(decision: Decision | None) -> str:
    rollout = decision.rollout if decision else None
    if rollout is None:
        return "none correlated"
    rows: list[list[str | _Link | None]] = [
        ["revision", rollout.revision],
        ["previous revision", rollout.previous_revision],
        ["images", ", ".join(rollout.images)],
        ["change cause", rollout.change_cause],
        ["started", rollout.started_at.isoformat()],
        ["version", rollout.version],
        ["commit", _commit(rollout)],
        ["previous commit", rollout.previous_commit],
        ["repository", _Link(rollout.repository, rollout.repository) if rollout.repository else ""],
        ["author", rollout.author],
        ["pipeline", _Link(rollout.url, rollout.url) if rollout.url else ""],
        [
            "pipeline run",
            _Link(rollout.pipeline_url, rollout.pipeline_url) if rollout.pipeline_url else "",
        ],
        ["sources", ", ".join(rollout.sources)],
    ]
    return _table(["field", "value"], [r for r in rows if r[1]])


def _commit(rollout) -> "str | _Link":
    """The commit, linked to the page comparing it with the previous one on a known forge."""
    compare = compare_url(rollout.repository, rollout.previous_commit, rollout.commit)
    return _Link(rollout.commit, compare) if compare else rollout.commit


def _decision(decision: Decision | None) -> str:
    if decision is None:
        return "unknown"
    policy = ", ".join(
        f"{wiki(k)}={wiki(v)}" for k, v in decision.policy.items() if not isinstance(v, dict)
    )
    return (
        f"Outcome {wiki(decision.outcome)} ({wiki(decision.reason)}), confidence "
        f"{wiki(decision.confidence or 'n/a')}: {wiki(decision.detail)}\nPolicy used: {policy}"
    )


def _verification(rollback: Rollback) -> str:
    result = rollback.verification or {}
    lines = [f"Mode: {wiki(result.get('mode', 'not reached'))}. {wiki(result.get('detail', ''))}"]
    for name, query in (result.get("queries") or {}).items():
        values = [s.get("values") for s in query.get("samples", [])]
        lines.append(
            f"* {wiki(name)}: {{{{{wiki(query.get('query'))}}}}} {wiki(query.get('comparison'))} "
            f"{wiki(query.get('threshold'))} {wiki(query.get('unit', ''))} — held: "
            f"{wiki(query.get('held'))}; samples: {wiki(values)}"
        )
    return "\n".join(lines)


_CHECKLIST = "\n".join(
    f"* (?) {item}"
    for item in (
        "What changed in the bad revision (the table above: images, config, dependencies; "
        "the commits between the two)?",
        "Why did the change break the kill-switch KPI, and why did tests and canaries miss it?",
        "Is the reverted revision fully healthy, or only better?",
        "Does data written by the bad revision need repair?",
        "Which alert, test or guard would have caught this earlier?",
        "When may the fix roll forward, and with which safeguards? (The bad images stay "
        "quarantined until this issue is done or a human releases them.)",
    )
)
