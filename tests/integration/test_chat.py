"""Chat notifications on real Redis, to the Slack and Teams doubles over HTTP: every event
to every platform, one Slack message per rollback with a bot token, routing per service,
429 and 5xx retried, a 4xx failed for good, a platform down while a real rollback goes on
(R4), and a worker killed right after the send (R2): each message posted exactly once."""

import json
import sys
from datetime import timedelta

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from config.policy import Policy
from config.settings import Settings
from core import queues
from core.errors import TransientError
from core.records import Decision, Quarantine, Rollback, Rollout, WorkloadRecord, utcnow
from core.store import Store, keys
from receiver.app import create_app
from testbed.processes import launch, terminate
from tests.conftest import wait_for
from tests.secrets import API_TOKEN, WEBHOOK_TOKEN
from tests.workloads import FAST, bad_release
from workers.chat import Chatter
from workers.quarantines import review_quarantines

pytestmark = pytest.mark.integration

WORKLOAD = WorkloadRecord(cluster="default", namespace="shop", kind="Deployment", name="checkout")
ALL = ["slack-hook", "slack-bot", "teams"]


@pytest.fixture
def chat_env(monkeypatch, tmp_path, slack_server, teams_server):
    """The targets' secrets where the policy says they are: two variables and a file."""
    monkeypatch.setenv("TEST_SLACK_WEBHOOK", slack_server.webhook_url)
    monkeypatch.setenv("TEST_SLACK_TOKEN", slack_server.bot_token)
    secret = tmp_path / "teams-url"
    secret.write_text(teams_server.webhook_url + "\n")
    return {"slack": slack_server, "teams": teams_server, "teams_file": str(secret)}


def chat_block(env, routes=None, **events) -> dict:
    """The policy's chat block: a Slack webhook, a Slack bot, a Teams workflow."""
    slack = env["slack"]
    targets = {
        "slack-hook": {"kind": "slack", "webhook": {"env": "TEST_SLACK_WEBHOOK"}},
        "slack-bot": {
            "kind": "slack",
            "token": {"env": "TEST_SLACK_TOKEN"},
            "channel": slack.channel,
            "api_url": slack.api_url,
        },
        "teams": {"kind": "teams", "webhook": {"file": env["teams_file"]}},
    }
    for name, wanted in events.items():
        targets[name.replace("_", "-")]["events"] = wanted
    block: dict = {"targets": targets}
    if routes is not None:
        block["routes"] = routes
    return block


class Clock:
    """A settable clock for the chatter (Retry-After without waiting for it)."""

    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now


def chatter(redis_client, policy: dict, clock=None) -> Chatter:
    parsed = Policy.model_validate({"mode": "enforce", **policy})
    settings = Settings(
        public_url="https://backstop.example",
        jira_url="https://jira.example",
        api_token=API_TOKEN,
        webhook_token=WEBHOOK_TOKEN,
    )
    slept: list[float] = []
    found = Chatter(Store(redis_client, parsed), parsed, settings, sleep=slept.append)
    if clock is not None:
        found.clock = clock
    found.slept = slept  # type: ignore[attr-defined]
    return found


REASONS = {"awaiting_approval": "approval_required", "skipped": "denied"}


