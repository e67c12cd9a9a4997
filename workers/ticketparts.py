"""Sections of a rollback's Jira ticket (workers/ticket.py) about what the judgment found,
what changed between the revisions, and the quarantine; and their compact forms for
PagerDuty's custom details (workers/dossier.py).

Every value here came from the policy, Prometheus, the cluster or CI, and is read back from
Redis: it is escaped with `markup.wiki` for the ticket, and only numbers and words go into
the page (PagerDuty renders custom details as text).
"""

from core.markup import wiki
from core.records import Quarantine

KPI_FIELDS = (
    "verdict", "how", "n_new", "n_old", "median_new", "median_old", "p_value", "shift", "allowed"
)  # fmt: skip
CHANGES_PAGED = 20


def judgment_section(judgment: dict) -> str:
    """The judgment: the overall verdict, then a table of each KPI's numbers."""
    if not judgment:
        return ""
    header = (
        f"*{wiki(judgment.get('verdict'))}* (mode {wiki(judgment.get('mode'))}, confidence "
        f"{wiki(judgment.get('confidence'))}): {wiki(judgment.get('detail'))}"
    )
    kpis = _kpis(judgment)
    rows = ["||KPI||how||points new/old||median new||median old||p||shift||allowed||verdict||"]
    for kpi in kpis:
        cells = [
            kpi.get("name"),
            kpi.get("how", "not compared"),
            f"{kpi.get('n_new', 0)}/{kpi.get('n_old', 0)}",
            *(_number(kpi.get(k)) for k in ("median_new", "median_old", "p_value")),
            *(_number(kpi.get(k)) for k in ("shift", "allowed")),
            kpi.get("verdict"),
        ]
        rows.append("|" + "|".join(wiki(c) or " " for c in cells) + "|")
    reasons = [f"* {wiki(k.get('name'))}: {wiki(k.get('reason'))}" for k in kpis]
    return "\n".join([header, "\n".join(rows), *reasons])


def changes_section(evidence: dict | None) -> str:
    """What changed from the target revision to the bad one (the evidence's diff)."""
    changes = (evidence or {}).get("changes")
    if not changes:
        return ""
    if not changes.get("changes"):
        return "The two pod templates are the same (a restart, or a change outside them)."
    rows = ["||where||what||before||after||"]
    for change in changes["changes"]:
        cells = [change.get(k) for k in ("where", "field", "before", "after")]
        rows.append("|" + "|".join(wiki(c) if c is not None else "-" for c in cells) + "|")
    if changes.get("more"):
        rows.append(f"… and {wiki(changes['more'])} more changes.")
    return "\n".join(rows)


def quarantine_line(quarantine: Quarantine | None) -> str:
    """Whether the bad revision's images are kept out, and until when."""
    if quarantine is None:
        return ""
    images = ", ".join(quarantine.images + quarantine.digests)
    return (
        f"*Quarantined:* {wiki(images)} until {quarantine.expires_at.isoformat()}, unless this "
        "issue is done first or a human releases it (POST /api/v1/quarantine/"
        f"{wiki(quarantine.id)}/release with a reason). Deploys of these images are refused "
        "by the gates, `backstop check-deploy` and the admission webhook; a fixed image is not."
    )


def judgment_details(judgment: dict) -> dict | None:
    """The judgment for PagerDuty: the verdict and each KPI's numbers, no points."""
    if not judgment:
        return None
    return {
        "verdict": judgment.get("verdict"),
        "mode": judgment.get("mode"),
        "kpis": {
            str(kpi.get("name")): {k: kpi.get(k) for k in KPI_FIELDS} for kpi in _kpis(judgment)
        },
    }


def changes_details(evidence: dict | None) -> list[str] | None:
    """The first changes, one line each, for PagerDuty."""
    changes = (evidence or {}).get("changes")
    if not changes:
        return None
    lines = [
        f"{c.get('where')}: {c.get('field')}: {c.get('before')} -> {c.get('after')}"
        for c in changes.get("changes", [])[:CHANGES_PAGED]
    ]
    more = len(changes.get("changes", [])) - CHANGES_PAGED + changes.get("more", 0)
    return lines + ([f"... and {more} more"] if more > 0 else [])


def _kpis(judgment: dict) -> list[dict]:
    """The record's KPIs; a damaged record (read back from Redis) has fewer, not an error."""
    kpis = judgment.get("kpis")
    return [k for k in kpis if isinstance(k, dict)] if isinstance(kpis, list) else []


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4g}"
    return str(value)
