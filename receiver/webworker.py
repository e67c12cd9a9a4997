"""The receiver's gunicorn worker: gthread, with every request read in full before a thread
serves it.

Gunicorn 27's gthread worker hands a connection to a thread once its first byte arrives, and
the thread then reads the rest of the request with blocking reads and no deadline (gunicorn
has no header or body read timeout): a client sending a header byte a second holds a thread
as long as it likes, and a few dozen such clients hold them all. This worker reads requests
in the worker's event loop instead, with non-blocking reads as each socket becomes readable,
the way a buffering proxy would, and hands a request to a thread only once its headers and
body are complete; the thread's parser then reads the buffered bytes and never waits on the
client. A request whose headers are not complete within HEADER_TIMEOUT of the connection (or,
kept alive, of the request's first byte), or whose body is not complete within BODY_TIMEOUT
of its headers, is answered 408 and closed. A slow client holds a socket and a bounded buffer
(worker_connections of them at most per worker), never a thread.
"""

import json
import os
import selectors
import socket
import time
import uuid
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

# Deadlines (seconds) and the buffer bounds; see the README's "Server model".
HEADER_TIMEOUT = float(os.environ.get("BACKSTOP_HEADER_TIMEOUT", "10"))
BODY_TIMEOUT = float(os.environ.get("BACKSTOP_BODY_TIMEOUT", "30"))
MAX_HEADER_BYTES = 64 * 1024
# Past the app's own body limit, the app has what it needs to answer 413 (receiver/app.py).
MAX_BODY_BYTES = int(os.environ.get("BACKSTOP_MAX_BODY_BYTES", str(1024 * 1024)))
_READ_SIZE = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def model() -> dict:
    """The server model gunicorn runs with, from the environment (documented in README)."""
    worker_class = os.environ.get("BACKSTOP_WEB_WORKER_CLASS", "receiver.webworker.BufferingWorker")
    # Gunicorn turns a sync worker with threads into gthread: sync means one thread.
    threads = os.environ.get("BACKSTOP_WEB_THREADS", "1" if worker_class == "sync" else "4")
    return {
        "worker_class": worker_class,
        "threads": int(threads),
        "worker_connections": int(os.environ.get("BACKSTOP_WEB_CONNECTIONS", "100")),
    }


class Inbox:
    """One request's bytes as they arrive, and when they must be complete."""

    def __init__(self, data: bytes, now: float):
        self.data = bytearray()
        self.deadline = now + HEADER_TIMEOUT
        self.head_end: int | None = None  # just past the blank line, once the headers are in
        self.body_end: int | None = None  # known once the body's framing is known
        self.chunk_at: int | None = None  # next chunk-size line of a chunked body
        self.expects_continue = False
        self.add(data, now)

    def add(self, data: bytes, now: float) -> None:
        """Append what arrived; note the end of the headers when it comes."""
        self.data += data
        if self.head_end is None:
            end = self.data.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head_end = end + 4
            self.deadline = now + BODY_TIMEOUT
            self._framing(bytes(self.data[: self.head_end]).lower())

    def _framing(self, head: bytes) -> None:
        lines = head.split(b"\r\n")[1:]
        fields = dict(line.partition(b":")[::2] for line in lines if b":" in line)
        fields = {name.strip(): value.strip() for name, value in fields.items()}
        self.expects_continue = fields.get(b"expect") == b"100-continue"
        if b"transfer-encoding" in fields:
            self.chunk_at = self.head_end
        elif fields.get(b"content-length", b"0").isdigit():
            self.body_end = self.head_end + int(fields.get(b"content-length", b"0"))
        else:  # malformed: complete as it is, gunicorn's parser answers 400
            self.body_end = self.head_end

    def headers_too_large(self) -> bool:
        return self.head_end is None and len(self.data) > MAX_HEADER_BYTES

    def complete(self) -> bool:
        """Headers and body are all here (or enough for the app to refuse the body)."""
        if self.head_end is None:
            return False
        if len(self.data) - self.head_end > MAX_BODY_BYTES:
            return True
        if self.body_end is not None and self.body_end - self.head_end > MAX_BODY_BYTES:
            return True  # announced too large: the app answers 413 without reading it
        if self.chunk_at is not None:
            self._scan_chunks()
        return self.body_end is not None and len(self.data) >= self.body_end

    def _scan_chunks(self) -> None:
        """Walk the chunk-size lines that arrived; find the end after the last chunk."""
        while self.body_end is None:
            line_end = self.data.find(b"\r\n", self.chunk_at)
            if line_end < 0:
                return
            try:
                size = int(bytes(self.data[self.chunk_at : line_end]).split(b";")[0], 16)
            except ValueError:  # malformed: gunicorn's parser answers 400
                self.body_end = len(self.data)
                return
            if size == 0:  # the last chunk, then trailer fields up to a blank line
                end = self.data.find(b"\r\n\r\n", line_end)
                if end >= 0:
                    self.body_end = end + 4
                return
            self.chunk_at = line_end + 2 + size + 2


