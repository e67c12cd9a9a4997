"""A loopback proxy in front of a Kubernetes API server that injects faults, for R3 tests.

It terminates TLS with a certificate of its own (so it sees each request's method and
path), forwards the request to the real API server over TLS, and streams the answer back.
Rules, set from the test process while it runs, pick requests by method and a path regex
and, for the next N matching requests or until cleared, either

- answer a status (409, 500, 503, 504, 403, ...) with a Kubernetes `Status` JSON body, or
- hang: keep the connection open and never answer, until the rule is cleared or the proxy
  stops (then the connection is dropped, still unanswered).

With `forward=True` the request reaches the API server first and only its answer is
replaced or lost: the change is applied although the client is told otherwise, which is
what a timeout after the server committed looks like. With `after=(method, path)` a rule
waits until the API server has carried out (2xx) a request matching that (e.g. a fault on
reads that starts once the PATCH went through).

Every request is recorded (method, path, the fault applied, the status the client got,
and whether a held client hung up), so tests count attempts at the wire. `kubeconfig`
is a copy of the upstream kubeconfig's bearer-token user pointed at the proxy; client
certificates cannot pass through a TLS-terminating proxy and are refused.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import select
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import yaml

from testbed.doubles.tls import Certificates, make_certificates
from testbed.kube.kube import write_kubeconfig
from testbed.servers import LoopbackServer

# metav1.StatusReason for the statuses a test is likely to inject.
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
# Request headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "host", "content-length"}
)  # fmt: skip
UPSTREAM_TIMEOUT = 120.0
CHUNK = 64 * 1024


def status_document(code: int, message: str | None = None) -> dict:
    """A Kubernetes `Status` object for a failure with HTTP status `code`."""
    reason = REASONS.get(code, HTTPStatus(code).phrase.replace(" ", ""))
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message or f"{reason}: injected by the test fault proxy",
        "reason": reason,
        "code": code,
    }


@dataclass
class Rule:
    """Which requests to hit (method, path regex matched in full) and how, and how often."""

    method: str | None
    path: re.Pattern[str]
    status: int | None  # None: hang
    remaining: int | None  # None: until cleared
    forward: bool = False
    after: tuple[str | None, re.Pattern[str]] | None = None
    retry_after: int | None = None
    hits: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    armed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.after is None:
            self.armed.set()

    @property
    def active(self) -> bool:
        """Injecting now: armed, not cleared and not used up."""
        return self.armed.is_set() and not self.released.is_set() and self.remaining != 0

    def matches(self, method: str, path: str) -> bool:
        return _matches((self.method, self.path), method, path)

    def describe(self) -> str:
        what = "hang" if self.status is None else str(self.status)
        return f"{what}{' after forwarding' if self.forward else ''}"


@dataclass
class Exchange:
    """One request as the proxy saw it, and what became of it."""

    method: str
    path: str
    query: str
    fault: str | None = None
    status: int | None = None  # the status sent; None: the client never got an answer
    forwarded: bool = False
    abandoned: bool = False  # a held request whose client hung up (it timed out)


@dataclass(frozen=True)
class Upstream:
    """Where the real API server is and how to trust it."""

    host: str
    port: int
    context: ssl.SSLContext


class FaultProxy:
    """The proxy: a TLS server on 127.0.0.1 in a background thread, with fault rules."""

    def __init__(self, upstream_kubeconfig: Path) -> None:
        self._source = yaml.safe_load(Path(upstream_kubeconfig).read_text())
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._exchanges: list[Exchange] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.upstream: Upstream | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Make a CA and serving certificate, write the proxy's kubeconfig, and listen."""
        self._workdir = tempfile.TemporaryDirectory(prefix="kube-fault-proxy-")
        directory = Path(self._workdir.name)
        certs = make_certificates(directory)
        cluster, token = self._current_cluster_and_token()
        self.upstream = _upstream(cluster, directory)
        self._server = _Server(("127.0.0.1", 0), _Handler, self, certs)
        self.port = self._server.server_address[1]
        write_kubeconfig(self.kubeconfig, self.url, token, certs.ca.read_bytes())
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="kube-fault-proxy"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Drop held requests and open connections, stop serving, join every thread."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _hang_up(connection)
        self._server.server_close()  # joins the handler threads
        self._thread.join()
        self._server = None
        self._workdir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        """A kubeconfig for the upstream's token user, pointed at the proxy (valid until stop)."""
        return Path(self._workdir.name) / "kubeconfig"

    # -- rules -------------------------------------------------------------------------------

    def fail(
        self,
        method: str | None,
        path: str,
        status: int,
        *,
        times: int | None = None,
        forward: bool = False,
        after: tuple[str | None, str] | None = None,
        retry_after: int | None = None,
    ) -> Rule:
        """Answer the next `times` matching requests (all until clear(), if None) with
        `status` and a Status body (and a Retry-After header, if given); with `forward`,
        after the API server has handled them; with `after`, only once the API server has
        carried out a request matching it."""
        rule = _rule(method, path, status, times, forward, after)
        rule.retry_after = retry_after
        return self._add(rule)

    def hang(
        self,
        method: str | None,
        path: str,
        *,
        times: int | None = None,
        forward: bool = False,
        after: tuple[str | None, str] | None = None,
    ) -> Rule:
        """Never answer the next `times` matching requests (all until clear(), if None);
        `forward` and `after` as for fail()."""
        return self._add(_rule(method, path, None, times, forward, after))

    def clear(self, rule: Rule | None = None) -> None:
        """Stop injecting (one rule, or all); requests still held are dropped unanswered."""
        with self._lock:
            cleared = [rule] if rule else list(self._rules)
            self._rules = [r for r in self._rules if r not in cleared]
        for each in cleared:
            each.released.set()

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _succeeded(self, method: str, path: str) -> None:
        """The API server carried out this request: arm the rules waiting for it."""
        with self._lock:
            for rule in self._rules:
                if rule.after and _matches(rule.after, method, path):
                    rule.armed.set()

    def _take(self, method: str, path: str) -> Rule | None:
        """The first active rule for this request, counted down."""
        with self._lock:
            for rule in self._rules:
                if rule.active and rule.matches(method, path):
                    rule.hits += 1
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule
        return None

    # -- what was seen -----------------------------------------------------------------------

    def exchanges(self, method: str | None = None, path: str | None = None) -> list[Exchange]:
        """Requests seen so far, oldest first; only those with `method` and a path matching
        the regex `path` in full, when given."""
        pattern = re.compile(path) if path else None
        with self._lock:
            seen = list(self._exchanges)
        return [
            e
            for e in seen
            if (method is None or e.method == method.upper())
            and (pattern is None or pattern.fullmatch(e.path))
        ]

    def _record(self, exchange: Exchange) -> Exchange:
        with self._lock:
            self._exchanges.append(exchange)
        return exchange

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    # -- kubeconfig --------------------------------------------------------------------------

    def _current_cluster_and_token(self) -> tuple[dict, str]:
        """The current context's cluster entry and its user's bearer token."""
        source = self._source
        name = source["current-context"]
        context = next(c["context"] for c in source["contexts"] if c["name"] == name)
        cluster = next(c["cluster"] for c in source["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in source["users"] if u["name"] == context["user"])
        if "token" not in user:
            raise ValueError("the fault proxy passes bearer tokens only (TLS ends at the proxy)")
        return cluster, user["token"]


def _method(method: str | None) -> str | None:
    return method.upper() if method else None


def _rule(method, path, status, times, forward, after) -> Rule:
    trigger = (_method(after[0]), re.compile(after[1])) if after else None
    return Rule(_method(method), re.compile(path), status, times, forward, trigger)


def _matches(which: tuple[str | None, re.Pattern[str]], method: str, path: str) -> bool:
    """Does (method, path) match a (method or None for any, path regex in full) pair?"""
    wanted, pattern = which
    return (wanted is None or wanted == method) and bool(pattern.fullmatch(path))


def _upstream(cluster: dict, directory: Path) -> Upstream:
    """The API server's address and a TLS context that trusts it as the kubeconfig says."""
    url = urlsplit(cluster["server"])
    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    elif "certificate-authority-data" in cluster:
        ca = directory / "upstream-ca.crt"
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        context.load_verify_locations(ca)
    elif "certificate-authority" in cluster:
        context.load_verify_locations(cluster["certificate-authority"])
    return Upstream(url.hostname, url.port or 443, context)


def _hang_up(connection: socket.socket) -> None:
    """Wake a handler blocked on this connection by shutting the socket down."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the client or the handler


def _client_gone(connection: socket.socket) -> bool:
    """True when the client closed its end (it gave up waiting). Reads at most one byte,
    which is harmless: a held request's connection is never used again."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:  # the socket is non-blocking here
        return connection.recv(1) == b""
    except ssl.SSLWantReadError:
        return False
    except OSError:
        return True


class _Server(LoopbackServer):
    # stop() wakes the handler threads that are blocked, so that close can join them.
    def __init__(self, address, handler, proxy: FaultProxy, certs: Certificates) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs.cert, certs.key)
        super().__init__(address, handler, context)
        self.proxy = proxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    timeout = 30  # an idle keep-alive connection does not hold a thread for ever
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, True)

    def finish(self) -> None:
        self.server.proxy._track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass  # the client is gone

    def do_GET(self) -> None:
        """Record the request, then fault it, forward it, or both."""
        proxy = self.server.proxy
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        exchange = proxy._record(Exchange(self.command, url.path, url.query))
        rule = proxy._take(self.command, url.path)
        if rule is None:
            self._relay(exchange, body)
            return
        exchange.fault = rule.describe()
        if rule.forward:
            connection, _ = self._forward(exchange, body)
            connection.close()  # the API server handled it; its answer is what gets lost
        if rule.status is None:
            self._hold(exchange, rule)
            return
        extra = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        self._answer(exchange, rule.status, status_document(rule.status), extra)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _forward(
        self, exchange: Exchange, body: bytes
    ) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        """Send the request to the API server; return the connection and its unread response
        (the caller closes the connection)."""
        upstream = self.server.proxy.upstream
        connection = http.client.HTTPSConnection(
            upstream.host, upstream.port, context=upstream.context, timeout=UPSTREAM_TIMEOUT
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            connection.request(self.command, self.path, body=body or None, headers=headers)
            exchange.forwarded = True
            response = connection.getresponse()
        except BaseException:
            connection.close()
            raise
        if 200 <= response.status < 300:
            self.server.proxy._succeeded(self.command, urlsplit(self.path).path)
        return connection, response

    def _relay(self, exchange: Exchange, body: bytes) -> None:
        """Forward, and stream the API server's answer back (watches included); 502 when the
        API server cannot be reached."""
        try:
            connection, response = self._forward(exchange, body)
        except (OSError, http.client.HTTPException) as exc:
            self._answer(exchange, 502, status_document(502, f"upstream unreachable: {exc}"))
            return
        try:
            exchange.status = response.status  # before the client can have it all
            self.send_response_only(response.status, response.reason)
            length = response.getheader("Content-Length")
            for name, value in response.getheaders():
                if name.lower() not in HOP_HEADERS:
                    self.send_header(name, value)
            if length is not None:
                self.send_header("Content-Length", length)
                self.end_headers()
                self.wfile.write(response.read())
            else:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._stream(response)
        finally:
            connection.close()

    def _stream(self, response: http.client.HTTPResponse) -> None:
        """Copy a body of unknown length as chunks, as they arrive."""
        while chunk := response.read1(CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _answer(
        self, exchange: Exchange, status: int, document: dict, headers: dict | None = None
    ) -> None:
        payload = json.dumps(document).encode()
        exchange.status = status  # before the client can have it
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _hold(self, exchange: Exchange, rule: Rule) -> None:
        """Never answer: wait until the rule is cleared or the proxy stops, noting whether
        the client hangs up meanwhile, then drop the connection."""
        stopping = self.server.proxy._stopping
        self.connection.setblocking(False)  # _client_gone must never block
        while not (rule.released.wait(0.05) or stopping.is_set()):
            if not exchange.abandoned and _client_gone(self.connection):
                exchange.abandoned = True
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: exchanges are recorded instead."""
