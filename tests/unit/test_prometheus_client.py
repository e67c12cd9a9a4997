"""The Prometheus client against a scripted HTTP server on loopback: parsing and error mapping."""

import json
import math
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from cli.localredis import free_port
from core.errors import PermanentError, TransientError
from core.integrations.prometheus import (
    Prometheus,
    Sample,
    Series,
    expr_from_generator_url,
    step_for,
)

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        fake = self.server.fake
        url = urlsplit(self.path)
        fake.requests.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
        if fake.stalled.is_set():
            fake.released.wait(10)  # longer than any client timeout in these tests
            return
        status, body = fake.answer
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


class FakePrometheus:
    """Answers every request with `answer` (status, JSON or text) and records what was asked."""

    def __init__(self):
        self.answer: tuple[int, object] = (200, {"status": "success", "data": {}})
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.stalled = threading.Event()
        self.released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.fake = self
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def success(self, result_type: str, result) -> None:
        self.answer = (
            200,
            {"status": "success", "data": {"resultType": result_type, "result": result}},
        )


@pytest.fixture
def fake():
    server = FakePrometheus()
    server.thread.start()
    yield server
    server.released.set()
    server.server.shutdown()
    server.server.server_close()
    server.thread.join()


@pytest.fixture
def prom(fake):
    return Prometheus(fake.url + "/", timeout=2.0)


def test_vector_with_labels_and_time(fake, prom):
    fake.success(
        "vector",
        [
            {"metric": {"__name__": "up", "job": "web"}, "value": [1764151200.5, "1"]},
            {"metric": {"job": "db"}, "value": [1764151200.5, "0.25"]},
        ],
    )
    samples = prom.query(expr="up", at=T0)
    assert samples == [Sample({"__name__": "up", "job": "web"}, 1.0), Sample({"job": "db"}, 0.25)]
    assert fake.requests == [("/api/v1/query", {"query": "up", "time": repr(T0.timestamp())})]


def test_no_time_means_now_and_an_empty_vector_is_no_samples(fake, prom):
    fake.success("vector", [])
    assert prom.query(expr='up{job="none"}') == []
    assert fake.requests == [("/api/v1/query", {"query": 'up{job="none"}'})]


def test_scalar(fake, prom):
    fake.success("scalar", [1764151200, "42.5"])
    assert prom.query(expr="scalar(42.5)") == [Sample({}, 42.5)]


def test_special_values(fake, prom):
    fake.success(
        "vector",
        [{"metric": {"k": v}, "value": [1, v]} for v in ("NaN", "+Inf", "-Inf")],
    )
    nan, plus, minus = (sample.value for sample in prom.query(expr="x"))
    assert math.isnan(nan)
    assert plus == math.inf
    assert minus == -math.inf


def test_matrix_from_an_instant_query_is_permanent(fake, prom):
    fake.success("matrix", [{"metric": {}, "values": [[1, "1"]]}])
    with pytest.raises(PermanentError, match="matrix"):
        prom.query(expr="up[5m]")


def test_naive_datetime_is_refused_before_any_request(fake, prom):
    with pytest.raises(ValueError, match="timezone"):
        prom.query(expr="up", at=datetime(2026, 11, 26, 10, 0))
    assert fake.requests == []


def test_query_range_parses_points_and_sends_the_window(fake, prom):
    fake.success(
        "matrix",
        [
            {
                "metric": {"job": "web"},
                "values": [[T0.timestamp(), "1"], [T0.timestamp() + 15, "NaN"]],
            }
        ],
    )
    [series] = prom.query_range(expr="up", start=T0, end=T0 + timedelta(minutes=1), step=15)
    assert isinstance(series, Series)
    assert series.labels == {"job": "web"}
    (first, one), (second, nan) = series.points
    assert (first, one) == (T0, 1.0)
    assert second == T0 + timedelta(seconds=15)
    assert second.tzinfo is not None
    assert math.isnan(nan)
    path, params = fake.requests[0]
    assert path == "/api/v1/query_range"
    assert float(params["start"]) == T0.timestamp()
    assert float(params["end"]) == T0.timestamp() + 60
    assert float(params["step"]) == 15


