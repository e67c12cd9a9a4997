"""Request framing in receiver/webworker.py (real gunicorn, real receiver app, real Redis).

The worker buffers each request in its event loop, then gunicorn's parser reads the buffer in
a thread. Where the two disagree on where a request ends, a thread waits on the client (what
the worker exists to prevent) or a request hidden in a body is served (smuggling). One worker
with one thread: a held thread shows as /healthz not answering. Every socket has a timeout.
"""

import json
import socket
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
import requests

from testbed.servers import Gunicorn
from tests import samples
from tests.secrets import API_TOKEN, WEBHOOK_TOKEN

LIMIT = 64 * 1024  # BACKSTOP_MAX_BODY_BYTES of the servers here
WAIT = 5.0  # how long a socket waits for an answer, or for the server to close


def _server(redis_server, tmp_path_factory, **extra: str):
    metrics = tmp_path_factory.mktemp("metrics")
    env = {
        "BACKSTOP_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "BACKSTOP_API_TOKEN": API_TOKEN,
        "BACKSTOP_CONFIG": str(Path(__file__).resolve().parents[2] / "config/backstop.yaml"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "REDIS_URL": redis_server.url,
        "BACKSTOP_WEB_THREADS": "1",
        "BACKSTOP_MAX_BODY_BYTES": str(LIMIT),
        **extra,
    }
    return Gunicorn("receiver.app:create_app()", env, workers=1, log=metrics / "gunicorn.log")


@pytest.fixture(scope="module")
def web(redis_server, tmp_path_factory):
    with _server(redis_server, tmp_path_factory) as server:
        yield server


@pytest.fixture(scope="module")  # 1 s header and body deadlines
def hasty(redis_server, tmp_path_factory):
    deadlines = {"BACKSTOP_HEADER_TIMEOUT": "1", "BACKSTOP_BODY_TIMEOUT": "1"}
    with _server(redis_server, tmp_path_factory, **deadlines) as server:
        yield server


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def envelope(self) -> dict:
        assert self.headers.get("content-type", "").startswith("application/json")
        return json.loads(self.body)["error"]


class Raw:
    """A client socket that sends bytes as given and parses the answers one by one."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes, pieces: int = 1) -> None:
        """Send `data`, in `pieces` parts with a pause between them (1 byte each if 0)."""
        size = 1 if pieces == 0 else -(-len(data) // pieces)
        for start in range(0, len(data), size):
            self.sock.sendall(data[start : start + size])
            time.sleep(0.002 if pieces == 0 else 0.05)

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)  # TimeoutError past WAIT: the test fails
        except ConnectionResetError:
            data = b""
        self.buf += data
        return bool(data)

    def answer(self) -> Answer | None:
        """The next answer (interim ones too), or None if the server closed instead."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                assert not self.buf, f"closed in the middle of an answer: {self.buf!r}"
                return None
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        fields = (line.partition(":") for line in lines)
        headers = {name.strip().lower(): value.strip() for name, _, value in fields}
        status = int(status_line.split()[1])
        if status < 200:
            return Answer(status, headers, b"")
        assert "content-length" in headers, headers
        length = int(headers["content-length"])
        while len(self.buf) < length and self._fill():
            pass
        body, self.buf = self.buf[:length], self.buf[length:]
        return Answer(status, headers, body)

    def closed(self) -> bool:
        """Whether the server closes the connection, with nothing more said, within WAIT."""
        while self._fill():
            pass
        return not self.buf


def head(method: str, path: str, *fields: str, version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: backstop", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def deployment(name: str) -> bytes:
    return json.dumps(samples.deployment_event(name=name)).encode()


AUTH = f"Authorization: Bearer {WEBHOOK_TOKEN}"
JSON = "Content-Type: application/json"
HEALTHZ = head("GET", "/healthz")


def post(*fields: str, version: str = "1.1") -> bytes:
    """The head of an authenticated deployment webhook."""
    return head("POST", "/webhooks/deployments", AUTH, JSON, *fields, version=version)


CHUNKED = post("Transfer-Encoding: chunked")


def post_deployment(name: str, *fields: str) -> bytes:
    body = deployment(name)
    return post(f"Content-Length: {len(body)}", *fields) + body


def chunked(body: bytes, size: int, ext: str = "", trailers: str = "") -> bytes:
    pieces = (body[i : i + size] for i in range(0, len(body), size))
    framed = b"".join(b"%x%s\r\n%s\r\n" % (len(piece), ext.encode(), piece) for piece in pieces)
    return framed + b"0\r\n" + trailers.encode() + b"\r\n"


def recorded(server: Gunicorn, name: str) -> int:
    """How many deployments of shop/`name` the API knows."""
    url = f"{server.url}/api/v1/deployments?namespace=shop&name={name}"
    answer = requests.get(url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=WAIT)
    return len(answer.json()["deployments"])


def assert_serving(server: Gunicorn) -> None:
    """/healthz answers on fresh connections: no thread is held, the loop is alive."""
    for _ in range(3):
        with closing(Raw(server.port)) as probe:
            probe.send(HEALTHZ)
            assert probe.answer().status == 200


def statuses(conn: Raw, count: int) -> list[int]:
    return [conn.answer().status for _ in range(count)]


def unique() -> str:
    return f"smuggled-{uuid.uuid4().hex[:8]}"


# -- well-formed framing: every request answered once, in order, connection reusable --


def test_two_pipelined_probes_in_one_send(web):
    with closing(Raw(web.port)) as conn:
        conn.send(HEALTHZ + HEALTHZ)
        assert statuses(conn, 2) == [200, 200]
        conn.send(HEALTHZ)
        assert statuses(conn, 1) == [200]


def test_pipelined_webhook_then_probe(web):
    name = unique()
    with closing(Raw(web.port)) as conn:
        conn.send(post_deployment(name) + HEALTHZ)
        assert statuses(conn, 2) == [202, 200]
    assert recorded(web, name) == 1  # the check the smuggling tests rely on works


def test_keep_alive_serves_every_request(web):
    names = [unique() for _ in range(3)]
    with closing(Raw(web.port)) as conn:
        for name in names:
            conn.send(HEALTHZ)
            conn.send(post_deployment(name))
        assert statuses(conn, 6) == [200, 202] * 3
    assert [recorded(web, name) for name in names] == [1, 1, 1]


@pytest.mark.parametrize(
    "pieces, size, ext, trailers",
    [
        (1, 16, ';a=b;quoted="x y"', "X-Checksum: 1\r\nX-Other: 2\r\n"),
        (0, 7, "", ""),  # every byte of the body in its own send
        (3, 1000, " ; e", "X-Trailer: t\r\n"),
    ],
)
def test_chunked_bodies(web, pieces, size, ext, trailers):
    name = unique()
    body = chunked(deployment(name), size, ext, trailers)
    with closing(Raw(web.port)) as conn:
        conn.send(CHUNKED)
        conn.send(body, pieces)
        conn.send(HEALTHZ)
        assert statuses(conn, 2) == [202, 200]
    assert recorded(web, name) == 1


def test_zero_length_chunked_body(web):
    with closing(Raw(web.port)) as conn:
        conn.send(CHUNKED + b"0\r\n\r\n" + HEALTHZ)
        first = conn.answer()
        assert first.status == 400 and first.envelope()["code"] == "invalid_json"
        assert statuses(conn, 1) == [200]


@pytest.mark.parametrize("pieces", [2, 5, 0])
def test_content_length_body_in_pieces(web, pieces):
    name = unique()
    with closing(Raw(web.port)) as conn:
        conn.send(post_deployment(name), pieces)
        conn.send(HEALTHZ)
        assert statuses(conn, 2) == [202, 200]
    assert recorded(web, name) == 1


def test_content_length_zero(web):
    zero = "Content-Length: 0"
    with closing(Raw(web.port)) as conn:
        conn.send(post(zero) + head("GET", "/healthz", zero) + HEALTHZ)
        assert statuses(conn, 3) == [400, 200, 200]


def test_a_get_body_is_a_body_not_a_request(web):
    name = unique()
    hidden = post_deployment(name)
    with closing(Raw(web.port)) as conn:
        conn.send(head("GET", "/healthz", f"Content-Length: {len(hidden)}") + hidden + HEALTHZ)
        assert statuses(conn, 2) == [200, 200]
    assert recorded(web, name) == 0


def test_expect_100_continue_is_answered_once(web):
    name = unique()
    body = deployment(name)
    fields = (f"Content-Length: {len(body)}", "Expect: 100-continue")
    with closing(Raw(web.port)) as conn:
        conn.send(post(*fields))
        assert statuses(conn, 1) == [100]  # and nothing else yet: the body is not here
        conn.send(body)
        conn.send(HEALTHZ)
        assert statuses(conn, 2) == [202, 200]  # no second "100 Continue"
    assert recorded(web, name) == 1


def test_expect_100_continue_with_the_body_already_sent(web):
    name = unique()
    with closing(Raw(web.port)) as conn:
        conn.send(post_deployment(name, "Expect: 100-continue") + HEALTHZ)
        answers = statuses(conn, 2)
        if answers[0] == 100:  # allowed, once
            answers = answers[1:] + statuses(conn, 1)
        assert answers == [202, 200]
    assert recorded(web, name) == 1


# -- ambiguous or malformed framing: refused and closed, never a held thread or smuggling --


def _smuggling(name: str) -> dict[str, bytes]:
    """Requests whose framing is ambiguous or broken, each hiding a deployment webhook."""
    hidden, end = post_deployment(name), b"0\r\n\r\n"
    te = "Transfer-Encoding: chunked"

    def bad(*fields: str, body: bytes, version: str = "1.1") -> bytes:
        return post(*fields, version=version) + body + hidden

    return {
        "CL.TE": bad(f"Content-Length: {len(end)}", te, body=end),
        "TE.CL": bad(te, "Content-Length: 3", body=b"%x\r\n" % len(hidden)),
        "two Content-Lengths": bad("Content-Length: 0", f"Content-Length: {len(hidden)}", body=b""),
        "two Content-Lengths, long first": bad(
            f"Content-Length: {len(hidden) + 40}", "Content-Length: 0", body=b""
        ),
        "non-numeric Content-Length": bad("Content-Length: 1e3", body=b""),
        "negative Content-Length": bad("Content-Length: -1", body=b""),
        "signed Content-Length": bad("Content-Length: +0", body=b""),
        "gzip, chunked": bad("Transfer-Encoding: gzip, chunked", body=end),
        "chunked, gzip": bad("Transfer-Encoding: chunked, gzip", body=end),
        "identity": bad("Transfer-Encoding: identity", body=b""),
        "chunked twice": bad(te, te, body=end),
        "chunked HTTP/1.0": bad(te, body=end, version="1.0"),
        "chunk size not hex": bad(te, body=b"zz\r\n"),
        "chunk size 0x0": bad(te, body=b"0x0\r\n\r\n"),
        "chunk size -0": bad(te, body=b"-0\r\n\r\n"),
        "chunk size -6": bad(te, body=b"-6\r\n"),
        "chunk size 1_0": bad(te, body=b"1_0\r\n0123456789abcdef\r\n" + end),
        "chunk without CRLF": bad(te, body=b"2\r\n{}XX" + end),
    }


@pytest.mark.parametrize("case", list(_smuggling("x")))
def test_ambiguous_framing_is_refused_and_closed(web, case):
    name = unique()
    with closing(Raw(web.port)) as conn:
        conn.send(_smuggling(name)[case])
        first = conn.answer()  # within WAIT, or TimeoutError: a hung connection
        if first is not None:
            assert 400 <= first.status < 500 or first.status == 501, first.status
            assert conn.closed()  # the rest of the bytes is never read as a request
        assert_serving(web)  # with the connection still open
    assert recorded(web, name) == 0


# -- limits --


@pytest.mark.parametrize(
    "request_head",
    [
        head("GET", "/healthz", *(f"X-Pad-{i}: {'a' * 7000}" for i in range(10))),
        b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 70_000,  # and still coming
    ],
    ids=["complete", "unfinished"],
)
def test_headers_over_64_kib_are_431(web, request_head):
    with closing(Raw(web.port)) as conn:
        conn.send(request_head)
        answer = conn.answer()
        assert answer.status == 431
        assert answer.envelope()["code"] == "request_header_fields_too_large"
        assert conn.closed()
    assert_serving(web)


@pytest.mark.parametrize(
    "request_start",
    [
        post(f"Content-Length: {LIMIT + 1}") + b"{" * 1000,
        CHUNKED + chunked(b" " * (LIMIT + 10), 4096),
    ],
    ids=["Content-Length", "chunked"],
)
def test_body_over_the_limit_is_413(web, request_start):
    with closing(Raw(web.port)) as conn:
        conn.send(request_start)
        answer = conn.answer()
        assert answer.status == 413 and answer.envelope()["code"] == "payload_too_large"
    assert_serving(web)


def test_stalled_chunked_bodies_hold_no_thread(web):
    """Past the limit on the wire but not in the body (small chunks, more framing than data),
    or past it in the body and then stalled: a thread must never wait for the rest."""
    with closing(Raw(web.port)) as framing, closing(Raw(web.port)) as big:
        framing.send(CHUNKED + b"1\r\n \r\n" * (LIMIT // 5))  # ~78 KiB sent, 13 KiB of body
        big.send(CHUNKED + b"%x\r\n" % (4 * LIMIT) + b" " * LIMIT)  # a chunk over it, stalled
        time.sleep(0.5)  # the event loop has read both
        assert_serving(web)
    with closing(Raw(web.port)) as over:
        over.send(CHUNKED + chunked(b" " * 3 * LIMIT, 4096)[:-5])  # no last chunk
        answer = over.answer()
        assert answer.status == 413 and answer.envelope()["code"] == "payload_too_large"
        assert "x-request-id" in answer.headers  # the app's answer, from the buffered body
        assert_serving(web)


# -- deadlines --


@pytest.mark.parametrize(
    "partial",
    [b"GET /healthz HTTP/1.1\r\nHost: backstop\r\nX-Slow: 1", post_deployment("late")[:-5]],
    ids=["header", "body"],
)
def test_partial_request_past_its_deadline_is_408(hasty, partial):
    with closing(Raw(hasty.port)) as conn:
        conn.send(partial)
        answer = conn.answer()  # the loop checks deadlines once a second: within WAIT
        assert answer.status == 408 and answer.envelope()["code"] == "request_timeout"
        assert answer.headers["connection"] == "close"
        assert conn.closed()


def test_idle_connection_is_closed(hasty):
    with closing(Raw(hasty.port)) as conn:
        assert conn.closed()
