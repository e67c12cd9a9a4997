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
import re
import selectors
import socket
import time
import uuid
from functools import partial

from gunicorn.http.body import CHUNK_EXT_RE
from gunicorn.workers.gthread import ThreadWorker

from config.settings import Settings

# Deadlines (seconds) and the buffer bounds; see docs/benchmarks.md, "Server model".
HEADER_TIMEOUT = float(os.environ.get("BACKSTOP_HEADER_TIMEOUT", "10"))
BODY_TIMEOUT = float(os.environ.get("BACKSTOP_BODY_TIMEOUT", "30"))
MAX_HEADER_BYTES = 64 * 1024
# Past the app's own body limit, the app has what it needs to answer 413 (receiver/app.py):
# the very limit the app enforces, read and validated by the same setting, never a copy.
MAX_BODY_BYTES = Settings().max_body_bytes
_READ_SIZE = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def model() -> dict:
    """The server model gunicorn runs with, from the environment (docs/configuration.md)."""
    worker_class = os.environ.get("BACKSTOP_WEB_WORKER_CLASS", "receiver.webworker.BufferingWorker")
    # Gunicorn turns a sync worker with threads into gthread: sync means one thread.
    threads = os.environ.get("BACKSTOP_WEB_THREADS", "1" if worker_class == "sync" else "4")
    return {
        "worker_class": worker_class,
        "threads": int(threads),
        "worker_connections": int(os.environ.get("BACKSTOP_WEB_CONNECTIONS", "100")),
    }


# gunicorn's limit on a chunk-size line (gunicorn/http/body.py), and how much of a chunked
# body past the app's limit gunicorn may read for the app to find it too long: the app reads
# the limit and a byte more, gunicorn's Body asks its reader for 1 KiB at least; with margin.
_MAX_CHUNK_LINE = 8190
_PAST_LIMIT = 64 * 1024
_MAX_CHUNKED_BYTES = 2 * MAX_BODY_BYTES + _PAST_LIMIT
_HEX = re.compile(rb"[0-9a-fA-F]+")