def seed(
    store: Store, rollback_id="rollback-1", status="verified", labels=None, outcome="rollback"
):
    """A rollback of shop/checkout from revision 2 to 1, its decision, its quarantine."""
    rollout = Rollout(
        workload=WORKLOAD, revision="2", images=["shop/checkout:2"], started_at=utcnow()
    )
    decision = Decision(
        id=f"d-{rollback_id}",
        episode_id=f"d-{rollback_id}",
        alertname="CheckoutHigh5xx",
        labels=labels or {"alertname": "CheckoutHigh5xx", "namespace": "shop"},
        starts_at=utcnow(),
        workload=WORKLOAD,
        rollout=rollout,
        outcome=outcome,
        reason=REASONS.get(outcome, "enqueued"),
        detail="waiting for a human to approve rolling back shop/checkout from revision 2",
    )
    store.decisions.save(decision)
    rollback = Rollback(
        id=rollback_id,
        decision_id=decision.id,
        workload=WORKLOAD,
        bad_revision="2",
        target_revision="1",
        status=status,
        reason={"verified": "kpis_recovered", "running": ""}.get(status, "why not"),
        attempts=1,
    )
    store.rollbacks.save(rollback)
    store.quarantine.add(
        Quarantine(
            id=rollback_id,
            workload=WORKLOAD,
            revision="2",
            images=["shop/checkout:2"],
            rollback_id=rollback_id,
            decision_id=decision.id,
            expires_at=utcnow() + timedelta(days=14),
        )
    )
    return rollback, decision


def headers(slack) -> list[str]:
    return [m.blocks[0]["text"]["text"] for m in slack.messages if m.via == "webhook"]


def states(store: Store, rollback_id: str, key: str) -> dict[str, str]:
    return {n: t.events[key].state for n, t in store.chat.threads(rollback_id).items()}


EVENTS = {
    "started": ("running", "Rolling back shop/checkout"),
    "verified": ("verified", "Rolled back shop/checkout: verified"),
    "verification_failed": ("verification_failed", "Rolled back shop/checkout: not healthy"),
    "blocked": ("blocked", "Rollback of shop/checkout blocked"),
    "failed": ("failed", "Rollback of shop/checkout failed"),
    "awaiting_approval": ("running", "Rollback of shop/checkout awaits approval"),
    "denied": ("running", "Rollback of shop/checkout denied"),
    "quarantine_released": ("verified", "Quarantine of shop/checkout revision 2 ended"),
}


@pytest.mark.parametrize("event", list(EVENTS))
def test_every_event_reaches_slack_and_teams(redis_client, chat_env, event):
    slack, teams = chat_env["slack"], chat_env["teams"]
    chat = chatter(redis_client, {"chat": chat_block(chat_env)})
    status, title = EVENTS[event]
    outcome = {"awaiting_approval": "awaiting_approval", "denied": "skipped"}.get(event, "rollback")
    _, decision = seed(chat.store, status=status, outcome=outcome)
    if event == "quarantine_released":
        chat.store.quarantine.end("rollback-1", "released", by="alice", reason="fixed", at=utcnow())
    found = chat.deliver(rollback_id="rollback-1", event=event, decision_id=decision.id)
    assert found == dict.fromkeys(ALL, "sent")
    assert headers(slack) == [title]
    [posted] = [m for m in slack.messages if m.via == "api"]
    assert posted.blocks[0]["text"]["text"] == title and posted.channel == slack.channel
    [card] = teams.cards
    assert card["body"][0]["inlines"][0]["text"] == title and teams.refused == []
    assert all(r.status in (200, 202) for d in (slack, teams) for r in d.requests)
    # Told once: running it again (a duplicate job, a retry) sends nothing more.
    assert chat.deliver(rollback_id="rollback-1", event=event, decision_id=decision.id) == found
    assert len(slack.messages) == 2 and len(teams.cards) == 1


