"""What an incident carries besides its summary: metric snapshots, attachments, links,
PagerDuty's details and images; read from the store, Prometheus and Backstop's settings.

Every value here comes from outside (alert labels and URLs, CI fields, pod logs): the
ticket (workers/ticket.py) and PagerDuty escape or carry them as data, never as markup.
"""

import json
from dataclasses import dataclass
from datetime import timedelta

from config.policy import Policy
from config.settings import Settings
from core.integrations.prometheus import Prometheus, expr_from_generator_url
from core.records import Decision, Incident, Quarantine, Rollback, utcnow
from core.snapshots import Snapshot, sign
from core.store import Store
from core.urls import compare_url
from workers import snapshots as graphs
from workers.judgment_snapshot import judgment_snapshots, sides
from workers.ticketparts import changes_details, judgment_details

SNAPSHOT_LINK_TTL = timedelta(days=7)


@dataclass
class Dossier:
    """The material of a rollback's (or decision's) incident."""

    store: Store
    policy: Policy
    settings: Settings
    prometheus: Prometheus | None

    def snapshots(self, rollback: Rollback, decision: Decision | None) -> list[dict]:
        """Graph the kill-switch alert and verify queries around the rollback, and the
        judgment's KPIs, both revisions (once)."""
        taken = self._graphs(rollback, decision)
        names = sides(rollback, decision)
        taken += judgment_snapshots(rollback.judgment, now=utcnow(), names=names)
        result = []
        for index, snapshot in enumerate(taken, start=1):
            self.store.snapshots.save(snapshot)
            result.append(
                {
                    "id": snapshot.id,
                    "name": snapshot.name,
                    "expr": snapshot.expr,
                    "file": f"snapshot-{index}",
                    "points": snapshot.points,
                    "error": snapshot.error,
                }
            )
        return result

    def _graphs(self, rollback: Rollback, decision: Decision | None) -> list[Snapshot]:
        if self.prometheus is None or decision is None:
            return []
        settings = self.policy.timing(self.policy.service_for(decision.labels))
        alerts = []
        episode = self.store.episodes.episode(decision.episode_id)
        expr = expr_from_generator_url(episode.event.get("generator_url", "")) if episode else None
        if expr:
            alerts.append((decision.alertname, expr))
        queries = graphs.queries_for(settings.verify.queries, alerts)
        if not queries:
            return []
        since = decision.rollout.started_at if decision.rollout else decision.starts_at
        markers = [graphs.Marker("alert", decision.starts_at)]
        if decision.rollout:
            markers.append(graphs.Marker("deployment", decision.rollout.started_at))
        if rollback.steps:
            markers.append(graphs.Marker("rollback", rollback.steps[0].started_at))
        verify = rollback.step("verify")
        if verify:
            markers.append(graphs.Marker("verification", verify.finished_at))
        return graphs.capture(
            self.prometheus,
            queries,
            markers=markers,
            end=utcnow(),
            start=since - self.policy.incidents.snapshot_before,
        )

    def attachments(
        self, rollback: Rollback, decision: Decision | None, incident: Incident
    ) -> list[tuple[str, bytes]]:
        files = []
        for snap in incident.snapshots:
            png, csv = self.store.snapshots.png(snap["id"]), self.store.snapshots.csv(snap["id"])
            if png:
                files.append((f"{snap['file']}.png", png))
            if csv:
                files.append((f"{snap['file']}.csv", csv))
        evidence = self.store.rollbacks.evidence(rollback.id)
        if evidence:
            files.append(("evidence-logs.txt", _logs_text(evidence).encode()))
            files.append(("evidence-events.txt", _events_text(evidence).encode()))
        record = {
            "rollback": rollback.to_json(),
            "decision": decision.model_dump(mode="json") if decision else None,
        }
        files.append(("rollback.json", json.dumps(record, indent=2).encode()))
        return files

    def link(self, name: str, path: str) -> dict | None:
        base = (self.settings.public_url or "").rstrip("/")
        return {"href": f"{base}{path}", "text": name} if base else None

    def links(
        self, rollback: Rollback, decision: Decision | None, issue: str | None
    ) -> dict[str, str]:
        base = (self.settings.public_url or "").rstrip("/")
        links = {"Backstop rollback": f"{base}/api/v1/rollbacks/{rollback.id}" if base else ""}
        if issue and self.settings.jira_url:
            links["Jira"] = f"{self.settings.jira_url.rstrip('/')}/browse/{issue}"
        episode = self.store.episodes.episode(decision.episode_id) if decision else None
        if episode:
            for name, field in (
                ("Alert source", "generator_url"),
                ("Grafana dashboard", "dashboard_url"),
                ("Grafana panel", "panel_url"),
            ):
                if episode.event.get(field):
                    links[name] = episode.event[field]
        rollout = decision.rollout if decision else None
        if rollout and rollout.url:
            links["Pipeline"] = rollout.url
        if rollout and rollout.pipeline_url:
            links["Pipeline run"] = rollout.pipeline_url
        compare = (
            compare_url(rollout.repository, rollout.previous_commit, rollout.commit)
            if rollout
            else None
        )
        if compare:
            links["Commits compared"] = compare
        return links

    def pd_links(
        self, rollback: Rollback, decision: Decision | None, incident: Incident
    ) -> list[dict]:
        links = self.links(rollback, decision, incident.jira.ref or None)
        return [{"href": url, "text": name} for name, url in links.items() if url]

    def images(self, incident: Incident) -> list[dict]:
        """Signed snapshot links, only when Backstop's public URL is https (PagerDuty's rule)."""
        base = (self.settings.public_url or "").rstrip("/")
        if not base.startswith("https://"):
            return []
        expires = int((utcnow() + SNAPSHOT_LINK_TTL).timestamp())
        key = self.settings.snapshot_key()
        return [
            {
                "src": f"{base}/snapshots/{s['id']}.png?"
                f"{sign(s['id'], secret=key, expires=expires)}",
                "alt": s["name"],
            }
            for s in incident.snapshots
            if s.get("points")
        ]

    def details(self, rollback: Rollback, decision: Decision | None, incident: Incident) -> dict:
        rollout = decision.rollout if decision else None
        return {
            "decision": decision.summary() if decision else None,
            "deployment": {
                "revision": rollout.revision,
                "images": rollout.images,
                "change_cause": rollout.change_cause,
                "commit": rollout.commit,
                "previous_commit": rollout.previous_commit,
                "compare": compare_url(rollout.repository, rollout.previous_commit, rollout.commit),
                "author": rollout.author,
            }
            if rollout
            else None,
            "judgment": judgment_details(rollback.judgment),
            "what_changed": changes_details(self.store.rollbacks.evidence(rollback.id)),
            "quarantined": _quarantined(self.store.quarantine.get(rollback.id)),
            "rollback": {
                "status": rollback.status,
                "reason": rollback.reason,
                "from": rollback.bad_revision,
                "to": rollback.target_revision,
                "steps": [f"{s.name}: {s.status} ({s.duration_ms} ms)" for s in rollback.steps],
            },
            "verification": rollback.verification.get("detail", ""),
            "jira": incident.jira.ref or None,
        }


def _quarantined(quarantine: Quarantine | None) -> dict | None:
    if quarantine is None:
        return None
    images = quarantine.images + quarantine.digests
    return {"images": images, "until": quarantine.expires_at.isoformat()}


def _logs_text(evidence: dict) -> str:
    lines = []
    for pod in evidence.get("pods", []):
        lines.append(f"=== pod {pod['name']} ({pod.get('phase')})")
        for container, logs in pod.get("logs", {}).items():
            for when, text in logs.items():
                lines.append(f"--- {container} ({when} log)")
                lines.append(text if text is not None else "(no log)")
    return "\n".join(lines) or "(no pods of the bad revision were found)"


def _events_text(evidence: dict) -> str:
    rows = [
        f"{e.get('time')} {e.get('type')} {e.get('object')} {e.get('reason')}: {e.get('message')}"
        for e in evidence.get("events", [])
    ]
    return "\n".join(rows) or "(no events)"
