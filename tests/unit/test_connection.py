"""REDIS_URL forms: parsing, the client each form builds, and errors that never leak a
password. No network: building a client opens no connection."""

import pytest
from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from config.settings import Settings
from core.connection import RedisUrlError, connect, parse_sentinel_url, redacted
from receiver.app import StartupError, create_app

SECRET = "s3cr%40t"  # percent-encoded "s3cr@t"


def test_sentinel_url_with_every_part():
    target = parse_sentinel_url(
        f"redis+sentinel://app:{SECRET}@s1:26380,s2,[::1]:26381/backstop-main/3"
        "?sentinel_password=sp&sentinel_username=watch&health_check_interval=5"
    )
    assert target.sentinels == [("s1", 26380), ("s2", 26379), ("::1", 26381)]
    assert target.service == "backstop-main"
    assert target.master["db"] == 3
    assert (target.master["username"], target.master["password"]) == ("app", "s3cr@t")
    assert target.master["health_check_interval"] == 5
    assert "ssl" not in target.master
    assert target.sentinel == {"username": "watch", "password": "sp"}


def test_sentinel_url_defaults_to_db_0_and_no_credentials():
    target = parse_sentinel_url("redis+sentinel://127.0.0.1:26379/mymaster")
    assert target.master == {"db": 0}
    assert target.sentinel == {}


def test_tls_sentinel_url_uses_tls_for_master_and_sentinels():
    url = "rediss+sentinel://:pw@h1/m?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem"
    target = parse_sentinel_url(url)
    assert target.master["ssl"] is True
    assert target.master["ssl_ca_certs"] == "/etc/ca.pem"
    assert target.sentinel == {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": "/etc/ca.pem",
    }
    plain_sentinels = parse_sentinel_url(url + "&sentinel_ssl=false")
    assert plain_sentinels.master["ssl"] is True
    assert plain_sentinels.sentinel == {}


def test_a_sentinel_client_keeps_backstops_timeouts_and_retry():
    client = connect(f"rediss+sentinel://:{SECRET}@h1,h2/m/2?ssl_ca_certs=/ca.pem", timeout=1.5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.connection_class is SentinelManagedSSLConnection
    kwargs = pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (1.5, 2.0)
    assert (kwargs["db"], kwargs["password"]) == (2, "s3cr@t")
    assert kwargs["retry"].get_retries() == 1
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26379]
    # The sentinel connections are short-timed even for a worker (timeout=None).
    worker = connect("redis+sentinel://h1/m", timeout=None).connection_pool
    sentinel_kwargs = worker.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert worker.connection_kwargs["socket_timeout"] is None
    assert sentinel_kwargs["socket_timeout"] == 2.0


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:pw@127.0.0.1:6379/5",
        "rediss://127.0.0.1:6380/0?ssl_cert_reqs=none",
        "rediss://127.0.0.1/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ssl/ca.pem",
        "unix:///run/redis/redis.sock?db=2",
        "REDIS+SENTINEL://h1/m",
    ],
)
def test_standalone_and_sentinel_forms_are_accepted(url):
    client = connect(url, timeout=2.0)
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 2.0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:6379/0", "must start with one of"),
        ("127.0.0.1:6379", "must start with one of"),
        ("redis+sentinel:///m", "at least one sentinel"),
        ("redis+sentinel://h1,,h2/m", "at least one sentinel"),
        ("redis+sentinel://h1", "/<master-name>"),
        ("redis+sentinel://h1/", "/<master-name>"),
        ("redis+sentinel://h1/m/0/x", "/<master-name>"),
        ("redis+sentinel://h1/m/zero", "must be a number"),
        ("redis+sentinel://h1:port/m", "port must be a number"),
        ("redis+sentinel://h1:70000/m", "port must be a number"),
        ("redis+sentinel://h1/m?db=1&db=2", "more than once"),
        ("redis+sentinel://h1/m?sentinel_ssl=maybe", "sentinel_ssl"),
        ("redis+sentinel://h1/m?colour=blue", "unknown option 'colour'"),
        ("redis+sentinel://h1/m#frag", "fragment"),
        ("redis://127.0.0.1/O", "database number"),
        ("redis://127.0.0.1/0?colour=blue", "unknown option 'colour'"),
        ("redis://127.0.0.1/0?socket_timeout=soon", "socket_timeout"),
        ("rediss://127.0.0.1/0?ssl_cert_reqs=sometimes", "sometimes"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(url, message):
    with_password = url.replace("://", f"://:{SECRET}@", 1) if "://" in url else url
    with pytest.raises(RedisUrlError, match=message) as error:
        connect(with_password, timeout=2.0)
    assert "s3cr" not in str(error.value)


def test_a_bad_url_stops_the_receiver_at_start():
    settings = Settings(redis_url=f"redis+sentinel://:{SECRET}@h1/", insecure=True)
    with pytest.raises(StartupError, match=r"REDIS_URL: .*master-name") as error:
        create_app(settings)
    assert "s3cr" not in str(error.value)


def test_redacted_hides_every_password():
    url = f"redis+sentinel://app:{SECRET}@h1,h2/m/0?sentinel_password=sp&db=0"
    shown = redacted(url)
    assert "s3cr" not in shown and "sp&" not in shown
    assert shown == "redis+sentinel://app:***@h1,h2/m/0?sentinel_password=***&db=0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