@pytest.mark.parametrize(
    ("seconds", "step"),
    [(0, 1), (60, 1), (10_999, 1), (11_000, 2), (21_999, 2), (22_000, 3), (86_400, 8)],
)
def test_chosen_step_is_the_smallest_whole_second_within_11000_points(seconds, step):
    chosen = step_for(T0, T0 + timedelta(seconds=seconds))
    assert chosen == step
    assert math.floor(seconds / chosen) + 1 <= 11_000
    if step > 1:
        assert math.floor(seconds / (step - 1)) + 1 > 11_000


def test_chosen_step_is_sent(fake, prom):
    fake.success("matrix", [])
    assert prom.query_range(expr="up", start=T0, end=T0 + timedelta(days=1)) == []
    assert float(fake.requests[0][1]["step"]) == 8


def test_a_step_giving_too_many_points_is_refused_before_any_request(fake, prom):
    end = T0 + timedelta(seconds=11_000)
    with pytest.raises(ValueError, match="11000 points"):
        prom.query_range(expr="up", start=T0, end=end, step=1)
    assert fake.requests == []
    assert step_for(T0, T0 + timedelta(seconds=10_999), 1) == 1


@pytest.mark.parametrize(
    ("end", "step", "message"),
    [(T0 - timedelta(seconds=1), None, "before start"), (T0, 0, "positive"), (T0, -5, "positive")],
)
def test_bad_windows_are_value_errors(end, step, message):
    with pytest.raises(ValueError, match=message):
        step_for(T0, end, step)


@pytest.mark.parametrize(
    ("status", "error_type", "message"),
    [
        (400, "bad_data", "1:6: parse error: unclosed left parenthesis"),
        (422, "execution", "expanding series: query timed out"),
        (404, "not_found", "no such endpoint"),
    ],
)
def test_client_errors_are_permanent_with_prometheus_text(fake, prom, status, error_type, message):
    fake.answer = (status, {"status": "error", "errorType": error_type, "error": message})
    with pytest.raises(PermanentError) as raised:
        prom.query(expr="rate(")
    assert str(raised.value) == f"Prometheus {status}: {error_type}: {message}"


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_throttling_and_server_errors_are_transient(fake, prom, status):
    fake.answer = (status, {"status": "error", "errorType": "unavailable", "error": "try later"})
    with pytest.raises(TransientError, match=f"Prometheus {status}: unavailable: try later"):
        prom.query_range(expr="up", start=T0, end=T0 + timedelta(minutes=5))


def test_a_proxy_page_instead_of_json(fake, prom):
    fake.answer = (502, "<html>Bad Gateway</html>")
    with pytest.raises(TransientError, match="Bad Gateway"):
        prom.query(expr="up")
    fake.answer = (200, "<html>login</html>")
    with pytest.raises(PermanentError, match="Prometheus 200: <html>login"):
        prom.query(expr="up")


def test_connection_refused_is_transient():
    prom = Prometheus(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(TransientError, match="ConnectionError"):
        prom.query(expr="up")
    assert prom.ready() is False


def test_timeout_is_transient(fake):
    fake.stalled.set()
    prom = Prometheus(fake.url, timeout=0.2)
    with pytest.raises(TransientError, match="Timeout"):
        prom.query(expr="up")
    assert prom.ready() is False


def test_a_malformed_url_is_permanent():
    with pytest.raises(PermanentError, match="MissingSchema"):
        Prometheus("prometheus.example/api").query(expr="up")


@pytest.mark.parametrize(("status", "ready"), [(200, True), (503, False)])
def test_ready(fake, prom, status, ready):
    fake.answer = (status, "Prometheus Server is Ready.")
    assert prom.ready() is ready
    assert fake.requests[0][0] == "/-/ready"


@pytest.mark.parametrize(
    ("url", "expr"),
    [
        (
            "http://prometheus:9090/graph?g0.expr=sum%28rate%28http_requests_total%7Bcode%3D~"
            "%225..%22%7D%5B5m%5D%29%29+%3E+0.1&g0.tab=1",
            'sum(rate(http_requests_total{code=~"5.."}[5m])) > 0.1',
        ),
        ("http://127.0.0.1:9090/graph?g0.tab=1&g0.expr=up%20%3D%3D%200", "up == 0"),
        ("http://grafana:3000/alerting/grafana/abc/view?orgId=1", None),
        ("http://prometheus:9090/graph?g0.expr=&g0.tab=1", None),
        ("", None),
    ],
)
def test_expr_from_generator_url(url, expr):
    assert expr_from_generator_url(url) == expr
