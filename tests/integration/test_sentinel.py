"""Backstop on Redis Sentinel: the receiver and RQ workers through a real Sentinel group,
and real failovers while webhooks keep arriving, counting what was lost.

Every webhook here is a kill-switch alert for a workload deployed minutes ago, with its own
fingerprint; with `min_firing: 1h` each becomes a deferred decision and a scheduled re-check
job (RQ), so each accepted webhook leaves an episode, a decision and a job to look for.
"""

import json
import os
import threading
import time
from dataclasses import dataclass, field

import pytest

from config.policy import Policy
from config.settings import Settings
from core import queues
from core.connection import connect
from core.replication import NotReplicated, replicated
from core.store import Store
from receiver.app import create_app
from receiver.payloads import alertmanager_events
from testbed.doubles.tls import make_certificates
from testbed.processes import run_burst_worker
from testbed.sentinel import SentinelGroup
from tests import samples
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, wait_for

HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
DEFERRING = Policy.model_validate({"defaults": {"min_firing": "1h"}})


@pytest.fixture
def sentinel_group(tmp_path):
    """A fresh master, replica and three sentinels, with passwords on both."""
    with SentinelGroup(tmp_path / "sentinel", password="master-pw", sentinel_password="s-pw") as g:
        yield g


def receiver(url: str, *, min_replicas: int = 0, policy: Policy = DEFERRING):
    """A receiver app on `url`, with a deployment of shop/checkout recorded."""
    settings = Settings(
        redis_url=url,
        webhook_token=WEBHOOK_TOKEN,
        api_token=API_TOKEN,
        redis_min_replicas=min_replicas,
    )
    client = create_app(settings, policy=policy).test_client()
    answer = client.post(
        "/webhooks/deployments", headers=HEADERS, json=samples.deployment_event(minutes_ago=5)
    )
    assert answer.status_code == 202
    return client


def alert(number: int) -> dict:
    """A kill-switch webhook of its own episode."""
    return samples.kill_switch(minutes_ago=0, fingerprint=f"{number:016x}")


def episode_ids(payload: dict) -> list[str]:
    """The episodes a webhook carries, as the receiver names them."""
    return [event.episode_id for event in alertmanager_events(json.dumps(payload).encode())]


def missing(group: SentinelGroup, payloads: list[dict]) -> list[str]:
    """The episodes of `payloads` whose episode, decision or re-check job the current
    master lacks."""
    master = group.server(group.master_port())
    store = Store(master, DEFERRING)
    scheduled = queues.queue(master, queues.DECISIONS)
    lost = []
    for payload in payloads:
        for episode in episode_ids(payload):
            decision = store.decisions.get(episode)
            job = scheduled.fetch_job(queues.recheck_job_id(episode))
            if store.episodes.episode(episode) is None or decision is None or job is None:
                lost.append(episode)
    return lost


@dataclass
class Sender:
    """Posts webhooks one after another as Alertmanager does: a 503 is retried (after a
    short pause) until it is accepted; anything else but 2xx and 503 is recorded."""

    client: object
    accepted: list[dict] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        number = 0
        try:
            while not self.stop.is_set():
                number += 1
                payload = alert(number)
                deadline = time.monotonic() + 90
                while True:
                    status = self.client.post(
                        "/webhooks/alertmanager", headers=HEADERS, json=payload
                    ).status_code
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                    if 200 <= status < 300:
                        self.accepted.append(payload)
                        break
                    if status != 503 or time.monotonic() > deadline:
                        raise AssertionError(f"webhook {number} answered {status}")
                    time.sleep(0.05)
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def __enter__(self) -> "Sender":
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=120)

    def wait_accepted(self, count: int) -> None:
        """Wait until `count` more webhooks were accepted."""
        target = len(self.accepted) + count
        wait_for(
            lambda: self.error or len(self.accepted) >= target, timeout=120, message="webhooks"
        )
        assert self.error is None, self.error


# -- working through Sentinel ----------------------------------------------------------------


def test_receiver_and_worker_run_through_sentinel(sentinel_group, tmp_path):
    policy = Policy.model_validate({"mode": "dry-run", "defaults": {"min_firing": "2s"}})
    client = receiver(sentinel_group.url(), min_replicas=1, policy=policy)
    answer = client.post("/webhooks/alertmanager", headers=HEADERS, json=alert(1))
    assert answer.status_code == 202
    [deferred] = answer.get_json()["decisions"]
    assert deferred["outcome"] == "deferred"
    # The replica holds it: min_replicas=1 waited for it.
    replica = sentinel_group.server(sentinel_group.replica_port())
    assert replica.exists(f"rq:job:{queues.recheck_job_id(deferred['id'])}")

    # A burst worker (with its scheduler) through the same Sentinel URL runs the re-check
    # when due, which enqueues and runs the dry-run rollback.
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("mode: dry-run\ndefaults:\n  min_firing: 2s\n")
    master = sentinel_group.server(sentinel_group.master_port())
    registry = queues.queue(master, queues.DECISIONS).scheduled_job_registry
    due = registry.get_scheduled_time(queues.recheck_job_id(deferred["id"]))
    time.sleep(max(0.0, due.timestamp() - time.time()) + 0.2)
    env = {**os.environ, "REDIS_URL": sentinel_group.url(), "BACKSTOP_CONFIG": str(policy_file)}
    run_burst_worker(env)
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    decision = wait_for(
        lambda: client.get(f"/api/v1/decisions/{deferred['id']}", headers=api).get_json(),
        timeout=10,
    )
    assert [step["outcome"] for step in decision["history"]] == ["deferred", "dry_run"]
    assert queues.queue(master, queues.ROLLBACKS).fetch_job(decision["job_id"]) is not None


