"""The intake pipeline the receiver calls: dedup and record, then decide what is new.

Everything here is source-agnostic: it sees only normalized AlertEvents.

`ingest` records a batch synchronously, in one round trip. `Intake` (one per receiver
process) does the same, except for settled repeats — notifications of an episode this
process saw recorded and resolved or decided, whose only effect in Redis is to add to the
episode's counters. Those are answered at once and written behind: held per episode and
counted by a flusher thread within FLUSH_INTERVAL (store/repeats.lua; one that turns out
not to be a plain repeat goes through ingest.lua and the same decisions). What that
changes, precisely:

- Eventually consistent: an episode's `notifications` count (API, dashboard) lags by at most
  FLUSH_INTERVAL plus one flush; its last activity already lagged by up to a minute (TOUCH).
- A worker killed outright (SIGKILL, OOM) loses the counts it held: at most FLUSH_INTERVAL
  of repeats of episodes already recorded and decided — never an episode, a resolution or a
  decision, which are recorded before the webhook is answered. A worker that exits normally
  flushes first.
- Redis down: a flush that fails keeps its counts and turns write-behind off, so every
  webhook is recorded synchronously again and answered 503 until Redis is back. Between the
  outage and the first failed flush (at most FLUSH_INTERVAL), settled repeats are answered
  202 and their counts are held until a flush succeeds.
- An episode that vanished before the flush (evicted, expired, lost in a failover) is
  recorded again from the held event and decided, as a synchronous repeat would have been.
- Off when the receiver must confirm replication (BACKSTOP_REDIS_MIN_REPLICAS): a repeat
  answered 202 from this process's memory would confirm nothing, and what it remembers as
  settled may be what a failover lost.
"""

import atexit
import logging
import os
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from redis.exceptions import RedisError

from core.decisions import Engine
from core.models import AlertEvent
from core.records import Decision
from core.store import FIRST_RESOLVED, NEW_FIRING, UNDECIDED

log = logging.getLogger("backstop.intake")

FLUSH_INTERVAL = 1.0  # seconds a settled repeat may wait before it is recorded
MAX_PENDING = 5_000  # episodes with held repeats, per process; beyond, record synchronously
FLUSH_BATCH = 500  # episodes per script call, so one flush never blocks Redis for long


@dataclass
class IntakeResult:
    """What became of one webhook's alerts."""

    accepted: int = 0
    duplicates: int = 0
    decisions: list[Decision] = field(default_factory=list)


def ingest(
    engine: Engine, events: list[AlertEvent], *, now: datetime | None = None
) -> IntakeResult:
    """Dedup and record a batch of events, then decide about each new episode."""
    verdicts = engine.store.episodes.record_notifications(events, now=now or engine.clock())
    return _decide(engine, events, verdicts)


def _decide(engine: Engine, events: list[AlertEvent], verdicts: list[int]) -> IntakeResult:
    """Decide about what the verdicts say is new; count the rest as duplicates."""
    result = IntakeResult()
    decided: list[str] = []
    # The batch's decisions go to Redis together, in one transaction, once all are made.
    with engine.store.decisions.batched():
        for event, verdict in zip(events, verdicts, strict=True):
            if verdict not in (NEW_FIRING, UNDECIDED, FIRST_RESOLVED):
                result.duplicates += 1
                continue
            result.decisions.append(_decide_one(engine, event, verdict))
            if verdict != FIRST_RESOLVED:
                decided.append(event.episode_id)
            result.accepted += 1
    # Settled only once recorded: a repeat of an episode whose decision is lost with a
    # failed write must not be written behind, but decided (core/store/ingest.lua).
    for episode_id in decided:
        engine.store.episodes.mark_decided(episode_id)
    return result


class _Facts(TypedDict):
    """What the Engine decides about an episode from (its on_* keyword arguments)."""

    episode_id: str
    labels: dict[str, str]
    starts_at: datetime


def _decide_one(engine: Engine, event: AlertEvent, verdict: int) -> Decision:
    """Decide about one episode; a bug in doing so is recorded as its decision
    (internal_error, paged) instead of failing the rest of the batch. Redis errors
    propagate: the webhook answers 503 and the sender retries."""
    facts: _Facts = {
        "episode_id": event.episode_id,
        "labels": event.labels,
        "starts_at": event.starts_at,
    }
    try:
        if verdict == FIRST_RESOLVED:
            return engine.on_resolved(**facts)
        return engine.on_firing(**facts)
    except RedisError:
        raise
    except Exception as exc:
        # The traceback goes to the log (request id bound); the stored decision keeps only
        # the exception's type, never its message, which may quote anything.
        log.exception(
            "deciding episode %s failed", event.episode_id, extra={"fields": _log_fields(event)}
        )
        return engine.on_failure(**facts, error=exc)


def _log_fields(event: AlertEvent) -> dict:
    """What identifies an episode in a log line (ids and names, never label values)."""
    return {"episode_id": event.episode_id, "alertname": event.alertname, "source": event.source}


class _Unrecorded(Exception):
    """Redis failed during a flush; `batch` may not have been recorded."""

    def __init__(self, batch: "_Batch", reason: str):
        super().__init__(reason)
        self.batch, self.reason = batch, reason


@dataclass
class _Held:
    """The repeats of one episode waiting for the flusher: the latest event and a count."""

    event: AlertEvent
    count: int


@dataclass
class _Batch:
    """One flush of held repeats, under a token that makes sending it again harmless."""

    entries: list[_Held]
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


