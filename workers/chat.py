"""Chat notifications: each event of a rollback (started, verified, verification_failed,
blocked, failed, awaiting_approval, denied, quarantine_released) told once to each Slack or
Teams target its service routes it to (config/chat.py), by `workers.jobs.chat` on the
incidents queue, never in a rollback's way.

Delivery is like incidents': what each target was told is recorded per (rollback, target,
event) in Redis (core/store/chat.py), a `sending@` mark before the request and `sent`
after it, so a retry after an outage or a crash repeats nothing. A mark without its
`sent` is a request whose outcome nobody saw (the worker died, or the platform did not
answer in time): a new message is then not posted again (a Slack bot's update, which is
idempotent, is). A failure that sent nothing (refused connection, 429, 5xx) removes the
mark and re-raises, so the job retries for hours; a 429's Retry-After is waited for in
the job when short, else no request is made before it has passed; a permanent refusal (a
4xx) is recorded as `failed`. A Slack bot posts one message per rollback and updates it
(its channel and `ts` are recorded); a quarantine's end is a reply in its thread. Webhooks
post one message per event. A start that an outcome already followed, or a wait for
approval a human already answered, is `skipped`, not sent late.
"""

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from config.chat import ChatTarget, SecretUnavailable
from config.policy import Policy
from config.settings import Settings
from core import queues, testpoints
from core.errors import PermanentError, TimedOut, TransientError
from core.integrations.chat import RateLimited
from core.integrations.slack import MessageGone, SlackBot, SlackWebhook
from core.integrations.teams import TeamsWorkflow
from core.records import Decision, Quarantine, Rollback, utcnow
from core.store import Store
from core.store.chat import ChatDelivery, ChatThread
from workers.chatcards import slack_message, teams_card
from workers.chatnotes import (
    Links,
    Note,
    approval_note,
    denial_note,
    release_note,
    rollback_note,
)

log = logging.getLogger("backstop.chat")

# A 429 asking for at most this many seconds is waited for in the job (the incidents
# queue is the lowest-priority one, so no rollback waits behind it); longer, the job's
# retry schedule does the waiting.
INLINE_RETRY_AFTER = 2.0
# Longer than one delivery may take (two requests and the inline wait).
LOCK_TTL = timedelta(minutes=2)
LIFECYCLE = ("started", "verified", "verification_failed", "blocked", "failed")
# What each event about a decision's wait for a human says (queues.DECISION_EVENTS).
DECISION_NOTES = {"awaiting_approval": approval_note, "denied": denial_note}


@dataclass(frozen=True)
class BotChannel:
    """A Slack bot and the channel it posts a rollback's first message in."""

    bot: SlackBot
    channel: str


Client = TeamsWorkflow | SlackWebhook | BotChannel


@dataclass
class Subject:
    """What one chat job is about: the rollback (its id in any case), its decision, and for
    a quarantine's end, the quarantine."""

    rollback_id: str
    event: str
    key: str
    rollback: Rollback | None = None
    decision: Decision | None = None
    quarantine: Quarantine | None = None


