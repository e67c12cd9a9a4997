"""Incident records with their delivery state, and the incident key -> Jira issue map."""

from datetime import datetime, timedelta

import redis

from workers.records import Incident
from workers.store import keys
from workers.store.records import newest

RETENTION = timedelta(days=90)
MAX_INCIDENTS = 10_000


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class IncidentStore:
    """Incidents in Redis, bounded in count and age."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def save(self, incident: Incident) -> None:
        """Write an incident (new or updated)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.INCIDENT + incident.id, incident.model_dump_json(), ex=RETENTION)
        pipe.zadd(keys.INCIDENTS, {incident.id: _ms(incident.created_at)})
        pipe.zremrangebyrank(keys.INCIDENTS, 0, -MAX_INCIDENTS - 1)
        pipe.execute()

    def get(self, incident_id: str) -> Incident | None:
        """One incident by id (the rollback's id, or `decision-<id>`)."""
        raw = self.redis.get(keys.INCIDENT + incident_id)
        return Incident.model_validate_json(raw) if raw else None

    def recent(self, *, limit: int = 50) -> list[Incident]:
        """Incidents, newest first."""
        return newest(self.redis, keys.INCIDENTS, keys.INCIDENT, Incident, limit=limit)

    def jira_issue(self, incident_key: str) -> str | None:
        """The Jira issue already filed for an incident key (our map comes first: Jira's
        search is eventually consistent)."""
        value = self.redis.get(keys.JIRA_ISSUE + incident_key)
        return value.decode() if value else None

    def remember_jira_issue(self, incident_key: str, issue_key: str) -> None:
        """Record which issue an incident key was filed as."""
        self.redis.set(keys.JIRA_ISSUE + incident_key, issue_key, ex=RETENTION)