def test_a_slack_bot_keeps_one_message_per_rollback(redis_client, chat_env):
    slack, teams = chat_env["slack"], chat_env["teams"]
    chat = chatter(redis_client, {"chat": chat_block(chat_env)})
    rollback, decision = seed(chat.store, status="running", outcome="awaiting_approval")
    chat.deliver(rollback_id=rollback.id, event="awaiting_approval", decision_id=decision.id)
    chat.store.decisions.save(decision.model_copy(update={"outcome": "rollback"}))
    chat.deliver(rollback_id=rollback.id, event="started")
    chat.store.rollbacks.save(rollback.model_copy(update={"status": "verified"}))
    chat.deliver(rollback_id=rollback.id, event="verified")
    chat.store.quarantine.end(rollback.id, "expired", by="backstop", reason="ttl", at=utcnow())
    chat.deliver(rollback_id=rollback.id, event="quarantine_released")

    bot = [m for m in slack.messages if m.via == "api"]
    [message, reply] = bot
    assert [v["blocks"][0]["text"]["text"] for v in message.versions] == [
        "Rollback of shop/checkout awaits approval",
        "Rolling back shop/checkout",
    ]
    assert message.blocks[0]["text"]["text"] == "Rolled back shop/checkout: verified"
    assert reply.thread_ts == message.ts
    thread = chat.store.chat.thread(rollback.id, "slack-bot")
    assert (thread.channel, thread.ts, thread.last) == (slack.channel, message.ts, "verified:1")
    # Webhooks cannot edit: one message per state.
    assert len(headers(slack)) == 4 and len(teams.cards) == 4


def test_a_bot_message_gone_is_replaced_by_a_new_one(redis_client, chat_env):
    slack = chat_env["slack"]
    chat = chatter(redis_client, {"chat": chat_block(chat_env, routes=["slack-bot"])})
    rollback, _ = seed(chat.store)
    # Its message was deleted (Slack: message_not_found on chat.update).
    chat.store.chat.save_message(rollback.id, "slack-bot", channel=slack.channel, ts="1.000001")
    assert chat.deliver(rollback_id=rollback.id, event="verified") == {"slack-bot": "sent"}
    [message] = slack.messages
    assert chat.store.chat.thread(rollback.id, "slack-bot").ts == message.ts != "1.000001"


def test_late_events_are_skipped_not_sent(redis_client, chat_env):
    slack = chat_env["slack"]
    chat = chatter(redis_client, {"chat": chat_block(chat_env, routes=["slack-hook"])})
    rollback, decision = seed(chat.store, status="verified")
    # A start told after the outcome, and a wait for approval already answered: skipped.
    assert chat.deliver(rollback_id=rollback.id, event="started") == {"slack-hook": "skipped"}
    found = chat.deliver(
        rollback_id=rollback.id, event="awaiting_approval", decision_id=decision.id
    )
    assert found == {"slack-hook": "skipped"} and slack.messages == []
    # A dry run is never told.
    chat.store.rollbacks.save(rollback.model_copy(update={"mode": "dry-run"}))
    assert chat.deliver(rollback_id=rollback.id, event="verified") == {}


def test_routes_per_service_and_events_per_target(redis_client, chat_env):
    slack, teams = chat_env["slack"], chat_env["teams"]
    policy = {
        "chat": chat_block(chat_env, routes=["slack-hook"], slack_bot=["failed"]),
        "services": [
            {"name": "payments", "match": {"team": "payments"}, "chat": ["teams", "slack-bot"]},
            {"name": "quiet", "match": {"team": "quiet"}, "chat": []},
        ],
    }
    chat = chatter(redis_client, policy)
    seed(chat.store, "rb-default")
    seed(chat.store, "rb-payments", labels={"team": "payments", "alertname": "A"})
    seed(chat.store, "rb-quiet", labels={"team": "quiet", "alertname": "A"})
    assert chat.deliver(rollback_id="rb-default", event="verified") == {"slack-hook": "sent"}
    # The bot hears only of failures: payments' verified goes to Teams alone.
    assert chat.deliver(rollback_id="rb-payments", event="verified") == {"teams": "sent"}
    assert chat.deliver(rollback_id="rb-quiet", event="verified") == {}
    assert len(headers(slack)) == 1 and len(teams.cards) == 1
    assert [m for m in slack.messages if m.via == "api"] == []