@dataclass
class Chatter:
    """Tells the chat targets of the policy about rollbacks."""

    store: Store
    policy: Policy
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(cls, store: Store, policy: Policy, settings: Settings) -> "Chatter":
        """A chatter for this process's store, policy and settings."""
        return cls(store, policy, settings)

    def deliver(
        self,
        *,
        rollback_id: str,
        event: str,
        attempt: int = 1,
        decision_id: str | None = None,
        owner: str | None = None,
    ) -> dict[str, str]:
        """Tell every target routed `event`; each target's state. Raises TransientError
        (the job retries) while a target's delivery is pending."""
        key = queues.chat_event(event, attempt=attempt, decision_id=decision_id)
        subject = self._subject(rollback_id, event, key, decision_id)
        if subject is None:
            return {}
        service = self.policy.service_for(subject.decision.labels) if subject.decision else None
        names = self.policy.chat.route(service.chat if service else None, event)
        owner = owner or queues.chat_job_id(rollback_id, key)
        states: dict[str, str] = {}
        problems: list[str] = []
        for name in names:
            delivery, problem = self._one(name, self.policy.chat.targets[name], subject, owner)
            states[name] = delivery.state
            if problem:
                problems.append(f"{name}: {problem}")
        if problems:
            raise TransientError("; ".join(problems))
        return states

    # -- one target ------------------------------------------------------------------------

    def _one(
        self, name: str, target: ChatTarget, subject: Subject, owner: str
    ) -> tuple[ChatDelivery, str | None]:
        """Deliver to one target under its lock: its delivery, and the transient problem
        that keeps it pending, if any."""
        token = f"{owner}:{uuid.uuid4().hex}"
        store, rollback_id = self.store.chat, subject.rollback_id
        if not store.lock(rollback_id, name, owner=owner, token=token, ttl=LOCK_TTL):
            delivery = store.thread(rollback_id, name).events.get(subject.key) or ChatDelivery()
            if delivery.state == "pending":
                self._save(subject, name, delivery)
                return delivery, "another delivery to this target is at work"
            return delivery, None
        try:
            thread = store.thread(rollback_id, name)
            delivery = thread.events.get(subject.key) or ChatDelivery()
            if delivery.state != "pending":
                return delivery, None  # sent, skipped or refused for good: nothing to do
            return delivery, self._locked(name, target, subject, thread, delivery)
        finally:
            store.unlock(rollback_id, name, token)

    def _locked(
        self,
        name: str,
        target: ChatTarget,
        subject: Subject,
        thread: ChatThread,
        delivery: ChatDelivery,
    ) -> str | None:
        now = self.clock()
        skip = _superseded(subject, thread)
        if skip:
            delivery.state, delivery.detail = "skipped", skip
            self._save(subject, name, delivery, log_it=True)
            return None
        if delivery.not_before is not None and now < delivery.not_before:
            self._save(subject, name, delivery)
            return f"rate limited until {delivery.not_before.isoformat()}"
        delivery.attempts += 1
        try:
            self._send(name, target, subject, thread, delivery)
        except RateLimited as exc:
            wait = exc.retry_after or 0.0
            delivery.not_before = now + timedelta(seconds=wait) if wait else None
            return self._pending(subject, name, delivery, str(exc))
        except TransientError as exc:
            return self._pending(subject, name, delivery, str(exc))
        except (PermanentError, SecretUnavailable) as exc:
            delivery.state, delivery.detail = "failed", str(exc)
            self._save(subject, name, delivery, log_it=True)
            return None
        delivery.state, delivery.not_before = "sent", None
        if subject.event in LIFECYCLE:
            self.store.chat.save_last(subject.rollback_id, name, subject.key)
        self._save(subject, name, delivery, log_it=True)
        return None

    def _send(
        self,
        name: str,
        target: ChatTarget,
        subject: Subject,
        thread: ChatThread,
        delivery: ChatDelivery,
    ) -> None:
        """Send the message, marked before and after the request (see the module's doc)."""
        updating = target.bot and bool(thread.ts) and subject.event != "quarantine_released"
        if not updating and any(m.startswith("sending@") for m in delivery.done):
            delivery.detail = "an earlier attempt stopped mid-request; not posted again"
            return
        note, client = self._note(subject), _client(target)
        delivery.done = [m for m in delivery.done if not m.startswith("sending@")]
        delivery.done.append(f"sending@{self.clock().timestamp():.0f}")
        self._save(subject, name, delivery)
        try:
            detail = self._patiently(lambda: self._request(name, client, subject, thread, note))
        except TimedOut as exc:
            # The platform may have posted it: the mark stays, and nothing is sent again.
            delivery.detail = f"{exc}; it may have been posted, not posted again"
            return
        except (TransientError, PermanentError):
            delivery.done.remove(delivery.done[-1])  # nothing was posted
            raise
        testpoints.reached("after_chat_send")
        delivery.done.append("sent")
        delivery.detail = detail

    def _request(
        self, name: str, client: Client, subject: Subject, thread: ChatThread, note: Note
    ) -> str:
        """The one request (two, when a bot's message to update is gone); what was done."""
        if isinstance(client, TeamsWorkflow):
            client.post(card=teams_card(note))
            return "card posted"
        text, blocks = slack_message(note)
        if isinstance(client, SlackWebhook):
            client.post(text=text, blocks=blocks)
            return "message posted"
        bot, channel = client.bot, thread.channel or client.channel
        if subject.event == "quarantine_released":
            bot.post(channel=channel, text=text, blocks=blocks, thread_ts=thread.ts or None)
            return "replied in the rollback's thread" if thread.ts else "message posted"
        if thread.ts:
            try:
                bot.update(channel=channel, ts=thread.ts, text=text, blocks=blocks)
                return f"message {thread.ts} updated"
            except MessageGone:
                pass  # deleted, or too old to edit: a new message takes its place
        posted = bot.post(channel=channel, text=text, blocks=blocks)
        self.store.chat.save_message(
            subject.rollback_id, name, channel=posted.channel, ts=posted.ts
        )
        thread.channel, thread.ts = posted.channel, posted.ts
        return f"message {posted.ts} posted"

    def _patiently(self, call: Callable[[], str]) -> str:
        """`call`, once more after a short Retry-After (INLINE_RETRY_AFTER)."""
        try:
            return call()
        except RateLimited as exc:
            if exc.retry_after is None or exc.retry_after > INLINE_RETRY_AFTER:
                raise
            self.sleep(exc.retry_after)
            return call()

    # -- what is told ----------------------------------------------------------------------

    def _subject(
        self, rollback_id: str, event: str, key: str, decision_id: str | None
    ) -> Subject | None:
        """The records the event is about; None when there is nothing to tell (gone, or a
        dry run)."""
        subject = Subject(rollback_id, event, key)
        if event == "quarantine_released":
            subject.quarantine = self.store.quarantine.get(rollback_id)
            if subject.quarantine is None:
                return None
            subject.decision = self.store.decisions.get(subject.quarantine.decision_id)
            return subject
        subject.rollback = self.store.rollbacks.get(rollback_id)
        if subject.rollback is not None and subject.rollback.mode == "dry-run":
            return None
        if event in queues.DECISION_EVENTS:
            subject.decision = self.store.decisions.get(decision_id) if decision_id else None
            return subject if subject.decision is not None else None
        if subject.rollback is None:
            return None
        subject.decision = self.store.decisions.get(subject.rollback.decision_id)
        return subject

    def _note(self, subject: Subject) -> Note:
        """The message, from the records as they are now."""
        links = self._links(subject.decision)
        if subject.quarantine is not None:
            return release_note(subject.quarantine, links=links)
        if subject.event in DECISION_NOTES and subject.decision is not None:
            return DECISION_NOTES[subject.event](subject.decision, links=links)
        rollback = subject.rollback
        if rollback is None:
            raise PermanentError(f"rollback {subject.rollback_id} is gone")
        return rollback_note(
            subject.event,
            rollback,
            subject.decision,
            links=links,
            quarantine=self.store.quarantine.get(rollback.id),
            jira_key=self.store.incidents.jira_of(rollback.id),
        )

    def _links(self, decision: Decision | None) -> Links:
        episode = self.store.episodes.episode(decision.episode_id) if decision else None
        return Links(
            public_url=self.settings.public_url,
            jira_url=self.settings.jira_url,
            alert_url=episode.event.get("generator_url") if episode else None,
        )

    # -- records ---------------------------------------------------------------------------

    def _pending(self, subject: Subject, name: str, delivery: ChatDelivery, why: str) -> str:
        delivery.state, delivery.detail = "pending", f"retrying: {why}"
        self._save(subject, name, delivery, log_it=True)
        return why

    def _save(
        self, subject: Subject, name: str, delivery: ChatDelivery, *, log_it: bool = False
    ) -> None:
        delivery.updated_at = self.clock()
        self.store.chat.save_delivery(subject.rollback_id, name, subject.key, delivery)
        if log_it:
            fields = {
                "rollback_id": subject.rollback_id,
                "target": name,
                "event": subject.key,
                "state": delivery.state,
                "attempt": delivery.attempts,
            }
            if delivery.detail:
                fields["detail"] = delivery.detail
            level = logging.WARNING if delivery.state in ("pending", "failed") else logging.INFO
            log.log(level, "chat %s %s", name, delivery.state, extra={"fields": fields})


def _superseded(subject: Subject, thread: ChatThread) -> str:
    """Why the event is no longer worth telling the target; "" when it is."""
    rollback, decision = subject.rollback, subject.decision
    if subject.event == "started":
        if rollback is not None and rollback.terminal:
            return f"superseded: the rollback already ended ({rollback.status})"
        if thread.last.startswith("started:"):
            return "this start was already told (by an attempt that died since)"
    if (
        subject.event == "awaiting_approval"
        and decision is not None
        and decision.outcome != "awaiting_approval"
    ):
        return f"superseded: the decision is now {decision.outcome} ({decision.reason})"
    return ""


def _client(target: ChatTarget) -> Client:
    """The target's client, its secret read now (SecretUnavailable when it cannot be)."""
    if target.token is not None:
        return BotChannel(
            SlackBot(target.token.read(), api_url=target.api_url), target.channel or ""
        )
    if target.webhook is None:
        raise PermanentError("the target has no webhook")
    url = target.webhook.read()
    return TeamsWorkflow(url) if target.kind == "teams" else SlackWebhook(url)
