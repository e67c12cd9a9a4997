"""A receiver worker's warm-up before its first request (receiver.app.warm_up)."""

import logging
from types import SimpleNamespace

import fakeredis

from config.policy import Policy
from core.store import Store
from receiver.app import warm_up


def test_warm_loads_every_script_of_the_store():
    client = fakeredis.FakeRedis()
    store = Store(client, Policy())
    shas = [script.sha for script in store.scripts()]
    assert len(shas) >= 6  # ingest, repeats, claim, lock, release, extend
    assert not any(client.script_exists(*shas))
    store.warm()
    assert all(client.script_exists(*shas))


def test_a_worker_starts_when_redis_is_down(caplog):
    server = fakeredis.FakeServer()
    server.connected = False
    store = Store(fakeredis.FakeRedis(server=server), Policy())
    app = SimpleNamespace(extensions={"backstop": SimpleNamespace(store=store)})
    with caplog.at_level(logging.WARNING, logger="backstop.receiver"):
        warm_up(app)  # no exception: requests will answer 503 until it is up
    assert "Redis not warmed up at start: ConnectionError" in caplog.text


def test_another_app_is_left_alone():
    warm_up(object())