def test_rate_limits_are_waited_for_then_delivered_once(redis_client, chat_env):
    slack, teams = chat_env["slack"], chat_env["teams"]
    clock = Clock()
    chat = chatter(
        redis_client, {"chat": chat_block(chat_env, routes=["slack-hook", "teams"])}, clock
    )
    seed(chat.store)
    # Slack asks for 1 s: waited for in the job, then sent.
    slack.fail_with(429, 1, retry_after=1)
    # Teams asks for 30 s: the job retries later, and asks nothing before then.
    teams.fail_with(429, 1, retry_after=30)
    with pytest.raises(TransientError, match="teams: Teams rate limited"):
        chat.deliver(rollback_id="rollback-1", event="verified")
    assert chat.slept == [1.0] and len(headers(slack)) == 1
    assert states(chat.store, "rollback-1", "verified:1") == {
        "slack-hook": "sent",
        "teams": "pending",
    }
    asked = len(teams.requests)
    with pytest.raises(TransientError, match="rate limited until"):
        chat.deliver(rollback_id="rollback-1", event="verified")
    assert len(teams.requests) == asked
    clock.now += timedelta(seconds=31)
    assert chat.deliver(rollback_id="rollback-1", event="verified") == {
        "slack-hook": "sent",
        "teams": "sent",
    }
    assert len(teams.cards) == 1 and len(headers(slack)) == 1


def test_5xx_is_retried_and_a_4xx_fails_for_good(redis_client, chat_env, monkeypatch):
    slack, teams = chat_env["slack"], chat_env["teams"]
    chat = chatter(redis_client, {"chat": chat_block(chat_env)})
    seed(chat.store)
    slack.fail_with(500)
    # A Teams URL whose signature no longer holds: 401, never retried.
    with open(chat_env["teams_file"], "w") as handle:
        handle.write(teams.webhook_url.replace(teams.signature, "revoked"))
    with pytest.raises(TransientError):
        chat.deliver(rollback_id="rollback-1", event="verified")
    thread = chat.store.chat.threads("rollback-1")
    assert thread["teams"].events["verified:1"].state == "failed"
    assert "401" in thread["teams"].events["verified:1"].detail
    assert thread["slack-hook"].events["verified:1"].done == []  # nothing was posted
    slack.clear()
    assert chat.deliver(rollback_id="rollback-1", event="verified") == {
        "slack-hook": "sent",
        "slack-bot": "sent",
        "teams": "failed",
    }
    assert len(slack.messages) == 2 and teams.cards == []
    # Secrets (webhook URLs, token) are nowhere in what Backstop stored.
    stored = b"".join(
        json.dumps({k.decode(): v.decode() for k, v in redis_client.hgetall(key).items()}).encode()
        for key in redis_client.scan_iter(keys.CHAT + "*")
    )
    for secret in (slack.webhook_url, slack.bot_token, teams.signature, "revoked"):
        assert secret.encode() not in stored


def test_a_missing_secret_fails_its_target_only(redis_client, chat_env, monkeypatch):
    monkeypatch.delenv("TEST_SLACK_TOKEN")
    chat = chatter(redis_client, {"chat": chat_block(chat_env)})
    seed(chat.store)
    assert chat.deliver(rollback_id="rollback-1", event="verified") == {
        "slack-hook": "sent",
        "slack-bot": "failed",
        "teams": "sent",
    }
    detail = chat.store.chat.thread("rollback-1", "slack-bot").events["verified:1"].detail
    assert detail == "$TEST_SLACK_TOKEN is unset or empty"


def test_a_bot_killed_after_posting_updates_instead_of_posting_again(redis_client, chat_env):
    """In-process: the horse dies right after chat.postMessage answered."""
    slack = chat_env["slack"]
    chat = chatter(redis_client, {"chat": chat_block(chat_env, routes=["slack-bot"])})
    seed(chat.store)

    class Killed(BaseException):
        pass

    def die(name):
        if name == "after_chat_send":
            raise Killed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("core.testpoints.reached", die)
        with pytest.raises(Killed):
            chat.deliver(rollback_id="rollback-1", event="verified")
    assert chat.deliver(rollback_id="rollback-1", event="verified") == {"slack-bot": "sent"}
    [message] = slack.messages
    assert len(message.versions) == 1  # the retry updated the one message


