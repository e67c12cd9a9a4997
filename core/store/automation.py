"""Automation state: pauses, cooldowns, the circuit breaker, rollback claims, the audit log."""

import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import cast

import redis
from redis.typing import EncodableT, FieldT

from core.models import Workload
from core.records import AuditEntry
from core.store import keys
from core.store.records import ms

CLAIM_TTL = timedelta(days=30)  # a rolled-back revision stays "already rolled back" this long
AUDIT_MAX = 10_000


# Give a claim back: only the decision that holds it may, and it no longer counts toward
# the breaker. The cooldown stamp stays (which claim set it is not kept): conservative.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def _text(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


class AutomationStore:
    """The switches on-call engineers use, and the breaker that protects against storms."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        script = resources.files("core.store").joinpath("claim.lua").read_text()
        self._claim = client.register_script(script)
        self._release = client.register_script(RELEASE)

    # -- pauses ----------------------------------------------------------------------------

    def pause(self, *, workload: Workload | None, actor: str, reason: str, now: datetime) -> None:
        """Pause automation globally (workload None) or for one workload."""
        info: dict[FieldT, EncodableT] = {"by": actor, "reason": reason, "at": now.isoformat()}
        pipe = self.redis.pipeline(transaction=True)
        if workload is None:
            pipe.hset(keys.PAUSE_GLOBAL, mapping=info)
        else:
            pipe.hset(keys.PAUSE_WORKLOAD + workload.key, mapping=info)
            pipe.sadd(keys.PAUSED_WORKLOADS, workload.key)
        pipe.execute()

    def resume(self, *, workload: Workload | None) -> bool:
        """Lift a pause; True when there was one."""
        if workload is None:
            return bool(self.redis.delete(keys.PAUSE_GLOBAL))
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.PAUSE_WORKLOAD + workload.key)
        pipe.srem(keys.PAUSED_WORKLOADS, workload.key)
        return bool(pipe.execute()[0])

    def paused(self, workload: Workload | None) -> dict[str, str] | None:
        """The pause that applies (global first), with who, why and when; None if running."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.PAUSE_GLOBAL)
        if workload is not None:
            pipe.hgetall(keys.PAUSE_WORKLOAD + workload.key)
        for scope, raw in zip(("global", "workload"), pipe.execute(), strict=False):
            if raw:
                return {"scope": scope, **_text(raw)}
        return None

    def paused_workloads(self) -> dict[str, dict[str, str]]:
        """Every paused workload with its pause."""
        members = cast(set[bytes], self.redis.smembers(keys.PAUSED_WORKLOADS))
        names = sorted(k.decode() for k in members)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.PAUSE_WORKLOAD + name)
        return {name: _text(raw) for name, raw in zip(names, pipe.execute(), strict=True) if raw}

    # -- cooldown, breaker, claims ---------------------------------------------------------

    def claim_rollback(
        self,
        *,
        workload: Workload,
        revision: str,
        decision_id: str,
        now: datetime,
        cooldown: timedelta,
        max_rollbacks: int,
        window: timedelta,
        force: bool = False,
    ) -> str | None:
        """Atomically check pause, breaker and cooldown and claim the rollback.

        Returns None when claimed, else the skip reason.
        """
        result = self._claim(
            keys=[
                keys.PAUSE_GLOBAL,
                keys.PAUSE_WORKLOAD + workload.key,
                keys.LAST_ROLLBACK + workload.key,
                keys.CIRCUIT,
                keys.ROLLBACK_TIMES,
                keys.claim(workload.key, revision),
            ],
            args=[
                ms(now),
                int(cooldown.total_seconds() * 1000),
                max_rollbacks,
                int(window.total_seconds() * 1000),
                decision_id,
                "1" if force else "0",
                int(CLAIM_TTL.total_seconds()),
            ],
        )
        return None if result[0] == b"ok" else result[1].decode()

    def release_claim(self, workload: Workload, revision: str, decision_id: str) -> bool:
        """Give back the claim `decision_id` holds on rolling back `revision` (the judgment
        said not to, or could not tell): a later episode, or a human's approval, may claim
        it again. True when it was held by that decision."""
        held = self._release(
            keys=[keys.claim(workload.key, revision), keys.ROLLBACK_TIMES], args=[decision_id]
        )
        return bool(held)

    def claimed(self, workload: Workload, revision: str) -> str | None:
        """The decision that claimed this rollback, if any."""
        value = cast(bytes | None, self.redis.get(keys.claim(workload.key, revision)))
        return value.decode() if value else None

    def cooldown_left(self, workload: Workload, *, now: datetime, cooldown: timedelta) -> timedelta:
        """How long until `workload` may be rolled back again (zero when it may)."""
        if cooldown <= timedelta(0):
            # No cooldown, even when the last claim is stamped after `now` (a process whose
            # clock reads later claimed it meanwhile): that claim was not "too recent".
            return timedelta(0)
        last = self.redis.get(keys.LAST_ROLLBACK + workload.key)
        if last is None:
            return timedelta(0)
        left = datetime.fromtimestamp(int(last) / 1000, UTC) + cooldown - now
        return max(left, timedelta(0))

    def circuit(self, *, now: datetime, window: timedelta) -> dict:
        """The breaker: state, why it opened, and rollbacks within the window."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.CIRCUIT)
        pipe.zcount(keys.ROLLBACK_TIMES, ms(now - window), "+inf")
        raw, recent = pipe.execute()
        state: dict[str, str | int] = dict(_text(raw))
        state.setdefault("state", "closed")
        state["rollbacks_in_window"] = int(recent)
        return state

    def reset_circuit(self, *, actor: str, now: datetime) -> None:
        """Close the breaker and forget the rollbacks that tripped it."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.CIRCUIT, keys.ROLLBACK_TIMES)
        pipe.hset(
            keys.CIRCUIT,
            mapping={"state": "closed", "reset_by": actor, "reset_at": now.isoformat()},
        )
        pipe.execute()

    # -- audit -----------------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> None:
        """Append to the audit log (bounded)."""
        self.redis.xadd(
            keys.AUDIT, {"entry": entry.model_dump_json()}, maxlen=AUDIT_MAX, approximate=True
        )

    def audit_log(self, *, limit: int = 100) -> list[AuditEntry]:
        """Newest audit entries first."""
        rows = cast(
            list[tuple[bytes, dict[bytes, bytes]]], self.redis.xrevrange(keys.AUDIT, count=limit)
        )
        return [AuditEntry.model_validate(json.loads(fields[b"entry"])) for _, fields in rows]