class Intake:
    """One process's intake pipeline: `ingest`, with settled repeats written behind."""

    def __init__(
        self, engine: Engine, *, interval: float = FLUSH_INTERVAL, write_behind: bool = True
    ):
        self.engine = engine
        self.interval = interval
        self.write_behind = write_behind
        self._held: dict[str, _Held] = {}
        # Batches taken for a flush and not confirmed yet: in flight, or failed, maybe
        # after Redis applied them (the answer was lost). Sent again first, each with its
        # own token, so nothing is counted twice.
        self._unconfirmed: list[_Batch] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time: a flush in flight ends first
        self._flusher: threading.Thread | None = None
        self._failing = False  # the last flush failed: record everything synchronously
        self._closed = False
        _LIVE.add(self)

    def ingest(self, events: list[AlertEvent], *, now: datetime | None = None) -> IntakeResult:
        """Dedup and record a batch; settled repeats are held, the rest recorded now."""
        episodes = self.engine.store.episodes
        behind: list[AlertEvent] = []
        direct: list[AlertEvent] = []
        held_off = self._failing or self._closed or not self.write_behind
        room = 0 if held_off else MAX_PENDING - len(self._held)
        for event in events:
            if room > 0 and episodes.is_settled_repeat(event):
                behind.append(event)
                room -= 1
            else:
                direct.append(event)
        # Synchronous part first: if it fails (503), nothing of this webhook is held, and
        # the sender's retry is not counted twice.
        result = ingest(self.engine, direct, now=now) if direct else IntakeResult()
        if behind:
            self._hold(behind)
            result.duplicates += len(behind)
        return result

    def _hold(self, events: list[AlertEvent]) -> None:
        with self._lock:
            for event in events:
                held = self._held.get(event.episode_id)
                if held is None:
                    self._held[event.episode_id] = _Held(event, 1)
                else:
                    held.event, held.count = event, held.count + 1
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._run, name="backstop-intake-flusher", daemon=True
                )
                self._flusher.start()

    def close(self) -> None:
        """Record what is held now and hold nothing from here on (shutdown, tests)."""
        self._closed = True
        self.flush()

    def pending(self) -> int:
        """How many notifications are held, not yet (known to be) recorded."""
        with self._lock:
            unconfirmed = [held for batch in self._unconfirmed for held in batch.entries]
            return sum(held.count for held in [*self._held.values(), *unconfirmed])

    def flush(self) -> bool:
        """Record every held repeat now; False (counts kept) when Redis failed."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            held, self._held = list(self._held.values()), {}
            self._unconfirmed += [
                _Batch(held[i : i + FLUSH_BATCH]) for i in range(0, len(held), FLUSH_BATCH)
            ]
            batches = list(self._unconfirmed)
        for batch in batches:
            try:
                self._flush_batch(batch)
            except _Unrecorded as failed:
                with self._lock:  # the batch, or what of it is still to record
                    self._unconfirmed[self._unconfirmed.index(batch)] = failed.batch
                self._failing = True
                log.warning("held repeats not recorded yet: %s", failed.reason)
                return False
            with self._lock:
                self._unconfirmed.remove(batch)
        self._failing = False
        return True

    def _flush_batch(self, batch: _Batch) -> None:
        """Count a batch's plain repeats; record the others in full and decide about them."""
        episodes = self.engine.store.episodes
        try:
            others = [
                batch.entries[i]
                for i in episodes.add_repeats(
                    [entry.event for entry in batch.entries],
                    [entry.count for entry in batch.entries],
                    now=self.engine.clock(),
                    token=batch.token,
                )
            ]
        except RedisError as exc:
            raise _Unrecorded(batch, type(exc).__name__) from exc
        if not others:
            return
        # Episodes that vanished (evicted, expired, lost in a failover) or resolved
        # elsewhere meanwhile: recorded and decided as this webhook's repeat would have been.
        events = [entry.event for entry in others]
        try:
            verdicts = episodes.record_notifications(
                events, now=self.engine.clock(), counts=[entry.count for entry in others]
            )
        except RedisError as exc:
            # The batch's plain repeats are in (its token says so); these go again, anew.
            raise _Unrecorded(_Batch(others), type(exc).__name__) from exc
        try:
            _decide(self.engine, events, verdicts)
        except RedisError as exc:  # recorded, not decided: a later repeat decides (UNDECIDED)
            log.warning("decision after a flush failed: %s", type(exc).__name__)

    def _run(self) -> None:
        """The flusher: every interval, record what is held; stop when nothing is."""
        while True:
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # a bug must not kill the flusher and strand the counts
                log.exception("flushing held repeats failed")
            with self._lock:
                if not self._held and not self._unconfirmed:
                    self._flusher = None
                    return

    def _forget_after_fork(self) -> None:
        # A forked child holds a copy of the parent's counts; the parent records them.
        self._held, self._unconfirmed, self._flusher = {}, [], None
        self._lock, self._flushing = threading.Lock(), threading.Lock()


# Every Intake of this process, so held repeats are flushed at exit and not inherited.
_LIVE: "weakref.WeakSet[Intake]" = weakref.WeakSet()


def flush_all() -> None:
    """Record what every Intake of this process holds, now (tests that count writes)."""
    for intake in list(_LIVE):
        intake.flush()


@atexit.register
def close_all() -> None:
    """Close every Intake of this process: at exit, and before a test wipes Redis."""
    for intake in list(_LIVE):
        intake.close()


def _forget_all_after_fork() -> None:
    for intake in _LIVE:
        intake._forget_after_fork()


os.register_at_fork(after_in_child=_forget_all_after_fork)
