"""What each chat target was told about a rollback: one hash per rollback (keys.CHAT), per
target its Slack message (channel and `ts`, when a bot posted one), the last lifecycle event
it was told of, and each event's delivery with its `done` marks (workers/chat.py).

Fields are written one at a time (HSET), so deliveries of different events of one rollback,
running at once in two workers, never overwrite each other's; what must not run at once
for one target (a bot's first post) holds the target's lock (keys.CHAT_LOCK).
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

import redis
from pydantic import Field
from redis.typing import EncodableT, FieldT

from core.records import Record
from core.store import keys

RETENTION = timedelta(days=90)

ChatState = Literal["pending", "sent", "skipped", "failed"]

# Take the lock when free, or from an earlier attempt of the same job (RQ runs a job id at
# most once at a time, so that attempt died); never from another job.
_LOCK = (
    "local held = redis.call('GET', KEYS[1]) "
    "if held and string.sub(held, 1, string.len(ARGV[2])) ~= ARGV[2] then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) return 1"
)
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)


class ChatDelivery(Record):
    """One event's delivery to one target: sent, skipped (superseded, say), failed for
    good, or pending a retry (not before `not_before` when the platform said so)."""

    state: ChatState = "pending"
    detail: str = ""
    attempts: int = 0
    # `sending@<unix>` before the request, `sent` after it: a mark without its `sent` is a
    # request whose outcome no one recorded (the worker died), never repeated blindly.
    done: list[str] = Field(default_factory=list)
    not_before: datetime | None = None
    updated_at: datetime | None = None


class ChatThread(Record):
    """One target's view of one rollback."""

    target: str
    channel: str = ""
    ts: str = ""
    last: str = ""
    events: dict[str, ChatDelivery] = Field(default_factory=dict)

    def in_order(self) -> list[tuple[str, ChatDelivery]]:
        """The events and their deliveries, oldest change first (the dashboard's order)."""
        oldest = datetime.min.replace(tzinfo=UTC)
        return sorted(self.events.items(), key=lambda item: item[1].updated_at or oldest)


class ChatStore:
    """Chat deliveries in Redis, kept RETENTION after their last change."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._lock = client.register_script(_LOCK)
        self._release = client.register_script(_RELEASE)

    def thread(self, rollback_id: str, target: str) -> ChatThread:
        """What `target` was told about the rollback (empty when nothing yet)."""
        return self.threads(rollback_id).get(target) or ChatThread(target=target)

    def threads(self, rollback_id: str) -> dict[str, ChatThread]:
        """Every target's view of the rollback, by target name."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(keys.CHAT + rollback_id))
        found: dict[str, ChatThread] = {}
        for name, value in raw.items():
            target, _, field = name.decode().partition(":")
            thread = found.setdefault(target, ChatThread(target=target))
            if field.startswith("event:"):
                event = field.removeprefix("event:")
                thread.events[event] = ChatDelivery.model_validate_json(value)
            elif field in ("channel", "ts", "last"):
                setattr(thread, field, value.decode())
        return found

    def save_delivery(
        self, rollback_id: str, target: str, event: str, delivery: ChatDelivery
    ) -> None:
        """Record one event's delivery to one target."""
        self._set(rollback_id, {f"{target}:event:{event}": delivery.model_dump_json()})

    def save_message(self, rollback_id: str, target: str, *, channel: str, ts: str) -> None:
        """Record where a bot's message about the rollback is, to update it later."""
        self._set(rollback_id, {f"{target}:channel": channel, f"{target}:ts": ts})

    def save_last(self, rollback_id: str, target: str, event: str) -> None:
        """Record the lifecycle event the target heard of last."""
        self._set(rollback_id, {f"{target}:last": event})

    def lock(self, rollback_id: str, target: str, *, owner: str, token: str, ttl: timedelta):
        """Hold the target's deliveries about the rollback for `owner` (a job id); False
        when another job holds them. `token` (`<owner>:<anything>`) names this attempt."""
        if not token.startswith(f"{owner}:"):
            raise ValueError("a lock token starts with its owner and a colon")
        return bool(
            self._lock(
                keys=[f"{keys.CHAT_LOCK}{rollback_id}:{target}"],
                args=[token, f"{owner}:", int(ttl.total_seconds() * 1000)],
            )
        )

    def unlock(self, rollback_id: str, target: str, token: str) -> None:
        """Let go of the target's lock if it is still ours."""
        self._release(keys=[f"{keys.CHAT_LOCK}{rollback_id}:{target}"], args=[token])

    def _set(self, rollback_id: str, fields: Mapping[FieldT, EncodableT]) -> None:
        key = keys.CHAT + rollback_id
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, RETENTION)
            pipe.execute()
