"""Alert episodes: dedup and recording of notifications, and reading them back.

Intake writes go through one Lua script, so a webhook costs one round trip and concurrent
receivers cannot both accept the same episode. The store also remembers, per process, which
episodes it saw recorded and settled (decided, or resolved): the intake pipeline writes
their repeats behind (core/intake.py).
"""

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import cast

import redis

from config.intake import IntakePolicy
from core.models import AlertEvent
from core.store.keys import DECISION, EPISODES, EVENTS, FLUSH
from core.store.keys import EPISODE as EPISODE_PREFIX
from core.store.records import ms

NEW_FIRING, FIRST_RESOLVED, DUPLICATE, RESEND, UNDECIDED = 1, 2, 0, 3, 4
# How long the receiver that accepted an episode has to record its decision before a repeat
# notification may decide it instead (a decision normally takes milliseconds).
DECIDE_CLAIM = 10_000
# Repeats refresh an episode's TTL and last activity at most this often (milliseconds).
TOUCH = 60_000
# How long an applied write-behind flush is remembered (ms): its retry after a lost answer
# must come within this, i.e. within an hour of Redis running it.
FLUSH_TOKEN_TTL = 3_600_000

# A notification is certainly a repeat when the episode is known to be in this state already.
_ALREADY = {"firing": ("firing", "resolved"), "resolved": ("resolved",)}
KNOWN_EPISODES = 20_000
_UNSETTLED = ("", False)


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Episode:
    """The latest state of one firing episode, as recorded."""

    id: str
    status: str
    source: str
    alertname: str
    starts_at: str
    ends_at: str | None
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    notifications: int
    event: dict

    def to_json(self) -> dict:
        """A JSON-ready view for the API."""
        return {
            "id": self.id,
            "status": self.status,
            "source": self.source,
            "alertname": self.alertname,
            "fingerprint": self.event.get("fingerprint", ""),
            "labels": self.event.get("labels", {}),
            "annotations": self.event.get("annotations", {}),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "notifications": self.notifications,
            "generator_url": self.event.get("generator_url", ""),
        }


def _from_ms(value: bytes | str | float) -> datetime:
    return datetime.fromtimestamp(int(float(value)) / 1000, UTC)


def _episode(raw: dict[bytes, bytes], last_seen_ms: float) -> Episode:
    data = {k.decode(): v.decode() for k, v in raw.items()}
    return Episode(
        id=data["id"],
        status=data["status"],
        source=data["source"],
        alertname=data["alertname"],
        starts_at=data["starts_at"],
        ends_at=data["ends_at"] or None,
        first_seen=_from_ms(data["first_seen"]),
        last_seen=_from_ms(last_seen_ms),
        resolved_at=_from_ms(data["resolved_at"]) if "resolved_at" in data else None,
        notifications=int(data["notifications"]),
        event=json.loads(data["event"]),
    )


