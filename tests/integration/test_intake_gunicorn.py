"""Intake under gunicorn on a real Redis: atomic dedup across workers, outages, recovery."""

import json
from concurrent.futures import ThreadPoolExecutor

import requests

from cli.localredis import LocalRedis
from testbed.servers import Gunicorn
from tests import samples
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, wait_for

HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}


def deliver(base_url: str, body: dict) -> requests.Response:
    return requests.post(
        f"{base_url}/webhooks/alertmanager", data=json.dumps(body), headers=HEADERS, timeout=10
    )


def test_concurrent_duplicate_deliveries_process_one_episode(receiver_server):
    body = samples.alertmanager(samples.am_alert(), samples.am_alert(fingerprint="second"))
    threads, rounds = 24, 10

    def hammer(_):
        with requests.Session() as session:
            return [
                session.post(
                    f"{receiver_server.url}/webhooks/alertmanager",
                    data=json.dumps(body),
                    headers=HEADERS,
                    timeout=10,
                ).json()
                for _ in range(rounds)
            ]

    with ThreadPoolExecutor(threads) as pool:
        answers = [a for batch in pool.map(hammer, range(threads)) for a in batch]
    assert sum(a["accepted"] for a in answers) == 2
    assert sum(a["duplicates"] for a in answers) == 2 * threads * rounds - 2

    def counts():
        episodes = requests.get(
            f"{receiver_server.url}/api/v1/alerts",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=5,
        ).json()
        return sorted(e["notifications"] for e in episodes["alerts"])

    # Repeats of a decided episode are written behind: every one is counted within
    # FLUSH_INTERVAL (core/intake.py), none twice.
    wait_for(lambda: counts() == [threads * rounds] * 2, timeout=10, message="every repeat")


def test_metrics_aggregate_every_gunicorn_worker(receiver_server):
    for i in range(30):
        deliver(receiver_server.url, samples.alertmanager(samples.am_alert(fingerprint=str(i))))
    text = requests.get(f"{receiver_server.url}/metrics", timeout=5).text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('backstop_webhook_requests_total{code="202",source="alertmanager"}')
    )
    assert float(line.split()[-1]) == 30


def test_redis_outage_answers_503_and_loses_nothing(tmp_path, receiver_env):
    """Stop Redis mid-run: 503 (so Alertmanager retries), then recovery with no loss."""
    redis_dir = tmp_path / "redis"
    server = LocalRedis(redis_dir).start()
    env = {**receiver_env, "REDIS_URL": server.url}
    before = samples.alertmanager(samples.am_alert(fingerprint="before"))
    during = samples.alertmanager(samples.am_alert(fingerprint="during"))
    try:
        with Gunicorn("receiver.app:create_app()", env, workers=2) as web:
            assert deliver(web.url, before).json()["accepted"] == 1
            server.stop()
            for _ in range(5):  # every worker, every pooled connection: 503, never 500
                answer = deliver(web.url, during)
                assert answer.status_code == 503
                assert answer.json()["error"]["code"] == "unavailable"
            assert requests.get(f"{web.url}/readyz", timeout=5).status_code == 503
            server = LocalRedis(redis_dir, port=server.port).start()  # same port, same AOF
            wait_for(lambda: requests.get(f"{web.url}/readyz", timeout=5).status_code == 200)
            # Alertmanager's retry of the rejected notification is accepted...
            assert deliver(web.url, during).json()["accepted"] == 1
            # ...and what was accepted before the outage survived it, still deduplicated.
            again = deliver(web.url, before).json()
            assert (again["accepted"], again["duplicates"], again["decisions"]) == (0, 1, [])
    finally:
        server.stop()
