"""Backstop's Prometheus client against a real Prometheus (Debian's) scraping a test exporter."""

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from cli.localredis import free_port
from core.errors import PermanentError, TransientError
from core.integrations.prometheus import expr_from_generator_url
from testbed.alertmanager import Alertmanager
from testbed.prometheus import PrometheusServer
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

GAUGE = "backstop_test_gauge"


def test_query_returns_the_gauge_the_exporter_serves(exporter, prometheus):
    exporter.set(GAUGE, 3.5, service="checkout")
    prometheus.wait_for_value(f'{GAUGE}{{service="checkout"}}', lambda value: value == 3.5)
    [sample] = prometheus.client.query(expr=GAUGE)
    assert sample.value == 3.5
    assert sample.labels == {
        "__name__": GAUGE,
        "service": "checkout",
        "job": "test",
        "instance": exporter.address,
    }
    [scalar] = prometheus.client.query(expr=f"scalar({GAUGE}) * 2")
    assert scalar.labels == {}
    assert scalar.value == 7.0


def test_nan_travels_from_exporter_to_client(exporter, prometheus):
    exporter.set(GAUGE, math.nan)
    assert math.isnan(prometheus.wait_for_value(GAUGE, math.isnan))


def test_query_range_shows_the_value_before_and_after_a_change(exporter, prometheus):
    start = datetime.now(UTC)
    exporter.set(GAUGE, 1.0)
    prometheus.wait_for_value(GAUGE, lambda value: value == 1.0)
    exporter.set(GAUGE, 2.0)
    prometheus.wait_for_value(GAUGE, lambda value: value == 2.0)
    # The last point falls up to one step before `end`: leave room after the second sample.
    end = datetime.now(UTC) + timedelta(seconds=1)

    # A step shorter than the scrape interval cannot miss the first value.
    [series] = prometheus.client.query_range(expr=GAUGE, start=start, end=end, step=0.25)
    times = [moment for moment, _ in series.points]
    values = [value for _, value in series.points]
    assert values[0] == 1.0
    assert values[-1] == 2.0
    assert values == sorted(values)
    assert times == sorted(times)
    assert start <= times[0] <= times[-1] <= end

    # Four hours back: the chosen step (2s) is one Prometheus accepts.
    [wide] = prometheus.client.query_range(expr=GAUGE, start=end - timedelta(hours=4), end=end)
    assert wide.points[-1][1] in (1.0, 2.0)
    assert len(wide.points) <= 11_000


def test_bad_promql_is_permanent(prometheus):
    with pytest.raises(PermanentError, match=r"Prometheus 400: bad_data: .*parse error"):
        prometheus.client.query(expr="rate(")
    now = datetime.now(UTC)
    with pytest.raises(PermanentError, match="bad_data"):
        prometheus.client.query_range(expr="sum by (", start=now - timedelta(minutes=1), end=now)


def test_a_stopped_prometheus_is_transient(prometheus):
    client = prometheus.client
    assert client.ready()
    prometheus.stop()
    assert not client.ready()
    with pytest.raises(TransientError, match="ConnectionError"):
        client.query(expr="up")


@pytest.fixture
def alertmanager(tmp_path):
    # Nothing listens on the webhook: the test reads the alerts Alertmanager holds instead.
    manager = Alertmanager(tmp_path / "am", f"http://127.0.0.1:{free_port()}/", "unused").start()
    yield manager
    manager.stop()


def test_an_alerts_generator_url_gives_back_its_rule_expression(exporter, alertmanager, tmp_path):
    expr = f'{GAUGE}{{service="checkout"}} > 1'
    rules = tmp_path / "rules.yml"
    rules.write_text(
        json.dumps({"groups": [{"name": "backstop", "rules": [{"alert": "High", "expr": expr}]}]})
    )
    with PrometheusServer(
        tmp_path / "prometheus",
        [exporter.address],
        rule_files=[rules],
        alertmanagers=[f"127.0.0.1:{alertmanager.port}"],
    ) as prometheus:
        exporter.set(GAUGE, 5.0, service="checkout")
        [alert] = wait_for(alertmanager.alerts, timeout=20, message="the alert in Alertmanager")
    assert alert["labels"]["alertname"] == "High"
    assert alert["generatorURL"].startswith(prometheus.url + "/graph?")
    assert expr_from_generator_url(alert["generatorURL"]) == expr