class EpisodeStore:
    """Alert episodes and the event stream."""

    def __init__(self, client: redis.Redis, intake: IntakePolicy):
        self.redis = client
        self.intake = intake
        scripts = resources.files("core.store")
        self._ingest = client.register_script(scripts.joinpath("ingest.lua").read_text())
        self._repeats = client.register_script(scripts.joinpath("repeats.lua").read_text())
        # Episodes this process saw recorded: id -> (status, settled). Their repeats are sent
        # without the full record, and settled ones may be written behind. Only a belief:
        # Redis stays the authority (see RESEND in ingest.lua). The lock: the intake's
        # flusher thread records too.
        self._known: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._lock = threading.Lock()

    def record_notifications(
        self, events: list[AlertEvent], *, now: datetime, counts: list[int] | None = None
    ) -> list[int]:
        """Dedup and record a batch atomically; one verdict per event (NEW_FIRING, ...).

        `counts`: how many notifications each event stands for (default 1 each)."""
        if not events:
            return []
        counts = counts or [1] * len(events)
        verdicts, settled = self._run_ingest(
            events,
            counts,
            now,
            light={
                i
                for i, event in enumerate(events)
                if self._known.get(event.episode_id, _UNSETTLED)[0] in _ALREADY[event.status]
            },
        )
        stale = [i for i, verdict in enumerate(verdicts) if verdict == RESEND]
        if stale:  # our belief was out of date (evicted, expired): send those in full
            again = self._run_ingest(
                [events[i] for i in stale], [counts[i] for i in stale], now, light=set()
            )
            for i, verdict, done in zip(stale, *again, strict=True):
                verdicts[i], settled[i] = verdict, done
        with self._lock:
            for event, verdict, done in zip(events, verdicts, settled, strict=True):
                self._remember(event.episode_id, event.status, verdict, done)
        return verdicts

    def is_settled_repeat(self, event: AlertEvent) -> bool:
        """True when this process saw the event's episode recorded in a state that makes
        the event a repeat, and settled (resolved, or its decision recorded): recording it
        can then only add to the episode's counters."""
        status, settled = self._known.get(event.episode_id, _UNSETTLED)
        return settled and status in _ALREADY[event.status]

    def add_repeats(
        self, events: list[AlertEvent], counts: list[int], *, now: datetime, token: str
    ) -> list[int]:
        """Count settled repeats written behind (`counts[i]` notifications like
        `events[i]`) in one cheap round trip, at most once per `token` (sent again after a
        lost answer, it changes nothing). Returns the indexes of those that turned out not
        to be plain repeats (episode gone, or firing while they say resolved): nothing was
        recorded for them; record them with `record_notifications`."""
        if not events:
            return []
        args: list = [ms(now), max(1, int(self.intake.episode_ttl.total_seconds())), TOUCH]
        args += [EPISODE_PREFIX, FLUSH_TOKEN_TTL]
        keys = [EPISODES, FLUSH + token]
        for event, count in zip(events, counts, strict=True):
            keys.append(EPISODE_PREFIX + event.episode_id)
            args += (count, event.status)
        answer = [int(position) for position in self._repeats(keys=keys, args=args)]
        if answer == [-1]:
            return []  # applied before: its answer was lost, not its writes
        return [position - 1 for position in answer]

    def mark_decided(self, episode_id: str) -> None:
        """This process recorded the episode's decision: its repeats are settled."""
        with self._lock:
            status, _ = self._known.get(episode_id, _UNSETTLED)
            if status:
                self._known[episode_id] = (status, True)

    def _run_ingest(
        self, events: list[AlertEvent], counts: list[int], now: datetime, light: set[int]
    ) -> tuple[list[int], list[bool]]:
        now_ms = ms(now)
        min_id = max(0, now_ms - int(self.intake.events_max_age.total_seconds() * 1000))
        args: list = [
            now_ms,
            max(1, int(self.intake.episode_ttl.total_seconds())),
            self.intake.max_episodes,
            self.intake.events_max_len,
            min_id,
            EPISODE_PREFIX,
        ]
        keys = [EPISODES, EVENTS]
        batch, records = [], []
        for i, (event, count) in enumerate(zip(events, counts, strict=True)):
            keys.append(EPISODE_PREFIX + event.episode_id)
            records.append("" if i in light else _dumps(event.to_record()))
            entry: list[str | int] = [
                event.episode_id,
                event.status,
                event.starts_iso,
                event.ends_at.isoformat() if event.ends_at else "",
                event.source,
                event.alertname,
            ]
            if count != 1:
                entry.append(count)
            batch.append(entry)
        args.append(_dumps(batch))
        args.extend(records)
        args += [DECISION, DECIDE_CLAIM, TOUCH]
        verdicts, settled = self._ingest(keys=keys, args=args)
        return [int(v) for v in verdicts], [bool(int(s)) for s in settled]

    def _remember(self, episode_id: str, status: str, verdict: int, settled: bool) -> None:
        """Keep a bounded, per-process memory of episodes known to be recorded."""
        # A late firing copy does not reopen a resolved episode, so a resolution is never
        # forgotten, unless the episode was just created again (it had vanished).
        if verdict != NEW_FIRING and self._known.get(episode_id, _UNSETTLED)[0] == "resolved":
            status = "resolved"
        self._known[episode_id] = (status, settled)  # Redis's answer, fresh from the script
        self._known.move_to_end(episode_id)
        if len(self._known) > KNOWN_EPISODES:
            self._known.popitem(last=False)

    def episode(self, episode_id: str) -> Episode | None:
        """One episode by id, or None when unknown or expired."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(EPISODE_PREFIX + episode_id)
        pipe.zscore(EPISODES, episode_id)
        raw, last_seen = pipe.execute()
        return _episode(raw, last_seen) if raw and last_seen is not None else None

    def get_many(self, episode_ids: list[str]) -> dict[str, Episode]:
        """The episodes with these ids that exist, by id (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for episode_id in episode_ids:
            pipe.hgetall(EPISODE_PREFIX + episode_id)
            pipe.zscore(EPISODES, episode_id)
        answers = pipe.execute()
        found = {}
        for episode_id, raw, last_seen in zip(
            episode_ids, answers[::2], answers[1::2], strict=True
        ):
            if raw and last_seen is not None:
                found[episode_id] = _episode(raw, last_seen)
        return found

    def active_since(self, since: datetime) -> int:
        """How many episodes had a notification at or after `since`."""
        return int(self.redis.zcount(EPISODES, ms(since), "+inf"))

    def active_after(self, since: datetime, *, limit: int) -> list[Episode]:
        """The episodes with a notification at or after `since`, most recent first."""
        entries = cast(
            list[bytes],
            self.redis.zrevrangebyscore(EPISODES, "+inf", ms(since), start=0, num=limit),
        )
        return list(self.get_many([entry.decode() for entry in entries]).values())

    def recent_episodes(self, *, status: str | None = None, limit: int = 50) -> list[Episode]:
        """Episodes by most recent activity, optionally only those with `status`."""
        found: list[Episode] = []
        start, page = 0, max(limit, 100)
        while len(found) < limit:
            entries = cast(
                list[tuple[bytes, float]],
                self.redis.zrevrange(EPISODES, start, start + page - 1, withscores=True),
            )
            if not entries:
                break
            pipe = self.redis.pipeline(transaction=False)
            for episode_id, _ in entries:
                pipe.hgetall(EPISODE_PREFIX + episode_id.decode())
            for raw, (_, last_seen) in zip(pipe.execute(), entries, strict=True):
                if raw and (status is None or raw.get(b"status", b"").decode() == status):
                    found.append(_episode(raw, last_seen))
            start += page
        return found[:limit]

    def event_count(self) -> int:
        """How many events the stream holds."""
        return int(self.redis.xlen(EVENTS))
