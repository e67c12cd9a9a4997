"""Pytest fixtures: an exporter the test sets gauges on, and a real Prometheus scraping it."""

import pytest

from testbed.prometheus import Exporter, PrometheusServer


@pytest.fixture
def exporter():
    """A started /metrics exporter on loopback, stopped after the test."""
    with Exporter() as started:
        yield started


@pytest.fixture
def prometheus(exporter, tmp_path):
    """A real Prometheus scraping `exporter` every second, stopped by pid after the test."""
    with PrometheusServer(tmp_path / "prometheus", [exporter.address]) as server:
        yield server
