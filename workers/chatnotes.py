"""What a chat message about a rollback says, built from Backstop's records: a title, a
sentence, facts and links (workers/chatcards.py renders it for Slack and for Teams).

Everything here is raw text: workload names, alert names, reasons, images and URLs come
partly from outside (alert labels, CI fields, a human's release reason), and each renderer
escapes them for where they go. Links are kept only when they are absolute http(s) URLs.
"""

from dataclasses import dataclass
from typing import Literal

from core import urls
from core.decisions import DENIED
from core.records import Decision, Quarantine, Rollback
from core.vocabulary import ROLLBACK_STATUSES, explain

Tone = Literal["good", "warning", "attention", "accent"]

MAX_IMAGES = 5  # images named in a message; the rest are counted

TITLES = {
    "awaiting_approval": "Rollback of {where} awaits approval",
    "denied": "Rollback of {where} denied",
    "started": "Rolling back {where}",
    "verified": "Rolled back {where}: verified",
    "verification_failed": "Rolled back {where}: not healthy",
    "blocked": "Rollback of {where} blocked",
    "failed": "Rollback of {where} failed",
    "quarantine_released": "Quarantine of {where} ended",
}
TONES: dict[str, Tone] = {
    "awaiting_approval": "warning",
    "denied": "accent",
    "started": "accent",
    "verified": "good",
    "verification_failed": "attention",
    "blocked": "attention",
    "failed": "attention",
    "quarantine_released": "accent",
}
ENDS = {
    "released": "released by a human; its images may deploy again",
    "expired": "expired; its images may deploy again",
    "issue_done": "ended because its Jira issue is done; its images may deploy again",
}


@dataclass(frozen=True)
class Links:
    """Where links point: Backstop's public URL and Jira's (settings), and the alert's
    source (from the alert: outside)."""

    public_url: str | None = None
    jira_url: str | None = None
    alert_url: str | None = None

    def backstop(self, path: str) -> str | None:
        """A page of Backstop's dashboard, when its public URL is known."""
        base = urls.http_url((self.public_url or "").rstrip("/"))
        return f"{base}{path}" if base else None

    def jira(self, key: str | None) -> str | None:
        """The Jira issue `key`, when Jira's URL is known."""
        base = urls.http_url((self.jira_url or "").rstrip("/"))
        return f"{base}/browse/{key}" if base and key else None