class Inbox:
    """One request's bytes as they arrive, and when they must be complete."""

    def __init__(self, data: bytes, now: float):
        self.data = bytearray()
        self.deadline = now + HEADER_TIMEOUT
        self.head_end: int | None = None  # just past the blank line, once the headers are in
        self.body_end: int | None = None  # known once the body's framing is known
        self.chunk_at: int | None = None  # next chunk-size line of a chunked body
        self.decoded = 0  # chunked: body bytes in the chunks passed so far
        self.expects_continue = False
        # (status, code, message) when the request is refused here, never handed to a thread
        self.refusal: tuple[int, str, str] | None = None
        self.add(data, now)

    def add(self, data: bytes, now: float) -> None:
        """Append what arrived; note the end of the headers when it comes."""
        self.data += data
        if self.head_end is None:
            end = self.data.find(b"\r\n\r\n")
            # A head over the limit is refused whether or not its end came in the same read
            # (gunicorn's own limit is ~800 KiB: it would have served a 70 KiB head).
            if (len(self.data) if end < 0 else end + 4) > MAX_HEADER_BYTES:
                self.refuse(431, "request_header_fields_too_large", "headers too large")
            if end < 0 or self.refusal is not None:
                return
            self.head_end = end + 4
            self.deadline = now + BODY_TIMEOUT
            self._framing(bytes(self.data[: self.head_end]).lower())

    def refuse(self, status: int, code: str, message: str) -> None:
        if self.refusal is None:
            self.refusal = (status, code, message)

    def _framing(self, head: bytes) -> None:
        """Where the body ends, by gunicorn's rules (http/message.py, set_body_reader).

        Framing that is ambiguous or that gunicorn refuses is refused here (400), with no
        thread and no body read: a buffer ending where gunicorn's parser does not either left
        a thread reading the socket (Content-Length and Transfer-Encoding both set, the body
        the worker waited for never came) or waited out BODY_TIMEOUT for a request that
        gunicorn refuses at its headers (two Content-Lengths)."""
        assert self.head_end is not None  # add() reads the framing once the headers are in
        lines = head.lstrip(b"\r\n").split(b"\r\n")
        version = lines[0].rpartition(b" ")[2]
        fields = [
            (n.strip(), v.strip()) for n, _, v in (line.partition(b":") for line in lines[1:])
        ]
        lengths = [value for name, value in fields if name == b"content-length"]
        codings = [
            coding.strip()
            for name, value in fields
            if name == b"transfer-encoding"
            for coding in value.split(b",")
        ]
        self.expects_continue = version == b"http/1.1" and (b"expect", b"100-continue") in fields
        if codings:
            # Chunked alone (gunicorn passes "gzip, chunked" on undecoded), in HTTP/1.1,
            # without a Content-Length (RFC 9112 6.1, 6.3).
            if codings != [b"chunked"] or lengths or version != b"http/1.1":
                self.refuse(400, "bad_request", "ambiguous or unsupported Transfer-Encoding")
            self.chunk_at = self.head_end
        elif len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
            self.refuse(400, "bad_request", "invalid or repeated Content-Length")
        else:
            self.body_end = self.head_end + int(lengths[0] if lengths else 0)

    def complete(self) -> bool:
        """Headers and body are all here (or enough for the app to refuse the body)."""
        if self.head_end is None or self.refusal is not None:
            return False
        if self.chunk_at is not None:
            self._scan_chunks()  # sets body_end where the app has read enough to refuse it
            if self.body_end is None and len(self.data) - self.head_end > _MAX_CHUNKED_BYTES:
                # Bounds the buffer: this much more framing than body is no real client.
                self.refuse(413, "payload_too_large", "request body too large")
        elif self.body_end is not None and self.body_end - self.head_end > MAX_BODY_BYTES:
            return True  # Content-Length too large: the app answers 413 without reading it
        return self.body_end is not None and len(self.data) >= self.body_end

    def _scan_chunks(self) -> None:
        """Walk the chunks that arrived, checking them as gunicorn's ChunkedReader does;
        find the end after the last chunk, or where the app has read past its limit.

        Not "more bytes than the limit arrived": with small chunks, more of those are
        framing than body, and a thread handed them waited on the client for the rest of
        the body the app reads before it answers 413. Chunk sizes are checked as gunicorn
        does: int(x, 16) also takes "-6", "0x0", "1_0" or " 5", which gunicorn refuses
        inside the app (a 500), and "-6" sent this loop back to its own line forever."""
        assert self.chunk_at is not None  # complete() scans chunked bodies only
        while self.body_end is None and self.refusal is None:
            line_end = self.data.find(b"\r\n", self.chunk_at)
            if line_end < 0:
                if len(self.data) - self.chunk_at > _MAX_CHUNK_LINE:
                    self.refuse(400, "bad_request", "invalid chunk size line")
                return
            size_line = bytes(self.data[self.chunk_at : line_end])
            digits, semicolon, extension = size_line.partition(b";")
            if semicolon:
                digits = digits.rstrip(b" \t")
            if not _HEX.fullmatch(digits) or (
                semicolon and not CHUNK_EXT_RE.fullmatch(b";" + extension)
            ):
                self.refuse(400, "bad_request", "invalid chunk size line")
                return
            size, data_at = int(digits, 16), line_end + 2
            if size == 0:  # the last chunk, then trailer fields up to a blank line
                end = self.data.find(b"\r\n\r\n", line_end)
                if end >= 0:
                    self.body_end = end + 4
                elif len(self.data) - data_at > MAX_HEADER_BYTES:
                    self.refuse(431, "request_header_fields_too_large", "trailers too large")
                return
            needed = MAX_BODY_BYTES + _PAST_LIMIT - self.decoded
            if size >= needed:  # the app refuses the body once it has read this far
                self.body_end = data_at + needed
                return
            if len(self.data) < data_at + size + 2:
                return  # this line is read again once the rest of the chunk is here
            if self.data[data_at + size : data_at + size + 2] != b"\r\n":
                self.refuse(400, "bad_request", "chunk not followed by CRLF")
                return
            self.decoded += size
            self.chunk_at = data_at + size + 2


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
        while not inbox.complete() and inbox.refusal is None:
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
        if inbox.refusal is not None:  # headers too large, framing gunicorn would not read
            self._drop(conn, *inbox.refusal)
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


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
}


def _error(status: int, code: str, message: str) -> bytes:
    """Backstop's JSON error envelope as a complete HTTP response that closes."""
    envelope = {"error": {"code": code, "message": message, "request_id": uuid.uuid4().hex}}
    body = json.dumps(envelope).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
