"""Domain models shared by the intake pipeline, the store and the jobs."""

import hashlib
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Literal

Source = Literal["alertmanager", "grafana"]
AlertStatus = Literal["firing", "resolved"]


def label_fingerprint(labels: dict[str, str]) -> str:
    """A stable fingerprint of a label set, for senders that do not provide one."""
    canonical = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert notification, normalized from Alertmanager or Grafana."""

    source: Source
    fingerprint: str
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""
    group_key: str = ""
    receiver: str = ""
    external_url: str = ""
    dashboard_url: str = ""
    panel_url: str = ""
    silence_url: str = ""
    values: dict[str, float | None] = field(default_factory=dict)
    value_string: str = ""
    episode_id: str = field(init=False, repr=False)
    starts_iso: str = field(init=False, repr=False)

    def __post_init__(self):
        # One firing episode: same source, fingerprint and start time. Hashed so the id is
        # short and safe in URLs, Redis keys and RQ job ids; computed once, used often.
        starts = self.starts_at.isoformat()
        raw = f"{self.source}|{self.fingerprint}|{starts}"
        episode = hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()
        object.__setattr__(self, "episode_id", episode)
        object.__setattr__(self, "starts_iso", starts)

    @property
    def alertname(self) -> str:
        """The alert's name label, or an empty string."""
        return self.labels.get("alertname", "")

    def to_record(self) -> dict:
        """A JSON-ready dict of the event, timestamps in RFC 3339."""
        # Shallow on purpose: dataclasses.asdict deep-copies and is slow on the hot path.
        record = {name: getattr(self, name) for name in _RECORD_FIELDS}
        record["starts_at"] = self.starts_iso
        record["ends_at"] = self.ends_at.isoformat() if self.ends_at else None
        return record


_RECORD_FIELDS = tuple(f.name for f in fields(AlertEvent) if f.init)


KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Rollout")


@dataclass(frozen=True, slots=True)
class Workload:
    """A rollback target: one workload in one namespace of one cluster."""

    cluster: str
    namespace: str
    kind: str
    name: str

    @property
    def key(self) -> str:
        """`cluster/namespace/Kind/name`, unique and readable."""
        return f"{self.cluster}/{self.namespace}/{self.kind}/{self.name}"

    @property
    def slug(self) -> str:
        """A short hash of the key, safe in RQ job ids and URLs."""
        return hashlib.blake2b(self.key.encode(), digest_size=8).hexdigest()

    @classmethod
    def from_key(cls, key: str) -> "Workload":
        """Parse a `cluster/namespace/Kind/name` key."""
        cluster, namespace, kind, name = key.split("/")
        return cls(cluster, namespace, kind, name)

    def to_json(self) -> dict:
        """A JSON-ready view."""
        return {
            "cluster": self.cluster,
            "namespace": self.namespace,
            "kind": self.kind,
            "name": self.name,
            "key": self.key,
        }
