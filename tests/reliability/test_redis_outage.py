"""R1: Redis dies during a webhook storm. Webhooks answer 503 (never 500, never a dropped
connection); after Redis is back and every rejected delivery is retried as Alertmanager
retries it, nothing is lost and nothing is doubled.

The receiver runs under gunicorn against its own redis-server with append-only persistence
(LocalRedis), which the test stops and starts again on the same port and data directory:

- SIGTERM: Redis flushes the AOF on the way out; the default `appendfsync everysec` suffices.
- SIGKILL: Redis gets no chance to flush. It write()s the AOF before it answers a client, so
  what it acknowledged is in the kernel and survives the process; only `appendfsync always`
  also survives a machine crash (everysec may then lose the last second). The SIGKILL case
  runs with `always`, the setting production needs for that guarantee.
"""

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import requests

from cli.localredis import LocalRedis
from config.policy import load_policy
from core import queues
from core.models import Workload
from core.store import Store
from core.store.episodes import DECIDE_CLAIM
from testbed.servers import Gunicorn
from tests import samples
from tests.conftest import WEBHOOK_TOKEN, wait_for

pytestmark = pytest.mark.integration

HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
WORKLOADS = ("checkout", "cart", "search")
POLICY = "mode: enforce\ndefaults:\n  min_firing: 0s\n  cooldown: 0s\n"
WEBHOOKS, ALERTS_PER_WEBHOOK, FINGERPRINTS_PER_WORKLOAD = 360, 10, 40
CLIENTS = 8
DOWNTIME = 1.5  # seconds Redis stays down while the storm goes on
PACE = 0.05  # seconds between one client's deliveries: the storm outlasts the outage


@dataclass
class Delivery:
    """One webhook and every answer it got (an HTTP status, or the transport error's name)."""

    body: dict
    answers: list = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # monotonic time of each answer

    @property
    def accepted(self) -> bool:
        return bool(self.answers) and isinstance(self.answers[-1], int) and self.answers[-1] < 300

    def fingerprints(self) -> list[str]:
        return [alert["fingerprint"] for alert in self.body["alerts"]]


class OwnRedis:
    """A redis-server only this test uses, so it may be killed; persistence as in production."""

    def __init__(self, directory: Path, fsync: str):
        self.directory, self.fsync = directory, fsync
        self.server = LocalRedis(directory, persist=True)

    def start(self) -> "OwnRedis":
        self.server = LocalRedis(self.directory, port=self.server.port, persist=True).start()
        with redis.Redis.from_url(self.server.url) as client:
            client.config_set("appendfsync", self.fsync)
        return self

    def crash(self, signum: int) -> None:
        """Stop the server with `signum` and wait until it is gone."""
        process = self.server.process
        os.kill(process.pid, signum)
        process.wait(20)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()


def storm(seed: int) -> list[Delivery]:
    """Webhooks with heavy repetition: 9 alerts each from 40 per workload, half of them
    kill switches, all started after the workloads' deployments."""
    rng = random.Random(seed)
    started = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    pool = [
        samples.am_alert(
            name=f"Alert{i % 4}",
            starts_at=started,
            fingerprint=f"{workload}-{i:03d}",
            deployment=workload,
            **({"backstop_rollback": "true"} if i % 2 == 0 else {}),
        )
        for workload in WORKLOADS
        for i in range(FINGERPRINTS_PER_WORKLOAD)
    ]
    return [
        Delivery(
            samples.alertmanager(
                *rng.sample(pool, ALERTS_PER_WEBHOOK - 1),
                # ...and one alert this webhook alone carries: lost unless it is retried.
                samples.am_alert(
                    name="Once",
                    starts_at=started,
                    fingerprint=f"once-{index:04d}",
                    deployment=WORKLOADS[index % len(WORKLOADS)],
                ),
            )
        )
        for index in range(WEBHOOKS)
    ]


def post(session: requests.Session, url: str, delivery: Delivery) -> None:
    """Deliver once, recording the status or the transport error."""
    try:
        answer = session.post(
            f"{url}/webhooks/alertmanager",
            data=json.dumps(delivery.body),
            headers=HEADERS,
            timeout=30,
        )
        delivery.answers.append(answer.status_code)
    except requests.RequestException as exc:
        delivery.answers.append(type(exc).__name__)
    delivery.times.append(time.monotonic())


