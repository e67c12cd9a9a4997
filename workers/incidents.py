"""Incidents: every terminal rollback outcome except a dry run becomes a Jira ticket and a
PagerDuty event, carrying metric snapshots and the evidence the revert erased.

Delivery is exactly once and never in a rollback's way: each target's progress is recorded
in the Incident record (what was created, attached, commented, triggered, resolved), so a
retry after an outage or a crash skips what is done. Jira issues are found first through
Backstop's own incident-key → issue map, then by a JQL search on the incident label, and
only then created; a mark recorded before the create request lets a retry after a crash
wait (JIRA_SEARCH_GRACE) for Jira's lagging search to show the issue the dead attempt made,
and attach the evidence to it, instead of filing a second one. PagerDuty deduplicates on
the incident's `dedup_key`. A transient
failure re-raises (the job retries for hours); a permanent one (e.g. a 400) is recorded as
`failed` and shown. A target that is not configured is recorded as `not_configured`.
"""

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from config.policy import Policy
from config.settings import Settings
from core import markup, testpoints
from core.errors import PermanentError, TimedOut, TransientError
from core.integrations.jira import Tickets
from core.integrations.pagerduty import Pager
from core.integrations.prometheus import Prometheus
from core.records import Decision, Delivery, Incident, Rollback, utcnow
from core.store import Store
from workers import ticket
from workers.dossier import Dossier

log = logging.getLogger("backstop.incidents")

# Jira Cloud's search is eventually consistent, usually by seconds. An issue an attempt that
# died may have created is waited for this long before it is created (the job's retries
# come 10 s, 40 s, 100 s, 220 s after the first attempt).
JIRA_SEARCH_GRACE = timedelta(minutes=2)


def incident_key(workload_key: str, revision: str) -> str:
    """One incident per (workload, bad revision): a short, label-safe key."""
    digest = hashlib.blake2b(f"{workload_key}|{revision}".encode(), digest_size=8).hexdigest()
    return f"backstop-{digest}"