class BufferingWorker(ThreadWorker):
    """gthread whose event loop, not its threads, waits for slow clients."""

    def enqueue_req(self, conn):
        """Give the connection a thread only once its request is complete."""
        if self.cfg.is_ssl or self._collect(conn):
            super().enqueue_req(conn)

    def _collect(self, conn) -> bool:
        """Read what the client sent; True when the request is complete, else the
        connection waits in the poller (or is closed)."""
        now = time.monotonic()
        inbox = getattr(conn, "inbox", None)
        if inbox is None:
            # A pipelined request may already be partly in the parser's buffer.
            early = conn.parser.unreader.take_buffered() if conn.parser else b""
            inbox = conn.inbox = Inbox(early, now)
        conn.sock.setblocking(False)
        while not inbox.complete():
            try:
                data = conn.sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:  # the client hung up
                self._drop(conn)
                return False
            inbox.add(data, now)
            if inbox.headers_too_large():
                self._drop(conn, 431, "request_header_fields_too_large", "headers too large")
                return False
        if inbox.complete():
            self._hand_over(conn, inbox)
            return True
        if inbox.expects_continue and inbox.head_end is not None:
            inbox.expects_continue = False
            _send(conn, _CONTINUE)
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )
        return False

    def _hand_over(self, conn, inbox: Inbox) -> None:
        conn.init()
        conn.parser.unreader.unread(bytes(inbox.data))
        conn.inbox = None
        # The body is here already: gunicorn must not answer "100 Continue" for it.
        conn.continued = True

    def handle_request(self, req, conn):
        """Serve a request read in full (no "100 Continue" left to send)."""
        if getattr(conn, "continued", False):
            req._expected_100_continue = False  # gunicorn's flag for that interim answer
        return super().handle_request(req, conn)

    def murder_pending(self):
        """Close connections past their deadline (408 if they had started a request)."""
        now = time.monotonic()
        for conn in [c for c in self.pending_conns if _deadline(c) <= now]:
            self.pending_conns.remove(conn)
            try:
                self.poller.unregister(conn.sock)
            except (OSError, KeyError, ValueError):
                pass
            started = getattr(conn, "inbox", None) is not None and bool(conn.inbox.data)
            if started:
                self._drop(conn, 408, "request_timeout", "request not received in time")
            else:
                self._drop(conn)

    def _drop(self, conn, status: int | None = None, code: str = "", message: str = "") -> None:
        if status is not None:
            _send(conn, _error(status, code, message))
            client = conn.client[0] if isinstance(conn.client, tuple) else conn.client
            self.log.info("closed a slow or oversized request from %s: %s %s", client, status, code)
        self.nr_conns -= 1
        _close(conn)


def _deadline(conn) -> float:
    inbox = getattr(conn, "inbox", None)
    return inbox.deadline if inbox is not None else conn.timeout


def _close(conn) -> None:
    """Close without blocking the loop: end our side, drop what the client already sent
    (unread bytes would make the close a reset that can destroy the answer), close."""
    try:
        conn.sock.shutdown(socket.SHUT_WR)
        for _ in range(16):  # non-blocking: only what has arrived, and not forever
            if not conn.sock.recv(_READ_SIZE):
                break
    except OSError:
        pass
    conn.close()


def _send(conn, data: bytes) -> None:
    """Best effort on a non-blocking socket: the client may be gone or not reading."""
    try:
        conn.sock.send(data)
    except OSError:
        pass


_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


def _error(status: int, code: str, message: str) -> bytes:
    """Backstop's JSON error envelope as a complete HTTP response that closes."""
    envelope = {"error": {"code": code, "message": message, "request_id": uuid.uuid4().hex}}
    body = json.dumps(envelope).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
