"""A loopback HTTP(S) server for test doubles: routing, recording and settable failures.

Every response closes its connection, so no client keeps a pooled connection that would
outlive `down()`: each request is a fresh connect, as it would be to a server that restarts.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from testbed.servers import LoopbackServer


@dataclass
class Request:
    """One request as received; credentials are kept out, only their scheme is recorded."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    auth_scheme: str | None = None
    status: int | None = None

    @property
    def body_size(self) -> int:
        """Length of the body in bytes."""
        return len(self.body)

    @property
    def json(self) -> Any:
        """The body decoded as JSON, or None when it is not JSON."""
        if "json" not in self.headers.get("content-type", ""):
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def param(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter `name`."""
        return self.query.get(name, [default])[0]


@dataclass
class Response:
    """What the double answers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, document: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    return Response(status, json.dumps(document).encode(), headers=headers or {})


@dataclass
class _Failure:
    """An injected failure status, for `remaining` more requests (None: until cleared)."""

    status: int
    remaining: int | None
    retry_after: int | None


Route = tuple[str, re.Pattern[str], Callable[..., Response]]


class HttpDouble(ABC):
    """A real server on 127.0.0.1 in a background thread; subclasses supply routes and bodies."""

    scheme = "http"

    def __init__(self) -> None:
        self.port = 0
        self._lock = threading.RLock()
        self._requests: list[Request] = []
        self._failure: _Failure | None = None
        self._delay = 0.0
        # Set on down()/stop(): wakes handlers held by slow() so they drop their connection.
        self._interrupt = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def routes(self) -> list[Route]:
        """(method, path pattern, handler) triples; named groups become keyword arguments."""

    @abstractmethod
    def failure_response(self, status: int) -> Response:
        """The body this API sends with an injected failure status."""

    def authorize(self, request: Request, authorization: str | None) -> Response | None:
        """An error response when the Authorization header is not accepted, else None."""
        return None

    def not_found(self, request: Request) -> Response:
        """The answer to a path this double does not serve."""
        return json_response(404, {"message": f"no route for {request.method} {request.path}"})

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, or None for plain HTTP."""
        return None

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Request]:
        """Every request received so far, oldest first, with the status it was answered with."""
        with self._lock:
            return list(self._requests)

    def start(self) -> Self:
        """Listen on a free loopback port and serve in a background thread."""
        self._listen()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and wait for every handler thread."""
        self._close()

    def down(self) -> None:
        """Simulate an outage: close the listening socket, so connects are refused.

        Requests held by slow() are dropped without an answer, as by a crashing server.
        """
        self._close()

    def up(self) -> None:
        """End an outage: listen again on the same port."""
        self._listen()

    def fail_with(
        self, status: int, count: int | None = None, *, retry_after: int | None = None
    ) -> None:
        """Answer the next `count` requests (all, if None) with `status`, until clear()."""
        with self._lock:
            self._failure = _Failure(status, count, retry_after)

    def slow(self, seconds: float) -> None:
        """Hold every response for `seconds` (0 to stop), so clients can time out."""
        with self._lock:
            self._delay = seconds

    def clear(self) -> None:
        """Stop failing and delaying."""
        with self._lock:
            self._failure = None
            self._delay = 0.0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _listen(self) -> None:
        """Bind (the previous port, if any) and start the serving thread."""
        self._interrupt = threading.Event()
        self._server = _Server(("127.0.0.1", self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=type(self).__name__
        )
        self._thread.start()

    def _close(self) -> None:
        """Release slowed handlers, stop the loop, close the socket, join handler threads."""
        if self._server is None:
            return
        self._interrupt.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = None

    def _serve(self, request: Request, authorization: str | None) -> Response | None:
        """Record, delay, fail or route one request; None means drop the connection."""
        with self._lock:
            self._requests.append(request)
            delay = self._delay
        if delay and self._interrupt.wait(delay):
            return None
        with self._lock:
            response = (
                self._injected_failure()
                or self.authorize(request, authorization)
                or self._route(request)
            )
            request.status = response.status
        return response

    def _injected_failure(self) -> Response | None:
        """The failure response for this request, counting it down."""
        failure = self._failure
        if failure is None:
            return None
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining == 0:
                self._failure = None
        response = self.failure_response(failure.status)
        if failure.retry_after is not None:
            response.headers["Retry-After"] = str(failure.retry_after)
        return response

    def _route(self, request: Request) -> Response:
        """Call the handler whose method and pattern match the request."""
        for method, pattern, handler in self.routes():
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                return handler(request, **match.groupdict())
        return self.not_found(request)


class _Server(LoopbackServer):
    # slow() waits wake on stop(), so that close can join the handler threads.
    def __init__(self, address: tuple[str, int], handler: type, double: HttpDouble) -> None:
        super().__init__(address, handler, double.ssl_context())
        self.double = double


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A client that connects and never sends cannot hold a handler thread (and stop()) forever.
    timeout = 10
    server: _Server

    def do_GET(self) -> None:
        """Read the request, let the double answer it, write the answer."""
        authorization = self.headers.get("Authorization")
        response = self.server.double._serve(self._request(authorization), authorization)
        if response is None:
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    do_POST = do_PUT = do_DELETE = do_GET

    def _request(self, authorization: str | None) -> Request:
        """The request line, headers (less Authorization) and body as a Request."""
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        headers = {name.lower(): value for name, value in self.headers.items()}
        return Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={k: v for k, v in headers.items() if k != "authorization"},
            body=self.rfile.read(length),
            auth_scheme=authorization.partition(" ")[0] if authorization else None,
        )

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the double records requests in `requests` instead of printing them."""
