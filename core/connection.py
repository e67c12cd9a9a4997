"""Redis connections: the REDIS_URL forms Backstop accepts, with the timeouts and retry
policy every Backstop process uses.

Standalone servers use redis-py's own URL forms: `redis://`, `rediss://` (TLS; options such
as `?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.pem`) and `unix://`. Redis Sentinel, for
which redis-py has no URL form, is written

    redis+sentinel://[[user]:password@]host1[:26379][,host2[:26379]...]/<master-name>[/<db>]
    rediss+sentinel://...   (TLS to the master and replicas, and by default to the sentinels)

The user and password in front of the hosts are the master's (Redis `requirepass` or an ACL
user); the sentinels' own credentials, if they have any, are the query options
`sentinel_username` and `sentinel_password`, and `sentinel_ssl=false` talks plain TCP to
the sentinels while the data connections use TLS. Every other query option is a redis-py URL
option applied to the master connection (for a TLS scheme also to the sentinels).

A failover surfaces as `redis.exceptions.ConnectionError` (no master known yet, the master
unreachable, or the old master now read-only): the receiver answers 503 and jobs retry, as
for any Redis outage. Errors about the URL itself are `RedisUrlError` and never quote it,
since it may carry passwords.
"""

import logging
import shutil
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

CONNECT_TIMEOUT = 2.0
SENTINEL_PORT = 26379
STANDALONE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
# Options of the sentinel connections; every other query option is the master's.
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password", "sentinel_ssl")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
log = logging.getLogger("backstop.redis")
_local = threading.local()
_connected: "weakref.WeakSet[redis.connection.AbstractConnection]" = weakref.WeakSet()


# The oldest Redis Backstop runs on: login throttling sets its window with EXPIRE ... NX
# (core/store/sessions.py), new in Redis 7.0; the ingest script trims the event stream
# with XTRIM MINID (6.2); RQ 3 needs 5.0 (it uses LMOVE, 6.2, where there is one).
MINIMUM_REDIS_VERSION = (7, 0, 0)
# While Redis is down, how often the receiver tries again to learn its version.
VERSION_RETRY_SECONDS = 1.0


class RedisUrlError(ValueError):
    """REDIS_URL cannot be used as written (the message never contains the URL)."""


class RedisVersionError(redis.exceptions.RedisError):
    """Redis answers, but is older than Backstop needs (a RedisError: requests answer 503,
    and a process that learns it at start refuses to start)."""


def parse_redis_version(text: str) -> tuple[int, int, int]:
    """`7.0.15` -> (7, 0, 15): INFO's redis_version (a suffix after the numbers is ignored,
    missing parts are 0); ValueError when it does not start with a number."""
    numbers = []
    for part in text.strip().split(".")[:3]:
        digits = part[: len(part) - len(part.lstrip("0123456789"))]
        if not digits:
            break
        numbers.append(int(digits))
        if digits != part:
            break
    if not numbers:
        raise ValueError(f"not a Redis version: {text[:40]!r}")
    major, minor, patch = numbers + [0] * (3 - len(numbers))
    return major, minor, patch


def check_redis_version(
    client: redis.Redis, minimum: tuple[int, ...] | None = None
) -> tuple[int, int, int]:
    """The server's version; RedisVersionError naming it and the minimum when it is older
    than `minimum` (default MINIMUM_REDIS_VERSION). Other RedisErrors (Redis down) pass."""
    minimum = tuple(minimum or MINIMUM_REDIS_VERSION)
    text = str(client.info("server").get("redis_version", ""))
    try:
        found = parse_redis_version(text)
    except ValueError:
        raise RedisVersionError(
            f"Redis reports no version Backstop can read: {text[:40]!r}"
        ) from None
    if found < minimum:
        raise RedisVersionError(
            f"Redis {text} is too old: Backstop needs Redis {_dotted(minimum)} or newer "
            "(Debian bookworm's redis-server is 7.0)"
        )
    return found