def test_a_target_lock_passes_only_to_the_same_job(redis_client):
    """A job that died holding a target's lock: its own retry takes it over, no other job
    (not even one whose id it prefixes) until the lock expires."""
    chat = Store(redis_client, Policy()).chat
    ttl = timedelta(minutes=2)
    first = "chat-rb-verified_1"
    assert chat.lock("rb", "t", owner=first, token=f"{first}:a", ttl=ttl)
    assert not chat.lock("rb", "t", owner=f"{first}0", token=f"{first}0:b", ttl=ttl)
    assert not chat.lock("rb", "t", owner="chat-rb-started_1", token="chat-rb-started_1:c", ttl=ttl)
    assert chat.lock("rb", "t", owner=first, token=f"{first}:d", ttl=ttl)
    chat.unlock("rb", "t", f"{first}:a")  # no longer its token: still held
    assert not chat.lock("rb", "t", owner="other", token="other:e", ttl=ttl)
    chat.unlock("rb", "t", f"{first}:d")
    assert chat.lock("rb", "t", owner="other", token="other:f", ttl=ttl)


def test_enqueueing_never_raises_into_the_caller(chat_env, caplog):
    policy = Policy.model_validate({"chat": chat_block(chat_env)})
    unreachable = redis_lib.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    found = queues.notify_chat(unreachable, policy.chat, rollback_id="r", event="verified")
    assert found is None and "chat notice not enqueued" in caplog.text
    # No target hears of the event: nothing is even tried.
    assert queues.notify_chat(unreachable, Policy().chat, rollback_id="r", event="verified") is None


# -- where the events come from ---------------------------------------------------------------


def test_a_wait_for_approval_a_release_and_an_expiry_are_told(
    redis_url, redis_client, chat_env, make_settings
):
    slack = chat_env["slack"]
    policy = Policy.model_validate(
        {"mode": "approve", "chat": chat_block(chat_env, routes=["slack-hook"])}
    )
    app = create_app(make_settings(public_url="https://backstop.example"), policy=policy)
    state = app.extensions["backstop"]
    store = state.store
    rollback, decision = seed(store, "rollback-approve", status="running")
    # The engine records a decision awaiting approval (here: a judgment that could not
    # tell): chat hears of it, under the id of the rollback it would run, with the
    # approvals page.
    state.engine.judged(decision, "judgment_inconclusive")
    expected = queues.rollback_job_id(WORKLOAD.workload(), "2")
    [job] = chat_jobs(redis_client)
    assert job.kwargs == {
        "rollback_id": expected,
        "event": "awaiting_approval",
        "attempt": 1,
        "decision_id": decision.id,
    }
    chat = chatter(redis_client, {"chat": chat_block(chat_env, routes=["slack-hook"])})
    assert chat.deliver(**job.kwargs) == {"slack-hook": "sent"}
    links = slack.messages[0].blocks[-2]["text"]["text"]
    assert "<https://backstop.example/approvals|Approve or deny>" in links
    # A human releases the quarantine on the API: told.
    answer = app.test_client().post(
        f"/api/v1/quarantine/{rollback.id}/release",
        json={"reason": "fixed in 2.0.1"},
        headers={"Authorization": f"Bearer {API_TOKEN}", "X-Backstop-Actor": "alice"},
    )
    assert answer.status_code == 200, answer.json
    ids = {j.id for j in chat_jobs(redis_client)}
    assert f"chat-{rollback.id}-quarantine_released" in ids
    # The review ends an expired one: told too.
    seed(store, "rollback-old")
    store.quarantine.end("rollback-old", "expired", by="x", reason="x", at=utcnow())
    old = store.quarantine.get("rollback-old")
    old = old.model_copy(update={"end": None, "expires_at": utcnow() - timedelta(seconds=1)})
    redis_client.delete(keys.QUARANTINE + "rollback-old")
    store.quarantine.add(old)
    review_quarantines(store, None, policy.quarantine, utcnow(), chat=policy.chat)
    ids = {j.id for j in chat_jobs(redis_client)}
    assert "chat-rollback-old-quarantine_released" in ids
    chat.deliver(rollback_id="rollback-old", event="quarantine_released")
    assert headers(slack)[-1] == "Quarantine of shop/checkout revision 2 ended"
    assert "expired" in slack.messages[-1].blocks[1]["text"]["text"]