@dataclass(frozen=True)
class Note:
    """One message: raw text, escaped by whoever renders it."""

    event: str
    title: str
    tone: Tone
    summary: str
    facts: tuple[tuple[str, str], ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    footer: str = ""


def rollback_note(
    event: str,
    rollback: Rollback,
    decision: Decision | None,
    *,
    links: Links,
    quarantine: Quarantine | None = None,
    jira_key: str | None = None,
) -> Note:
    """A rollback started, or ended (`verified`, `verification_failed`, `blocked`,
    `failed`)."""
    workload = rollback.workload
    where = f"{workload.namespace}/{workload.name}"
    target = rollback.target_revision or "the previous revision"
    alert = decision.alertname if decision else ""
    if event == "started":
        after = f" after the alert {alert}" if alert else ""
        summary = (
            f"Backstop reverted revision {rollback.bad_revision} to {target}{after}; "
            "it waits for the rollout, then verifies."
        )
    else:
        summary = _sentence(ROLLBACK_STATUSES.get(event, event))
        detail = rollback.verification.get("detail") if event == "verified" else rollback.reason
        if detail:
            summary += f" {_sentence(str(detail))}"
    facts = [
        ("Workload", workload.workload().key),
        ("Revisions", f"{rollback.bad_revision} → {rollback.target_revision or '?'}"),
        ("Alert", alert),
        ("Images", _images(decision.rollout.images if decision and decision.rollout else [])),
        ("Owner", rollback.owner.describe() if rollback.owner else ""),
    ]
    if event != "started":
        facts.append(("Reason", rollback.reason))
    if quarantine is not None and quarantine.active:
        until = quarantine.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        facts.append(("Quarantined", f"{_images(quarantine.images)} until {until}"))
    if jira_key:
        facts.append(("Jira", jira_key))
    rollout = decision.rollout if decision else None
    found = [
        ("Rollback", links.backstop(f"/rollbacks/{rollback.id}")),
        ("Decision", links.backstop(f"/decisions/{decision.id}") if decision else None),
        (f"Jira {jira_key}", links.jira(jira_key)),
        ("Alert source", links.alert_url),
        ("Pipeline run", rollout.pipeline_url if rollout else None),
        (
            "Commits compared",
            urls.compare_url(rollout.repository, rollout.previous_commit, rollout.commit)
            if rollout
            else None,
        ),
    ]
    return _note(event, where, summary, facts, found, f"rollback {rollback.id}")


def approval_note(decision: Decision, *, links: Links) -> Note:
    """A rollback waits for a human to approve or deny it."""
    where, facts, found = _waiting(decision, links)
    summary = f"{_sentence(decision.detail)} {_sentence(explain(decision.reason))}"
    facts.append(("Why it waits", decision.reason))
    found.insert(0, ("Approve or deny", links.backstop("/approvals")))
    return _note("awaiting_approval", where, summary, facts, found, f"decision {decision.id}")


def denial_note(decision: Decision, *, links: Links) -> Note:
    """A human denied a rollback that waited for approval: nothing was rolled back."""
    where, facts, found = _waiting(decision, links, unknown_revision="?")
    revision = (decision.rollout.revision if decision.rollout else None) or "?"
    step = next((s for s in reversed(decision.history) if s.reason == DENIED), None)
    who = step.by if step else "a human"
    summary = f"{who} denied rolling back revision {revision}; nothing was changed."
    facts += [("Denied by", who), ("Why", step.note if step else "")]
    return _note("denied", where, summary, facts, found, f"decision {decision.id}")


def _waiting(
    decision: Decision, links: Links, *, unknown_revision: str = ""
) -> tuple[str, list, list]:
    """Where, the facts and the links of a decision that waited for a human; a rollout
    without a revision shows `unknown_revision` for it."""
    workload, rollout = decision.workload, decision.rollout
    where = f"{workload.namespace}/{workload.name}" if workload else "a workload"
    facts = [
        ("Workload", workload.workload().key if workload else ""),
        ("Revision", (rollout.revision or unknown_revision) if rollout else ""),
        ("Alert", decision.alertname),
        ("Images", _images(rollout.images if rollout else [])),
    ]
    found = [
        ("Decision", links.backstop(f"/decisions/{decision.id}")),
        ("Alert source", links.alert_url),
        ("Pipeline run", rollout.pipeline_url if rollout else None),
    ]
    return where, facts, found


def release_note(quarantine: Quarantine, *, links: Links) -> Note:
    """A quarantine ended: released by a human, expired, or its Jira issue done."""
    workload = quarantine.workload
    where = f"{workload.namespace}/{workload.name} revision {quarantine.revision}"
    how = ENDS.get(quarantine.end or "", "ended")
    summary = f"The quarantine of revision {quarantine.revision} was {how}."
    facts = [
        ("Workload", workload.workload().key),
        ("Revision", quarantine.revision),
        ("Images", _images(quarantine.images)),
        ("Ended by", quarantine.ended_by),
        ("Why", quarantine.end_reason),
    ]
    found = [("Rollback", links.backstop(f"/rollbacks/{quarantine.rollback_id}"))]
    return _note("quarantine_released", where, summary, facts, found, f"quarantine {quarantine.id}")


def _note(event, where, summary, facts, found, subject: str) -> Note:
    return Note(
        event=event,
        title=TITLES[event].format(where=where),
        tone=TONES[event],
        summary=summary,
        facts=tuple((label, value) for label, value in facts if value and value.strip()),
        links=tuple((label, url) for label, url in found if url and urls.http_url(url)),
        footer=f"Backstop · {event.replace('_', ' ')} · {subject}",
    )


def _sentence(text: str) -> str:
    """`text` with a capital first letter and a full stop."""
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else f"{text}."


def _images(images: list[str]) -> str:
    shown = ", ".join(images[:MAX_IMAGES])
    more = len(images) - MAX_IMAGES
    return f"{shown} and {more} more" if more > 0 else shown
