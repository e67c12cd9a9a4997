"""Incident records with their delivery state, and the incident key -> Jira issue map."""

from datetime import datetime, timedelta
from typing import cast

import redis

from core.records import Incident
from core.store import keys, records
from core.store.records import ms

RETENTION = timedelta(days=90)
MAX_INCIDENTS = 10_000


class IncidentStore:
    """Incidents in Redis, bounded in count and age."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def save(self, incident: Incident) -> None:
        """Write an incident (new or updated)."""
        records.save(
            self.redis,
            keys.INCIDENT,
            keys.INCIDENTS,
            incident.id,
            incident,
            score_ms=ms(incident.created_at),
            ttl=RETENTION,
            cap=MAX_INCIDENTS,
        )

    def get(self, incident_id: str) -> Incident | None:
        """One incident by id (the rollback's id, or `decision-<id>`)."""
        return records.get(self.redis, keys.INCIDENT, Incident, incident_id)

    def jira_of(self, incident_id: str) -> str | None:
        """The key of the Jira issue filed for an incident (a rollback's), when there is one."""
        incident = self.get(incident_id)
        return incident.jira.ref if incident is not None and incident.jira.ref else None

    def recent(self, *, limit: int = 50) -> list[Incident]:
        """Incidents, newest first."""
        return records.newest(self.redis, keys.INCIDENTS, keys.INCIDENT, Incident, limit=limit)

    def count_since(self, since: datetime) -> int:
        """How many incidents were opened at or after `since`."""
        return int(self.redis.zcount(keys.INCIDENTS, ms(since), "+inf"))

    def jira_issue(self, incident_key: str) -> str | None:
        """The Jira issue already filed for an incident key (our map comes first: Jira's
        search is eventually consistent)."""
        value = cast(bytes | None, self.redis.get(keys.JIRA_ISSUE + incident_key))
        return value.decode() if value else None

    def remember_jira_issue(self, incident_key: str, issue_key: str) -> None:
        """Record which issue an incident key was filed as."""
        self.redis.set(keys.JIRA_ISSUE + incident_key, issue_key, ex=RETENTION)