class VersionCheck:
    """Checks the server's version once Redis is reachable: `check()` at start raises
    RedisVersionError for an old Redis; while Redis is down it returns (at most once per
    VERSION_RETRY_SECONDS it asks again), so a receiver started before Redis serves 503s as
    it would anyway, and refuses every request once it finds Redis too old."""

    def __init__(self, client: redis.Redis, minimum: tuple[int, ...] | None = None):
        self.client = client
        self.minimum = minimum
        self.found: tuple[int, int, int] | None = None
        self.refused: RedisVersionError | None = None
        self._next = 0.0

    def check(self) -> None:
        if self.found is not None:
            return
        if self.refused is not None:
            raise self.refused
        if time.monotonic() < self._next:
            return
        try:
            self.found = check_redis_version(self.client, self.minimum)
        except RedisVersionError as exc:
            log.error("%s", exc)
            self.refused = exc
            raise
        except redis.exceptions.RedisError:
            self._next = time.monotonic() + VERSION_RETRY_SECONDS


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


@dataclass(frozen=True)
class SentinelTarget:
    """Where a Sentinel URL points: the sentinels, the master's name, connection options."""

    sentinels: list[tuple[str, int]]
    service: str
    master: dict = field(repr=False)  # db, credentials and ssl options of the master
    sentinel: dict = field(repr=False)  # credentials and ssl options of the sentinels


def connect(url: str, *, timeout: float | None = 2.0) -> redis.Redis:
    """A Redis client that fails fast: no network call here, short socket timeouts.

    One immediate retry on a connection error covers a pooled connection that went stale
    (Redis restarted, or Sentinel moved the master: the retry asks the sentinels again);
    timeouts are not retried, so a hung Redis costs at most `timeout` before the receiver
    answers 503 and Alertmanager retries. RQ workers pass `timeout=None`: their blocking
    dequeue waits far longer than any socket timeout. Raises RedisUrlError for a URL that
    cannot work, so a process refuses to start rather than fail on its first request.
    """
    scheme = _scheme(url)
    if scheme in SENTINEL_SCHEMES:
        client = _sentinel_client(parse_sentinel_url(url), timeout)
    else:
        _check_database(scheme, urlsplit(url).path)
        try:
            client = redis.Redis.from_url(url, **_policy(timeout))
        except ValueError as exc:  # redis-py's messages name the option, not the URL
            raise RedisUrlError(str(exc)) from None
    _check_options(client)
    return client


def redacted(url: str) -> str:
    """The URL with any password replaced by `***`, for messages and logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hosts}" if ":" in userinfo else f"{user}@{hosts}"
    query = parse_qs(parts.query, keep_blank_values=True)
    for name in query:
        if "password" in name:
            query[name] = ["***"]
    rest = f"?{urlencode(query, doseq=True, safe='*/')}" if query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{rest}"


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Split a `redis+sentinel://` or `rediss+sentinel://` URL into a SentinelTarget."""
    scheme = _scheme(url)
    if scheme not in SENTINEL_SCHEMES:
        raise RedisUrlError(f"not a Sentinel URL (scheme {scheme}://)")
    tls = scheme == "rediss+sentinel"
    parts = urlsplit(url)
    if parts.fragment:
        raise RedisUrlError("a Redis URL has no #fragment")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    service, db = _service_and_db(parts.path)
    query = _query(parts.query)
    sentinel_tls = _flag(query.pop("sentinel_ssl", None), default=tls)
    sentinel_creds = {
        name.removeprefix("sentinel_"): query.pop(name)
        for name in ("sentinel_username", "sentinel_password")
        if name in query
    }
    # The master's options are parsed by redis-py, from the equivalent standalone URL.
    standalone = f"{'rediss' if tls else 'redis'}://{userinfo + '@' if userinfo else ''}host/{db}"
    if query:
        standalone += "?" + urlencode(query)
    master = parse_url(standalone)
    for name in ("host", "port", "connection_class"):
        master.pop(name, None)
    sentinel: dict[str, Any] = dict(sentinel_creds)
    if sentinel_tls:
        sentinel.update({name: value for name, value in master.items() if name.startswith("ssl_")})
        sentinel["ssl"] = True
    if tls:
        master["ssl"] = True
    return SentinelTarget(_sentinel_hosts(hosts), service, master, sentinel)


