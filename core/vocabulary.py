"""The words Backstop records for what it decided and did, each with its one sentence.

A decision has an outcome and a reason; a rollback has a status. This module is the only
place those words and their meanings are written: the records type their fields with them,
the API and the dashboard validate filters against them, the dashboard and the decision
detail (so the API, pages and tickets) show their sentences, and the docs' glossary is
generated from them (`python -m core.vocabulary`). A test fails when a word lacks its
sentence, or the docs say something else.
"""

from typing import Literal

Outcome = Literal["rollback", "dry_run", "awaiting_approval", "deferred", "skipped"]

OUTCOMES: dict[str, str] = {
    "rollback": "Backstop enqueued a rollback of the workload",
    "dry_run": "dry-run mode: Backstop recorded the rollback it would have run",
    "awaiting_approval": "a rollback is ready and waits for a human to approve or deny it",
    "deferred": "Backstop waits (until the alert has fired for min_firing, or for the "
    "judgment of several candidate rollouts), then checks again",
    "skipped": "Backstop did not roll back; the reason says why",
}

# Why a decision did not (or not yet) roll back, in the order the rules check them.
SKIP_REASONS: dict[str, str] = {
    "not_kill_switch": "the alert is not a kill switch for any service",
    "no_workload": "the alert's labels name no workload (namespace + deployment/...)",
    "unknown_cluster": "the workload's cluster is not one Backstop guards",
    "no_recent_deployment": "no rollout of the workload in the lookback window explains it",
    "predates_deployment": "the alert began before the latest rollout, so it did not cause it",
    "ambiguous": "several rollouts in the lookback window could explain it; a human decides",
    "first_revision": "the explaining rollout created the workload: nothing to roll back to",
    "rollback_of_rollback": "the explaining rollout is Backstop's own rollback",
    "already_rolled_back": "this revision of the workload is already being rolled back",
    "paused": "automation is paused",
    "cooldown": "the workload was rolled back recently",
    "circuit_open": "the circuit breaker is open; a human must reset it",
    "resolved": "the alert resolved while Backstop waited (for min_firing, or for the "
    "judgment of the candidate rollouts)",
    "denied": "a human denied the rollback",
    "not_caused_by_rollout": "the judgment found the new revision no worse than the one "
    "before it: the cause lies elsewhere; a human is paged with the evidence",
    "internal_error": "Backstop failed while deciding (a bug, logged with its traceback); "
    "a human decides",
}

# Every reason a decision can carry: the skips, and those of the other outcomes.
REASONS: dict[str, str] = {
    **SKIP_REASONS,
    "enqueued": "a rollback job was enqueued",
    "would_roll_back": "dry run: Backstop would have rolled back",
    "approval_required": "waiting for a human to approve the rollback",
    "judgment_inconclusive": "the judgment could not tell whether the new revision is worse "
    "(too little data, or not significant on small samples); a human approves or denies",
    "min_firing": "waiting until the alert has fired long enough",
    "judging_candidates": "several rollouts could explain the alert: each is judged against "
    "the revision before it, and the one confirmed worse, if exactly one is, is rolled back",
}

RollbackStatus = Literal[
    "running", "verified", "verification_failed", "blocked", "failed", "dry_run"
]

ROLLBACK_STATUSES: dict[str, str] = {
    "running": "the rollback job is at work (or queued to retry)",
    "verified": "the workload was reverted and the previous revision proved healthy",
    "verification_failed": "the workload was reverted but the previous revision did not "
    "prove healthy; the workload is frozen for humans",
    "blocked": "pre-flight or the judgment refused to revert (for example a migration, a "
    "broken target, or a new revision no worse than the old); nothing was changed",
    "failed": "the rollback could not be carried out (a permanent error or retries spent)",
    "dry_run": "dry-run mode: pre-flight ran and the exact patch was recorded, not applied",
}
# Statuses a rollback does not leave.
TERMINAL: tuple[str, ...] = tuple(s for s in ROLLBACK_STATUSES if s != "running")


def explain(reason: str) -> str:
    """The sentence for a decision reason; an unknown word (from a newer version) as is."""
    return REASONS.get(reason, reason)


def glossary() -> str:
    """The docs' glossary: every word and its sentence, as Markdown tables."""
    sections = (
        ("Decision outcomes", "outcome", OUTCOMES),
        ("Decision reasons", "reason", REASONS),
        ("Rollback statuses", "status", ROLLBACK_STATUSES),
    )
    lines: list[str] = []
    for title, column, words in sections:
        lines += [f"### {title}", "", f"| {column} | meaning |", "| --- | --- |"]
        lines += [f"| `{word}` | {sentence} |" for word, sentence in words.items()]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(glossary(), end="")