def send_storm(url: str, deliveries: list[Delivery], outage) -> None:
    """CLIENTS threads deliver everything once; `outage` runs alongside, mid-storm."""
    pending = iter(deliveries)
    lock = threading.Lock()

    def client(_):
        with requests.Session() as session:
            while True:
                with lock:
                    delivery = next(pending, None)
                if delivery is None:
                    return
                post(session, url, delivery)
                time.sleep(PACE)  # a storm, not a flood: it goes on through the outage

    with ThreadPoolExecutor(CLIENTS + 1) as pool:
        killer = pool.submit(outage)
        list(pool.map(client, range(CLIENTS)))
        killer.result()


def retry_rejected(url: str, deliveries: list[Delivery], *, timeout: float = 60) -> None:
    """Alertmanager retries 5xx and transport errors with backoff until it gets a 2xx."""
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        for delivery in deliveries:
            delay = 0.1
            while not delivery.accepted:
                assert time.monotonic() < deadline, f"still rejected: {delivery.answers}"
                time.sleep(delay)
                post(session, url, delivery)
                delay = min(delay * 2, 2.0)


def deploy(url: str) -> None:
    """CI/CD reports revision 3 of each workload, rolled out ten minutes ago."""
    for name in WORKLOADS:
        answer = requests.post(
            f"{url}/webhooks/deployments",
            json=samples.deployment_event(minutes_ago=10, name=name),
            headers=HEADERS,
            timeout=10,
        )
        assert answer.status_code == 202, answer.text


@pytest.mark.parametrize(
    ("signum", "fsync"),
    [(signal.SIGTERM, "everysec"), (signal.SIGKILL, "always")],
    ids=["sigterm-everysec", "sigkill-always"],
)
def test_redis_outage_mid_storm_loses_nothing_and_doubles_nothing(
    tmp_path, receiver_env, signum, fsync
):
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    own = OwnRedis(tmp_path / "redis", fsync).start()
    deliveries = storm(seed=signum)
    restarted_at = []

    def outage() -> None:
        wait_for(
            lambda: sum(bool(d.answers) for d in deliveries) >= WEBHOOKS // 4,
            message="a quarter of the storm delivered",
        )
        own.crash(signum)
        time.sleep(DOWNTIME)
        own.start()  # same port, same data directory: it reloads the AOF
        restarted_at.append(time.monotonic())

    env = {**receiver_env, "REDIS_URL": own.url, "BACKSTOP_CONFIG": str(policy_file)}
    try:
        with Gunicorn(
            "receiver.app:create_app()", env, workers=3, log=tmp_path / "gunicorn.log"
        ) as web:
            deploy(web.url)
            send_storm(web.url, deliveries, outage)
            answers = Counter(a for d in deliveries for a in d.answers)
            # Redis down: 503, so Alertmanager retries; never a 500, never a dropped connection.
            assert set(answers) <= {202, 503}, answers
            assert answers[503] > 0 and answers[202] > 0, answers
            # The storm went on through the outage and after it.
            assert any(d.answers[0] == 202 and d.times[0] > restarted_at[0] for d in deliveries)
            retry_rejected(web.url, deliveries)
            count_episodes(own.url, load_policy(policy_file), deliveries)
            # Alertmanager's next flush (group_interval later) repeats every firing alert; an
            # episode accepted just before Redis died but not yet decided is decided then.
            time.sleep(max(0.0, restarted_at[0] + DECIDE_CLAIM / 1000 + 0.5 - time.monotonic()))
            repeats = [Delivery(d.body) for d in deliveries]
            send_storm(web.url, repeats, lambda: None)
            assert Counter(a for d in repeats for a in d.answers) == {202: WEBHOOKS}
        count_decisions(own.url, load_policy(policy_file))
    finally:
        own.stop()


def episodes_by_fingerprint(store: Store) -> dict:
    return {e.event["fingerprint"]: e for e in store.episodes.recent_episodes(limit=10_000)}


