"""The application factory: `create_app()` is what gunicorn and the tests load."""

import logging
import random
import re
from collections.abc import Callable
from typing import cast

from flask import Flask, g, request
from flask.json.provider import DefaultJSONProvider
from redis.exceptions import RedisError

from config.policy import Policy, load_policy
from config.settings import Settings
from config.users import UsersError, load_users
from core import logs
from core.assembly import assemble
from core.connection import RedisUrlError, RedisVersionError, VersionCheck, connect
from receiver import (
    admission,
    api,
    dashboard,
    gates,
    health,
    login,
    openapi,
    owners,
    quarantine,
    snapshots,
    webhooks,
)
from receiver.bodies import CappedRequest
from receiver.errors import register_error_handlers
from receiver.state import EXTENSION, AppState

log = logging.getLogger("backstop.receiver")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class StartupError(RuntimeError):
    """Backstop refuses to start with this configuration."""


class BackstopFlask(Flask):
    """Flask, with its check of each view and hook for `async def` made once per function,
    not on every call: six calls of `inspect.iscoroutinefunction` per webhook (py-spy,
    docs/benchmarks.md) for an answer that never changes."""

    _MOST_CACHED = 1024  # views, hooks, handlers and signal receivers: a few dozen

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._synced: dict[Callable, Callable] = {}

    def ensure_sync(self, func: Callable) -> Callable:
        """The function Flask's own ensure_sync makes of `func`, remembered."""
        try:
            found = self._synced.get(func)
        except TypeError:  # an unhashable callable: checked every time, as Flask does
            return super().ensure_sync(func)
        if found is None:
            found = super().ensure_sync(func)
            if len(self._synced) < self._MOST_CACHED:
                self._synced[func] = found
        return found


def create_app(settings: Settings | None = None, *, policy: Policy | None = None) -> Flask:
    """Build the receiver app; refuse to start without credentials unless insecure."""
    settings = settings or Settings()
    logs.configure_logging(settings.log_level, settings.log_format)
    missing = settings.missing_credentials()
    if missing and not settings.insecure:
        raise StartupError(
            f"refusing to start without credentials: set {', '.join(missing)} "
            "(or BACKSTOP_INSECURE=1 for local use only)"
        )
    if missing:
        log.warning("insecure mode: %s unset, those endpoints are open", ", ".join(missing))
    if not settings.redis_url:
        raise StartupError("REDIS_URL is not set (make run starts a local Redis for you)")
    policy = policy or load_policy(settings.config_path)
    try:
        users = load_users(settings.users_file)
    except UsersError as exc:
        raise StartupError(f"BACKSTOP_USERS_FILE: {exc}") from None

    app = BackstopFlask(__name__)
    app.request_class = CappedRequest  # chunked bodies over the limit: 413, not truncated
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    cast(DefaultJSONProvider, app.json).sort_keys = False  # Flask's default provider class
    try:
        connection = connect(settings.redis_url, timeout=settings.redis_timeout_seconds)
    except RedisUrlError as exc:
        raise StartupError(f"REDIS_URL: {exc}") from None
    # An old Redis would fail some commands only (503s for those): refuse to start. A Redis
    # down now is checked once it answers; too old then, every request answers 503 (the
    # log says why), and so does /healthz, so the process is restarted and refuses.
    version = VersionCheck(connection)
    try:
        version.check()
    except RedisVersionError as exc:
        raise StartupError(str(exc)) from None
    store, engine = assemble(policy, connection)
    app.extensions[EXTENSION] = AppState(
        settings=settings, policy=policy, store=store, engine=engine, users=users
    )

    app.before_request(assign_request_id)
    app.before_request(version.check)
    app.after_request(echo_request_id)
    app.teardown_request(release_request_id)
    register_error_handlers(app)
    dashboard.register_template_helpers(app)
    blueprints = (
        webhooks.bp,
        api.bp,
        openapi.bp,
        owners.bp,
        quarantine.check_bp,
        quarantine.bp,
        gates.bp,
        admission.bp,
        health.bp,
        snapshots.bp,
        login.bp,
        dashboard.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    return app


def assign_request_id() -> None:
    """Use the caller's X-Request-Id when it is sane, else a fresh one."""
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if _REQUEST_ID.match(given) else new_request_id()
    # Bound for the request's log lines, and carried by any job it enqueues.
    g.trace_token = logs.bind(request_id=g.request_id)


def new_request_id() -> str:
    """32 random hex digits, like uuid4().hex. A request id only correlates log lines and
    answers, it guards nothing: `random` (reseeded in every forked worker) serves, without
    uuid4's system call for 16 bytes of the kernel's entropy on every request (5 % of a
    worker's time under P1's load: py-spy, docs/benchmarks.md)."""
    return f"{random.getrandbits(128):032x}"


def release_request_id(_error=None) -> None:
    """Unbind the request id, so a thread's next request starts clean."""
    token = g.pop("trace_token", None)
    if token is not None:
        logs.unbind(token)


def echo_request_id(response):
    """Return the request id so clients can quote it."""
    response.headers["X-Request-Id"] = g.get("request_id", "")
    return response


def warm_up(app) -> None:
    """Connect to Redis and load the store's scripts before the first request (gunicorn
    calls this in each worker): the first webhooks after a start, often a storm's, would
    otherwise pay for both. Redis down is no reason not to serve: requests answer 503
    until it is back. Any other WSGI app (the benchmarks' bare baseline) is left alone."""
    state = getattr(app, "extensions", {}).get(EXTENSION)
    if state is None:
        return
    try:
        state.store.warm()
    except RedisError as exc:
        log.warning("Redis not warmed up at start: %s", type(exc).__name__)