def _scheme(url: str) -> str:
    """The URL's scheme, lower-cased; RedisUrlError when it is not one Backstop knows."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in STANDALONE_SCHEMES + SENTINEL_SCHEMES:
        known = ", ".join(f"{name}://" for name in STANDALONE_SCHEMES + SENTINEL_SCHEMES)
        raise RedisUrlError(f"the URL must start with one of {known}")
    return scheme


def _check_database(scheme: str, path: str) -> None:
    """redis-py ignores a path that is not a number; Backstop refuses it, since `/O` for
    `/0` would silently use another database."""
    if scheme != "unix" and path.strip("/") and not path.strip("/").isdigit():
        raise RedisUrlError("the path of a redis:// URL is the database number, e.g. /0")


def _sentinel_hosts(hosts: str) -> list[tuple[str, int]]:
    """`host1:26379,host2,[::1]:26380` -> [(host, port), ...]; the port defaults to 26379."""
    found = []
    for item in hosts.split(","):
        item = item.strip()
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        if not host:
            raise RedisUrlError("a Sentinel URL needs host[:port] of at least one sentinel")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise RedisUrlError(f"sentinel {host}: the port must be a number from 1 to 65535")
        found.append((unquote(host), int(port or SENTINEL_PORT)))
    return found


def _service_and_db(path: str) -> tuple[str, int]:
    """`/<master-name>[/<db>]` -> (master name, db)."""
    segments = path.strip("/").split("/") if path.strip("/") else []
    if not segments or len(segments) > 2 or not segments[0]:
        raise RedisUrlError("a Sentinel URL's path is /<master-name> or /<master-name>/<db>")
    db = segments[1] if len(segments) == 2 else "0"
    if not db.isdigit():
        raise RedisUrlError("the database after the master name must be a number")
    return unquote(segments[0]), int(db)


def _query(query: str) -> dict[str, str]:
    """The query options, one value each; an option given twice is an error."""
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise RedisUrlError("the query string is malformed") from None
    for name, values in parsed.items():
        if len(values) > 1:
            raise RedisUrlError(f"option {name!r} is given more than once")
    return {name: values[0] for name, values in parsed.items()}


def _flag(value: str | None, *, default: bool) -> bool:
    """A boolean query option."""
    if value is None:
        return default
    if value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise RedisUrlError("sentinel_ssl must be true or false")


def reconnects() -> int:
    """How many times a Redis connection of this thread has connected again so far.

    A connection that connects again (after an error, a server restart, or Sentinel moving
    the master) may reach another server than before: whoever must know that all its
    writes went to one server compares this count before and after them.
    """
    return getattr(_local, "reconnects", 0)


def _handshake(connection: redis.connection.AbstractConnection) -> None:
    """redis-py's own handshake after a connect, counting a connection that had been
    connected before (a fresh pooled connection is not a change of server)."""
    if connection in _connected:
        _local.reconnects = reconnects() + 1
    _connected.add(connection)
    connection.on_connect()


def _policy(timeout: float | None) -> dict:
    """The connection options of every Backstop client (see `connect`)."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": 30,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
        "redis_connect_func": _handshake,
    }


def _sentinel_client(target: SentinelTarget, timeout: float | None) -> redis.Redis:
    """A client of the master `target` names, found (again after a failover) by asking its
    sentinels."""
    # A sentinel query is short even for a worker whose own socket waits indefinitely; the
    # list of sentinels is the retry: discovery moves on to the next one.
    sentinel_options = {
        "socket_timeout": timeout or CONNECT_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
        **target.sentinel,
    }
    sentinels = Sentinel(target.sentinels, sentinel_kwargs=sentinel_options)
    return sentinels.master_for(target.service, **_policy(timeout), **target.master)


def _check_options(client: redis.Redis) -> None:
    """Build (not open) one connection, so an unknown or invalid option fails now rather
    than on the first command."""
    pool = client.connection_pool
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:  # an unexpected keyword: name it without quoting the URL
        option = str(exc).rpartition(" ")[2]
        raise RedisUrlError(f"unknown option {option}") from None
    except (ValueError, redis.exceptions.RedisError) as exc:
        raise RedisUrlError(str(exc)) from None


def redis_server_binary() -> str:
    """Path of Debian's redis-server."""
    found = shutil.which("redis-server")
    if not found:
        raise FileNotFoundError("no redis-server: apt-get install redis-server (make run does)")
    return found