def count_episodes(url: str, policy, deliveries: list[Delivery]) -> None:
    """After the retries: every alert sent is one episode, each notification counted once
    (repeats of settled episodes are counted within a second: written behind)."""
    sent = Counter(f for d in deliveries for f in d.fingerprints() for _ in d.answers)
    delivered = Counter(f for d in deliveries for f in d.fingerprints())
    with redis.Redis.from_url(url) as client:

        def all_counted():
            found = episodes_by_fingerprint(Store(client, policy))
            complete = all(delivered[f] <= e.notifications for f, e in found.items())
            return found if complete and set(found) == set(sent) else None

        episodes = wait_for(all_counted, timeout=15, message="the held repeats to be counted")
        # 0 lost, 0 invented: one episode per alert sent.
        assert set(episodes) == set(sent)
        for fingerprint, episode in episodes.items():
            # Counted at least once per delivery, at most once per attempt (a 503 may come
            # after the batch was recorded: its retry is then a repeat).
            assert delivered[fingerprint] <= episode.notifications <= sent[fingerprint]


def count_decisions(url: str, policy) -> None:
    """Every episode decided once; exactly one rollback job per workload, no job twice."""
    with redis.Redis.from_url(url) as client:
        store = Store(client, policy)
        episodes = episodes_by_fingerprint(store)
        assert len(episodes) == len(WORKLOADS) * FINGERPRINTS_PER_WORKLOAD + WEBHOOKS
        decisions = {f: store.decisions.get(e.id) for f, e in episodes.items()}
        assert all(decisions.values()), [f for f, d in decisions.items() if d is None]
        outcomes = Counter(
            (f.split("-")[0], d.outcome, d.reason) for f, d in decisions.items() if d
        )
        expected_jobs = set()
        for name in WORKLOADS:
            workload = Workload("default", "shop", "Deployment", name)
            expected_jobs.add(queues.rollback_job_id(workload, "3"))
            kill_switches = FINGERPRINTS_PER_WORKLOAD // 2
            assert outcomes[(name, "rollback", "enqueued")] == 1, outcomes
            assert outcomes[(name, "skipped", "already_rolled_back")] == kill_switches - 1, outcomes
            assert outcomes[(name, "skipped", "not_kill_switch")] == kill_switches
        assert outcomes[("once", "skipped", "not_kill_switch")] == WEBHOOKS
        rollback_jobs = queues.queue(client, queues.ROLLBACKS).job_ids
        assert sorted(rollback_jobs) == sorted(expected_jobs)
        assert {d.job_id for d in decisions.values() if d.outcome == "rollback"} == expected_jobs
        for name in (queues.DECISIONS, queues.INCIDENTS):
            ids = queues.queue(client, name).job_ids
            assert len(ids) == len(set(ids)), f"a job enqueued twice on {name}"


def test_a_receiver_dying_between_claim_and_enqueue_still_rolls_back_once(
    tmp_path, receiver_env, redis_url
):
    """The state Redis dying mid-decision leaves, made exact: the rollback is claimed but
    its job never enqueued. The delivery fails, Alertmanager retries it (a repeat within the
    decide claim: nothing to do), and its next flush must finish the rollback, once."""
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    marker = tmp_path / "killed"
    env = {
        **receiver_env,
        "REDIS_URL": redis_url,
        "BACKSTOP_CONFIG": str(policy_file),
        "BACKSTOP_TESTPOINT_KILL": "after_claim",
        "BACKSTOP_TESTPOINT_ONCE": str(marker),
    }
    delivery = Delivery(samples.kill_switch(minutes_ago=5))
    with Gunicorn(
        "receiver.app:create_app()", env, workers=2, log=tmp_path / "gunicorn.log"
    ) as web:
        deploy(web.url)
        with requests.Session() as session:
            post(session, web.url, delivery)
        assert marker.exists() and delivery.answers == ["ConnectionError"]
        retry_rejected(web.url, [delivery])
        time.sleep(DECIDE_CLAIM / 1000 + 0.5)
        repeat = Delivery(delivery.body)
        retry_rejected(web.url, [repeat])
    with redis.Redis.from_url(redis_url) as client:
        store = Store(client, load_policy(policy_file))
        [episode] = store.episodes.recent_episodes()
        decision = store.decisions.get(episode.id)
        job = queues.rollback_job_id(Workload("default", "shop", "Deployment", "checkout"), "3")
        assert (decision.outcome, decision.reason, decision.job_id) == ("rollback", "enqueued", job)
        assert queues.queue(client, queues.ROLLBACKS).job_ids == [job]
