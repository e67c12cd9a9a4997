"""R8: slow clients do not starve the receiver (real gunicorn, real Redis).

More slow sockets than the server has workers x threads send their headers, or a 100 KB
body, a byte at a time while a client keeps posting webhooks and probing /healthz: every
webhook is accepted and every probe answered, and the server closes each slow socket by
its deadline (receiver/webworker.py) instead of waiting for it.
"""

import json
import socket
import threading
import time

import pytest
import requests

from testbed.servers import Gunicorn
from tests import samples
from tests.conftest import WEBHOOK_TOKEN

WORKERS, THREADS = 2, 2
SLOW_HEADERS, SLOW_BODIES = 12, 4  # 16 slow sockets > 2 workers x 2 threads
HEADER_TIMEOUT, BODY_TIMEOUT = 3, 4
ROUNDS = 12  # each round: one webhook and one probe, a second apart
HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}


@pytest.fixture
def web(redis_url, receiver_env, tmp_path):
    """The receiver with few workers and threads and short deadlines, so that a handful of
    slow sockets could hold every thread and the test stays short."""
    env = {
        **receiver_env,
        "REDIS_URL": redis_url,
        "BACKSTOP_WEB_THREADS": str(THREADS),
        "BACKSTOP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "BACKSTOP_BODY_TIMEOUT": str(BODY_TIMEOUT),
    }
    log = tmp_path / "gunicorn.log"
    with Gunicorn("receiver.app:create_app()", env, workers=WORKERS, log=log) as server:
        yield server


class Trickler(threading.Thread):
    """One socket that sends `head` then `body` a byte a second, until the server closes
    it or `give_up` seconds pass; records whether, and after how long, the server closed."""

    def __init__(self, port: int, head: bytes, body: bytes, give_up: float):
        super().__init__(daemon=True)
        self.port, self.data, self.give_up = port, head + body, give_up
        self.prefix = 0 if not body else len(head)  # slow from the first byte, or the body's
        self.closed_after: float | None = None
        self.answer = b""

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            began = time.monotonic()
            sock.sendall(self.data[: self.prefix])
            sock.settimeout(1.0)
            for byte in self.data[self.prefix :]:
                if time.monotonic() - began > self.give_up:
                    return
                try:
                    sock.sendall(bytes([byte]))
                    self.answer = sock.recv(4096)
                    if self.answer == b"":  # closed without an answer
                        break
                except TimeoutError:
                    continue  # nothing from the server yet: next byte
                except OSError:
                    break  # reset by the server
                # An answer (408) arrived: wait for the close that follows it.
                sock.settimeout(5.0)
                try:
                    while data := sock.recv(4096):
                        self.answer += data
                except OSError:
                    pass
                break
            self.closed_after = time.monotonic() - began


def slow_header() -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: backstop\r\n" + b"X-Slow: " + b"a" * 200


def slow_body_head(size: int) -> bytes:
    return (
        b"POST /webhooks/alertmanager HTTP/1.1\r\nHost: backstop\r\n"
        b"Authorization: Bearer " + WEBHOOK_TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + str(size).encode() + b"\r\n\r\n"
    )


def test_slow_clients_do_not_starve_webhooks_or_probes(web):
    give_up = HEADER_TIMEOUT + BODY_TIMEOUT + 20
    body = b"{" + b" " * (100 * 1024 - 2) + b"}"
    slow = [Trickler(web.port, slow_header(), b"", give_up) for _ in range(SLOW_HEADERS)]
    slow += [
        Trickler(web.port, slow_body_head(len(body)), body, give_up) for _ in range(SLOW_BODIES)
    ]
    for trickler in slow:
        trickler.start()
    time.sleep(1.0)  # every slow socket is connected and trickling

    statuses = {"webhook": [], "probe": []}
    for index in range(ROUNDS):
        webhook = samples.alertmanager(samples.am_alert(fingerprint=f"slow-{index}"))
        statuses["webhook"].append(_status("post", f"{web.url}/webhooks/alertmanager", webhook))
        statuses["probe"].append(_status("get", f"{web.url}/healthz"))
        time.sleep(1.0)
    for trickler in slow:
        trickler.join(give_up + 10)

    assert statuses == {"webhook": [202] * ROUNDS, "probe": [200] * ROUNDS}
    # Closed by the server at its deadline (checked once a second), not given up on.
    header_closed = [t.closed_after for t in slow[:SLOW_HEADERS]]
    body_closed = [t.closed_after for t in slow[SLOW_HEADERS:]]
    assert None not in header_closed + body_closed
    assert max(header_closed) < HEADER_TIMEOUT + 3
    assert max(body_closed) < BODY_TIMEOUT + 3  # the headers came at once
    # ...with a 408 in Backstop's error envelope, so a client knows why.
    for trickler in slow:
        head, _, body = trickler.answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert json.loads(body)["error"]["code"] == "request_timeout"


def _status(method: str, url: str, body: dict | None = None) -> int | str:
    """The status of one request, or the name of the error that stopped it."""
    try:
        data = json.dumps(body) if body is not None else None
        return requests.request(method, url, data=data, headers=HEADERS, timeout=5).status_code
    except requests.RequestException as error:
        return type(error).__name__