@dataclass
class Notifier:
    """Files incidents with the configured targets."""

    store: Store
    policy: Policy
    settings: Settings
    tickets: Tickets | None
    pager: Pager | None
    prometheus: Prometheus | None

    @classmethod
    def from_settings(cls, store: Store, policy: Policy, settings: Settings) -> "Notifier":
        """Targets from the environment; those not configured stay None."""
        tickets = Tickets.from_settings(settings)
        pager = prometheus = None
        if settings.pagerduty_routing_key:
            pager = Pager(
                settings.pagerduty_routing_key.get_secret_value(),
                base_url=settings.pagerduty_url,
                ca_file=settings.pagerduty_ca_file,
            )
        if settings.prometheus_url:
            prometheus = Prometheus(settings.prometheus_url)
        return cls(store, policy, settings, tickets, pager, prometheus)

    @property
    def _ticketing(self) -> Tickets:
        """Jira, for the deliveries `_deliver` runs only when it is configured."""
        if self.tickets is None:
            raise PermanentError("jira is not configured")
        return self.tickets

    @property
    def _paging(self) -> Pager:
        """PagerDuty, for the deliveries `_deliver` runs only when it is configured."""
        if self.pager is None:
            raise PermanentError("pagerduty is not configured")
        return self.pager

    # -- rollbacks -------------------------------------------------------------------------

    def file_rollback(self, rollback_id: str) -> Incident | None:
        """Deliver the incident of a finished rollback; raises TransientError to retry."""
        rollback = self.store.rollbacks.get(rollback_id)
        if rollback is None or not rollback.terminal or rollback.status == "dry_run":
            return None
        decision = self.store.decisions.get(rollback.decision_id)
        workload = rollback.workload.workload()
        incident = self.store.incidents.get(rollback_id) or Incident(
            id=rollback_id,
            key=incident_key(workload.key, rollback.bad_revision),
            workload=workload.key,
        )
        event = f"{rollback.status}:{rollback.attempts}"
        incident.summary = ticket.summary(rollback, decision)
        incident.status = rollback.status
        incident.severity = self.policy.incidents.pagerduty.severity.get(rollback.status, "error")
        if event not in incident.events:
            incident.events.append(event)
        if not incident.snapshots:
            incident.snapshots = self.dossier.snapshots(rollback, decision)
        self._save(incident)
        problems = [
            self._deliver(
                incident,
                "jira",
                self.tickets,
                lambda: self._jira(incident, rollback, decision, event),
            ),
            self._deliver(
                incident,
                "pagerduty",
                self.pager,
                lambda: self._page_rollback(incident, rollback, decision, event),
            ),
        ]
        self._raise_if_transient(problems)
        return incident

    def _jira(
        self, incident: Incident, rollback: Rollback, decision: Decision | None, event: str
    ) -> None:
        jira, done = self.policy.incidents.jira, incident.jira.done
        issue = (
            incident.jira.ref
            or self.store.incidents.jira_issue(incident.key)
            or self._ticketing.find_by_label(project=jira.project, label=incident.key)
        )
        creating = next((m for m in done if m.startswith(f"creating:{event}@")), None)
        if not issue and creating:
            self._await_search(creating)
        if not issue:
            # Recorded before the request: if we die before recording the issue, the retry
            # knows an issue may exist that Jira's search does not show yet.
            if creating:
                done.remove(creating)
            creating = f"creating:{event}@{utcnow().timestamp():.0f}"
            done.append(creating)
            self._save(incident)
            issue = self._create(incident, rollback, decision, creating)
            testpoints.reached("after_jira_create")
            self.store.incidents.remember_jira_issue(incident.key, issue)
            done.append(f"created:{event}")
        elif creating and f"created:{event}" not in done:
            done.append(f"created:{event}")  # ours, from an attempt that died: attach to it
        incident.jira.ref = issue
        self._save(incident)
        if f"created:{event}" in done:
            self._attach(incident, issue, self.dossier.attachments(rollback, decision, incident))
        elif f"comment:{event}" not in done:
            # One issue per workload and bad revision: a later outcome is a comment.
            self._ticketing.comment(
                issue_key=issue,
                body=f"Backstop: {markup.wiki(incident.summary)}\n"
                f"Reason: {markup.wiki(rollback.reason)}. Steps: "
                + markup.wiki(", ".join(f"{s.name} {s.status}" for s in rollback.steps)),
            )
            done.append(f"comment:{event}")
        transition = jira.transition_when_verified
        if transition and rollback.status == "verified" and f"transition:{event}" not in done:
            self._ticketing.transition(issue_key=issue, name=transition)
            done.append(f"transition:{event}")

    def _attach(self, incident: Incident, issue: str, files: list[tuple[str, bytes]]) -> None:
        """Attach each file once. Marked before the upload: a retry after an attempt that
        died mid-upload asks Jira which files the issue has instead of uploading again."""
        done = incident.jira.done
        present: set[str] | None = None
        for name, data in files:
            if f"attached:{name}" in done:
                continue
            if f"attaching:{name}" in done:
                if present is None:
                    present = set(self._ticketing.attachment_names(issue_key=issue))
                if name in present:
                    done.append(f"attached:{name}")
                    self._save(incident)
                    continue
            else:
                done.append(f"attaching:{name}")
                self._save(incident)
            self._ticketing.attach(issue_key=issue, filename=name, data=data)
            testpoints.reached("after_jira_attach")
            done.append(f"attached:{name}")
            self._save(incident)

    def _create(
        self, incident: Incident, rollback: Rollback, decision: Decision | None, creating: str
    ) -> str:
        """Create the issue. Jira answered with an error or refused the connection: no issue
        was made, so the `creating` mark goes (only a timeout leaves it in doubt)."""
        jira = self.policy.incidents.jira
        try:
            return self._ticketing.create(
                project=jira.project,
                issue_type=jira.issue_type,
                summary=incident.summary,
                description=ticket.description(
                    rollback,
                    decision,
                    links=self.dossier.links(rollback, decision, None),
                    snapshots=incident.snapshots,
                    evidence=self.store.rollbacks.evidence(rollback.id),
                    quarantine=self.store.quarantine.get(rollback.id),
                ),
                labels=[*jira.labels, incident.key],
                priority=jira.priority.get(rollback.status),
            )
        except TimedOut:
            raise  # the issue may exist: the mark stays, and the retry looks for it first
        except TransientError:
            incident.jira.done.remove(creating)
            self._save(incident)
            raise

    @staticmethod
    def _await_search(creating: str) -> None:
        """An earlier attempt asked Jira to create the issue and died before recording it:
        retry (TransientError) until Jira's search shows it, or until JIRA_SEARCH_GRACE has
        passed, when the request evidently never reached Jira and the issue is created."""
        asked = float(creating.rsplit("@", 1)[1])
        if utcnow().timestamp() - asked < JIRA_SEARCH_GRACE.total_seconds():
            raise TransientError("an earlier attempt may have created the issue; not in search yet")

    def _page_rollback(
        self, incident: Incident, rollback: Rollback, decision: Decision | None, event: str
    ) -> None:
        done, dedup_key = incident.pagerduty.done, incident.key
        if f"trigger:{event}" not in done:
            self._paging.trigger(
                dedup_key=dedup_key,
                summary=incident.summary,
                source="backstop",
                severity=incident.severity,
                timestamp=rollback.finished_at or utcnow(),
                component=rollback.workload.name,
                group=rollback.workload.namespace,
                class_=f"rollback {rollback.status}",
                custom_details=self.dossier.details(rollback, decision, incident),
                links=self.dossier.pd_links(rollback, decision, incident),
                images=self.dossier.images(incident),
            )
            testpoints.reached("after_pagerduty_trigger")
            done.append(f"trigger:{event}")
            self._save(incident)
        resolve = self.policy.incidents.pagerduty.resolve_when_verified
        if rollback.status == "verified" and resolve and f"resolve:{event}" not in done:
            self._paging.resolve(dedup_key=dedup_key)
            done.append(f"resolve:{event}")
        incident.pagerduty.ref = dedup_key

    # -- decisions that need a human -------------------------------------------------------

    def page_decision(self, decision_id: str, *, group: str | None = None) -> Incident | None:
        """Page a human about a decision that did not roll back but needs one, and about
        the other decisions of its page group (core/paging.py), whose key it pages under."""
        decision = self.store.decisions.get(decision_id)
        if decision is None:
            return None
        workload = decision.workload.workload().key if decision.workload else "no workload"
        key = f"backstop-page-{group}" if group else f"backstop-decision-{decision_id}"
        incident = self.store.incidents.get(f"decision-{decision_id}") or Incident(
            id=f"decision-{decision_id}", kind="decision", workload=workload, key=key
        )
        covered = self.store.pages.get(group) if group else None
        count = covered.count if covered else 1
        incident.summary = markup.plain(
            f"[Backstop] did not roll back {workload} after "
            f"{decision.alertname}: {decision.reason} — {decision.detail}"
            + (_covering(count, group) if count > 1 else "")
        )
        incident.status = decision.reason
        incident.severity = self.policy.incidents.pagerduty.decision_severity
        self._save(incident)

        def page() -> None:
            if "trigger" not in incident.pagerduty.done:
                self._paging.trigger(
                    dedup_key=incident.key,
                    summary=incident.summary,
                    source="backstop",
                    severity=incident.severity,
                    timestamp=decision.updated_at,
                    component=decision.workload.name if decision.workload else "",
                    class_=f"decision {decision.reason}",
                    custom_details={
                        "decision": decision.summary(),
                        "detail": decision.detail,
                        "evidence": decision.evidence,
                        "decisions_covered": count,
                        "latest_decision": covered.last if covered else decision.id,
                    },
                    links=[
                        link
                        for link in (
                            self.dossier.link("Decision", f"/api/v1/decisions/{decision.id}"),
                        )
                        if link
                    ],
                )
                incident.pagerduty.done.append("trigger")
            incident.pagerduty.ref = incident.key

        problems = [self._deliver(incident, "pagerduty", self.pager, page)]
        incident.jira.state = "not_configured" if self.tickets is None else "delivered"
        incident.jira.detail = "decisions page on PagerDuty only"
        self._save(incident)
        self._raise_if_transient(problems)
        return incident

    # -- helpers ---------------------------------------------------------------------------

    def _deliver(self, incident: Incident, name: str, target, action) -> str | None:
        """Run one target's delivery, recording its state; a transient problem is returned."""
        delivery: Delivery = getattr(incident, name)
        if target is None:
            delivery.state, delivery.detail = "not_configured", f"{name} is not configured"
            self._save(incident)
            return None
        if delivery.state == "failed":
            return None  # a permanent refusal stays shown; a human retries it
        # Every action skips the steps its `done` marks record, so running it again after a
        # crash or an outage repeats nothing.
        delivery.attempts += 1
        delivery.updated_at = utcnow()
        try:
            action()
        except TransientError as exc:
            delivery.state, delivery.detail = "pending", f"retrying: {exc}"
            self._save(incident)
            _log_delivery(incident, name, delivery)
            return str(exc)
        except PermanentError as exc:
            delivery.state, delivery.detail = "failed", str(exc)
            self._save(incident)
            _log_delivery(incident, name, delivery)
            return None
        delivery.state, delivery.detail = "delivered", ""
        self._save(incident)
        _log_delivery(incident, name, delivery)
        return None

    def _save(self, incident: Incident) -> None:
        incident.updated_at = utcnow()
        self.store.incidents.save(incident)

    @staticmethod
    def _raise_if_transient(problems: list[str | None]) -> None:
        pending = [p for p in problems if p]
        if pending:
            raise TransientError("; ".join(pending))

    @property
    def dossier(self) -> Dossier:
        """What this notifier's incidents carry, read from the same store and settings."""
        return Dossier(self.store, self.policy, self.settings, self.prometheus)


def _log_delivery(incident: Incident, name: str, delivery: Delivery) -> None:
    """One line per delivery attempt, with the Jira key or PagerDuty dedup key once known."""
    fields = {
        "incident_id": incident.id,
        "target": name,
        "state": delivery.state,
        "attempt": delivery.attempts,
    }
    if delivery.ref:
        fields["ref"] = delivery.ref
    if delivery.detail:
        fields["detail"] = delivery.detail
    level = logging.WARNING if delivery.state != "delivered" else logging.INFO
    log.log(level, "incident %s %s", name, delivery.state, extra={"fields": fields})


def _covering(count: int, group: str | None) -> str:
    """How many decisions a coalesced page stands for (the overflow page: many workloads)."""
    where = "on other workloads too" if group and "-overflow-" in group else "like it"
    return f" (+{count - 1} more decisions {where} in this window)"