def test_a_denial_is_told_and_the_bots_message_says_so(
    redis_url, redis_client, chat_env, make_settings
):
    slack = chat_env["slack"]
    block = chat_block(chat_env, routes=["slack-bot", "slack-hook"])
    policy = Policy.model_validate({"mode": "approve", "chat": block})
    app = create_app(make_settings(public_url="https://backstop.example"), policy=policy)
    state = app.extensions["backstop"]
    _, decision = seed(state.store, "rollback-deny", status="running")
    state.engine.judged(decision, "judgment_inconclusive")
    chat = chatter(redis_client, {"chat": block})
    [wait] = chat_jobs(redis_client)
    assert chat.deliver(**wait.kwargs) == {"slack-bot": "sent", "slack-hook": "sent"}
    # A human denies it on the API, with a reason: chat hears of it, under the same id.
    answer = app.test_client().post(
        f"/api/v1/decisions/{decision.id}/deny",
        json={"reason": "the probe is flaky"},
        headers={"Authorization": f"Bearer {API_TOKEN}", "X-Backstop-Actor": "alice"},
    )
    assert answer.status_code == 200, answer.json
    assert answer.json["history"][-1] | {"at": None} == {
        "at": None,
        "outcome": "skipped",
        "reason": "denied",
        "by": "api:alice",  # an API caller's name, as the audit log has it
        "note": "the probe is flaky",
    }
    [denial] = [j for j in chat_jobs(redis_client) if j.kwargs["event"] == "denied"]
    assert denial.kwargs["rollback_id"] == wait.kwargs["rollback_id"]
    assert denial.kwargs["decision_id"] == decision.id
    assert chat.deliver(**denial.kwargs) == {"slack-bot": "sent", "slack-hook": "sent"}
    # The bot's one message went from the wait to the denial; the webhook posted both.
    [message] = [m for m in slack.messages if m.via == "api"]
    assert [v["blocks"][0]["text"]["text"] for v in message.versions] == [
        "Rollback of shop/checkout awaits approval"
    ]
    assert message.blocks[0]["text"]["text"] == "Rollback of shop/checkout denied"
    said = json.dumps(message.blocks)
    assert "api:alice denied rolling back revision 2" in said and "the probe is flaky" in said
    assert headers(slack) == [
        "Rollback of shop/checkout awaits approval",
        "Rollback of shop/checkout denied",
    ]
    # Told once: a duplicate job sends nothing more.
    assert chat.deliver(**denial.kwargs) == {"slack-bot": "sent", "slack-hook": "sent"}
    assert len(slack.messages) == 3


# -- R4: the platforms are down while a real rollback goes on ----------------------------------


def chat_jobs(redis_client) -> list[Job]:
    incidents = queues.queue(redis_client, queues.INCIDENTS)
    return [j for j in incidents.get_jobs() if j.func_name == "workers.jobs.chat"]