def test_tls_to_master_replica_and_sentinels(tmp_path):
    certs = make_certificates(tmp_path)
    with SentinelGroup(tmp_path / "tls", password="master-pw", tls=certs) as group:
        client = receiver(group.url(), min_replicas=1)
        payload = alert(1)
        assert (
            client.post("/webhooks/alertmanager", headers=HEADERS, json=payload).status_code == 202
        )
        assert missing(group, [payload]) == []
        # Without the CA the sentinels cannot be trusted: no master, so 503, never a 500.
        untrusted = create_app(
            Settings(redis_url=group.url().split("?")[0], insecure=True), policy=DEFERRING
        ).test_client()
        answer = untrusted.post("/webhooks/alertmanager", headers=HEADERS, json=alert(2))
        assert answer.status_code == 503


def test_wrong_master_password_is_503_not_500(sentinel_group):
    url = sentinel_group.url().replace(":master-pw@", ":wrong@")
    client = create_app(Settings(redis_url=url, insecure=True), policy=DEFERRING).test_client()
    assert client.post("/webhooks/alertmanager", headers=HEADERS, json=alert(1)).status_code == 503


# -- what "replicated" confirms ---------------------------------------------------------------


def test_writes_are_confirmed_only_when_enough_replicas_hold_them(sentinel_group):
    client = connect(sentinel_group.url(), timeout=2.0)
    with replicated(client, replicas=1, timeout=1.0):
        client.set("backstop:test", "1")
    assert sentinel_group.server(sentinel_group.replica_port()).get("backstop:test") == b"1"
    with (
        pytest.raises(NotReplicated, match="1 of 2 replicas"),
        replicated(client, replicas=2, timeout=0.2),
    ):
        client.set("backstop:test", "2")


def test_writes_across_a_reconnection_are_not_confirmed(sentinel_group):
    # A command re-run after a connection error may have reached a newly promoted master,
    # while the writes before it stayed on the old one: WAIT cannot vouch for those.
    client = connect(sentinel_group.url(), timeout=2.0)
    master = sentinel_group.server(sentinel_group.master_port())
    with (
        pytest.raises(NotReplicated, match="re-established"),
        replicated(client, replicas=1, timeout=1.0),
    ):
        client.set("backstop:test", "1")
        master.client_kill_filter(_id=client.client_id())
        client.set("backstop:test", "2")  # reconnects first: the pool notices the closed socket
    assert master.get("backstop:test") == b"2"


# -- failovers while webhooks arrive ---------------------------------------------------------


def test_manual_failover_loses_nothing_with_min_replicas(sentinel_group):
    client = receiver(sentinel_group.url(), min_replicas=1)
    with Sender(client) as sender:
        sender.wait_accepted(10)
        old, new = sentinel_group.failover()
        sender.wait_accepted(10)  # accepted again, on the new master, with its new replica
    assert sender.error is None, sender.error
    print(f"accepted {len(sender.accepted)}, answers {sender.statuses}")
    assert set(sender.statuses) <= {202, 503}, sender.statuses
    assert sender.statuses.get(503, 0) > 0, "the failover was not felt at all"
    assert sentinel_group.master_port() == new != old
    assert missing(sentinel_group, sender.accepted) == []


def test_without_min_replicas_a_manual_failover_loses_accepted_webhooks(sentinel_group):
    # What BACKSTOP_REDIS_MIN_REPLICAS guards against. Sentinel promotes the replica first
    # and turns the old master into a replica only seconds later; meanwhile the receiver's
    # pooled connection still writes to the old master, and those writes are discarded.
    client = receiver(sentinel_group.url(), min_replicas=0)
    before = [alert(number) for number in range(1, 6)]
    for payload in before:
        assert (
            client.post("/webhooks/alertmanager", headers=HEADERS, json=payload).status_code == 202
        )
    old = sentinel_group.master_port()
    sentinel_group.sentinel(sentinel_group.sentinel_ports[0]).execute_command(
        "SENTINEL", "FAILOVER", "backstop"
    )
    new = sentinel_group.wait_promoted(old)
    during = [alert(number) for number in range(100, 105)]
    for payload in during:
        assert (
            client.post("/webhooks/alertmanager", headers=HEADERS, json=payload).status_code == 202
        )
    sentinel_group.wait_settled(new)
    assert missing(sentinel_group, before) == []
    assert len(missing(sentinel_group, during)) > 0


def test_master_killed_loses_nothing_with_min_replicas(sentinel_group):
    client = receiver(sentinel_group.url(), min_replicas=1)
    with Sender(client) as sender:
        sender.wait_accepted(10)
        old = sentinel_group.kill_master()
        new = sentinel_group.wait_promoted(old)
        # The new master has no replica until the old server is back (as its replica):
        # until then every webhook is 503 and retried.
        sentinel_group.restart_server(old)
        sentinel_group.wait_settled(new)
        sender.wait_accepted(10)
    assert sender.error is None, sender.error
    print(f"accepted {len(sender.accepted)}, answers {sender.statuses}")
    assert set(sender.statuses) <= {202, 503}, sender.statuses
    assert sender.statuses.get(503, 0) > 0
    assert missing(sentinel_group, sender.accepted) == []
