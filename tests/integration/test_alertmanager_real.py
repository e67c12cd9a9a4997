"""Real Alertmanager → real receiver: we parse what Alertmanager really sends."""

from datetime import UTC, datetime, timedelta

import pytest
import requests

from testbed.alertmanager import Alertmanager
from tests.conftest import API_TOKEN, WEBHOOK_TOKEN, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def alertmanager(receiver_server, tmp_path):
    manager = Alertmanager(
        tmp_path / "am", f"{receiver_server.url}/webhooks/alertmanager", WEBHOOK_TOKEN
    ).start()
    yield manager
    manager.stop()


def episodes(receiver_server, status=None) -> list[dict]:
    params = {"status": status} if status else {}
    answer = requests.get(
        f"{receiver_server.url}/api/v1/alerts",
        params=params,
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=5,
    )
    return answer.json()["alerts"]


def test_alertmanager_delivers_firing_then_resolved(alertmanager, receiver_server):
    started = datetime.now(UTC) - timedelta(minutes=3)
    alert = {
        "labels": {
            "alertname": "CheckoutHigh5xx",
            "namespace": "shop",
            "deployment": "checkout",
            "backstop_rollback": "true",
            "region": "eu-ouest-é-東京",
        },
        "annotations": {"summary": "5xx ratio above 1%"},
        "startsAt": started.isoformat(),
        "generatorURL": "http://prometheus.local/graph?g0.expr=up",
    }
    alertmanager.post_alerts([alert])
    [firing] = wait_for(lambda: episodes(receiver_server, "firing"), message="firing episode")
    assert firing["labels"]["region"] == "eu-ouest-é-東京"
    assert firing["source"] == "alertmanager"
    assert firing["generator_url"] == alert["generatorURL"]
    [held] = alertmanager.alerts()
    assert firing["starts_at"].startswith(started.strftime("%Y-%m-%dT%H:%M:%S"))

    alertmanager.post_alerts([{**alert, "endsAt": datetime.now(UTC).isoformat()}])
    [resolved] = wait_for(lambda: episodes(receiver_server, "resolved"), message="resolution")
    assert resolved["id"] == firing["id"]  # same fingerprint + startsAt: the same episode
    assert resolved["ends_at"] is not None
    # The fingerprint Alertmanager computed is the one our episode key is built from.
    assert firing["fingerprint"] == held["fingerprint"] != ""