def test_platforms_down_never_delay_a_rollback_and_deliver_once_back(
    make_stack, redis_client, chat_env
):
    slack, teams = chat_env["slack"], chat_env["teams"]
    slack.down()
    teams.down()
    stack = make_stack({**FAST, "chat": chat_block(chat_env, routes=["slack-hook", "teams"])})
    workload = bad_release(stack)
    decision = stack.alert(workload)
    rollback = stack.roll_back(decision)
    assert rollback.status == "verified" and stack.revision("checkout") == "3"
    jobs = chat_jobs(redis_client)
    assert sorted(j.id for j in jobs) == sorted(
        f"chat-{rollback.id}-{e}_1" for e in ("started", "verified")
    )
    chat = chatter(
        redis_client, {**FAST, "chat": chat_block(chat_env, routes=["slack-hook", "teams"])}
    )
    started, verified = sorted(jobs, key=lambda j: j.id)  # chat-<id>-started_1, -verified_1
    # The start was overtaken by the outcome before it could be told: never sent late.
    assert chat.deliver(**started.kwargs) == {"slack-hook": "skipped", "teams": "skipped"}
    for _ in range(3):  # the job's retries while the platforms are down
        with pytest.raises(TransientError, match="unreachable"):
            chat.deliver(**verified.kwargs)
    pending = states(stack.store, rollback.id, "verified:1")
    assert pending == {"slack-hook": "pending", "teams": "pending"}
    assert slack.requests == [] and teams.requests == []
    slack.up()
    teams.up()
    for _ in range(2):  # the retry after recovery, and a duplicate on top
        for job in (started, verified):
            chat.deliver(**job.kwargs)
    assert states(stack.store, rollback.id, "verified:1") == {
        "slack-hook": "sent",
        "teams": "sent",
    }
    assert headers(slack) == ["Rolled back " + f"{stack.namespace}/checkout: verified"]
    assert len(teams.cards) == 1


# -- R2: a worker SIGKILLed right after the send ------------------------------------------------


def test_worker_killed_after_the_send_posts_once(redis_url, redis_client, chat_env, tmp_path):
    slack, teams = chat_env["slack"], chat_env["teams"]
    policy = {"mode": "enforce", "chat": chat_block(chat_env, routes=["teams", "slack-bot"])}
    config = tmp_path / "policy.yaml"
    config.write_text(json.dumps(policy))
    store = Store(redis_client, Policy.model_validate(policy))
    rollback, _ = seed(store)
    marker = tmp_path / "killed"
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": redis_url,
        "BACKSTOP_CONFIG": str(config),
        "BACKSTOP_PUBLIC_URL": "https://backstop.example",
        "BACKSTOP_TESTPOINT_KILL": "after_chat_send",
        "BACKSTOP_TESTPOINT_ONCE": str(marker),
        "TEST_SLACK_WEBHOOK": slack.webhook_url,
        "TEST_SLACK_TOKEN": slack.bot_token,
    }
    job_id = queues.enqueue_chat(redis_client, rollback_id=rollback.id, event="verified")
    log = tmp_path / "worker.log"
    worker = launch([sys.executable, "-m", "cli.main", "worker"], log, env=env)
    try:
        registry = ScheduledJobRegistry(queue=queues.queue(redis_client, queues.INCIDENTS))
        wait_for(
            lambda: marker.exists() and job_id in registry.get_job_ids(),
            timeout=30,
            message="the worker to die after the send and its job to be retried",
        )
        assert len(teams.cards) == 1
        # The retry's time has come (10 s on the real schedule).
        job = Job.fetch(job_id, connection=redis_client, serializer=JSONSerializer)
        registry.schedule(job, utcnow())
        wait_for(
            lambda: (
                states(store, rollback.id, "verified:1") == {"teams": "sent", "slack-bot": "sent"}
            ),
            timeout=30,
            message="the retried job to finish",
        )
    finally:
        terminate(worker)
    assert len(teams.cards) == 1  # not posted again: the mark said it may have been
    detail = store.chat.thread(rollback.id, "teams").events["verified:1"].detail
    assert "not posted again" in detail
    assert len([m for m in slack.messages if m.via == "api"]) == 1
