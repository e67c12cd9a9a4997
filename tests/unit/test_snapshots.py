"""Metric snapshots: PNG rendering, CSV, query selection, capture, signed links, and the store."""

import io
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
from PIL import Image

from core.errors import PermanentError, TransientError
from core.integrations.prometheus import Series
from core.snapshots import MAX_BYTES, Snapshot, sign, verify_signature
from core.store import keys
from core.store.snapshots import SnapshotStore
from workers.snapshots import (
    MARKER_COLORS,
    THRESHOLD_COLOR,
    Marker,
    SnapshotQuery,
    capture,
    queries_for,
    render_png,
    to_csv,
)

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
START, END = T0, T0 + timedelta(hours=2)
DEPLOYED = T0 + timedelta(minutes=30)
MARKERS = [
    Marker("deployment start", DEPLOYED),
    Marker("alert start", DEPLOYED + timedelta(minutes=5)),
    Marker("rollback start", DEPLOYED + timedelta(minutes=5, seconds=10)),
    Marker("verified", DEPLOYED + timedelta(minutes=9)),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIRST_SERIES_COLOR = (0x1F, 0x77, 0xB4)  # matplotlib's default first line colour
SECRET = b"snapshot-link-secret"


def series(n=3, *, points=481, step=15, value=lambda i, k: 0.01 * (i + 1) + (k % 10) / 1000):
    return [
        Series(
            {"__name__": "x", "job": "checkout", "region": f"r{i}"},
            [(START + timedelta(seconds=step * k), value(i, k)) for k in range(points)],
        )
        for i in range(n)
    ]


def render(data, **overrides):
    args = {
        "title": "High5xxRatio",
        "unit": "ratio",
        "threshold": 0.05,
        "markers": MARKERS,
        "start": START,
        "end": END,
    }
    return render_png(data, **{**args, **overrides})


def image(png: bytes) -> Image.Image:
    assert png.startswith(PNG_SIGNATURE)
    picture = Image.open(io.BytesIO(png))
    picture.load()
    return picture.convert("RGB")


def rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def has_color(picture: Image.Image, color: tuple[int, int, int], tolerance=12) -> bool:
    return any(
        all(abs(a - b) <= tolerance for a, b in zip(pixel, color, strict=True))
        for _, pixel in picture.getcolors(maxcolors=1_000_000)
    )


# -- render_png ----------------------------------------------------------------------------


def test_png_is_1000_by_500_and_shows_series_threshold_and_markers():
    picture = image(render(series()))
    assert picture.size == (1000, 500)
    assert len(picture.getcolors(maxcolors=1_000_000)) > 50  # not a blank canvas
    assert has_color(picture, FIRST_SERIES_COLOR)
    assert has_color(picture, rgb(THRESHOLD_COLOR))
    for color in MARKER_COLORS:
        assert has_color(picture, rgb(color))


def test_many_series_still_render():
    picture = image(render(series(40, points=200)))
    assert picture.size == (1000, 500)
    assert has_color(picture, FIRST_SERIES_COLOR)


def test_empty_data_is_still_a_valid_png():
    picture = image(render([], threshold=None, markers=[]))
    assert picture.size == (1000, 500)
    assert not has_color(picture, FIRST_SERIES_COLOR)
    assert len(picture.getcolors(maxcolors=1_000_000)) > 2  # axes, ticks, "no data"
    nan_only = [Series({"job": "x"}, [(T0, float("nan"))])]
    assert image(render(nan_only)).size == (1000, 500)


def test_gaps_nan_and_inf_do_not_break_rendering():
    points = [(START + timedelta(seconds=15 * k), float(k)) for k in range(100) if k < 40 or k > 60]
    points[5] = (points[5][0], float("nan"))
    points[6] = (points[6][0], float("inf"))
    picture = image(render([Series({}, points), Series({"a": "b"}, points[:1])]))
    assert has_color(picture, FIRST_SERIES_COLOR)


def test_markers_outside_the_window_are_tolerated():
    early = [Marker("deployment start", START - timedelta(hours=1))]
    assert image(render(series(1), markers=early)).size == (1000, 500)


def test_end_must_be_after_start():
    with pytest.raises(ValueError):
        render(series(1), end=START)


def test_dollar_signs_in_titles_and_legends_are_text_not_mathtext():
    # `$x^$` is broken mathtext, which raised while saving: titles and series labels are
    # untrusted (alert expressions, label values, KPI names), and must print as they are.
    data = [Series({"path": "/a$x^$"}, [(START, 1.0)]), Series({"path": "/b"}, [(END, 2.0)])]
    picture = image(render(data, title='cost $\\frac$ per $x^$ request\nq{p=~"a$|b$"}'))
    assert picture.size == (1000, 500) and has_color(picture, FIRST_SERIES_COLOR)


# -- to_csv --------------------------------------------------------------------------------


def test_csv_has_one_row_per_point_with_iso_utc_times_and_telling_labels():
    data = [
        Series({"job": "api", "region": "eu"}, [(T0, 0.5), (T0 + timedelta(seconds=15), 1.25)]),
        Series({"job": "api", "region": "us"}, [(T0, float("nan"))]),
    ]
    assert to_csv(data).decode().splitlines() == [
        "timestamp,series,value",
        "2026-11-26T10:00:00.000Z,region=eu,0.5",
        "2026-11-26T10:00:15.000Z,region=eu,1.25",
        "2026-11-26T10:00:00.000Z,region=us,nan",
    ]


def test_csv_of_one_series_names_all_its_labels_and_quotes_commas():
    data = [Series({"__name__": "x", "job": "api", "code": "500"}, [(T0, 2.0)])]
    assert (
        to_csv(data).decode().splitlines()[1] == '2026-11-26T10:00:00.000Z,"code=500, job=api",2.0'
    )


def test_csv_of_nothing_is_the_header():
    assert to_csv([]) == b"timestamp,series,value\n"


# -- signed links --------------------------------------------------------------------------


def query(link: str) -> tuple[str, str]:
    match = re.fullmatch(r"exp=(\d+)&sig=([0-9a-f]{64})", link)
    assert match
    return match[1], match[2]


def test_signed_link_verifies_until_it_expires():
    exp, sig = query(sign("abc_-1", secret=SECRET, expires=1_800_000_000))
    assert exp == "1800000000"
    assert verify_signature("abc_-1", exp, sig, secret=SECRET, now=1_799_999_999)
    assert not verify_signature("abc_-1", exp, sig, secret=SECRET, now=1_800_000_000)


def test_tampered_links_are_rejected():
    exp, sig = query(sign("abc", secret=SECRET, expires=1_800_000_000))
    now = 1_700_000_000
    assert not verify_signature("abd", exp, sig, secret=SECRET, now=now)
    assert not verify_signature("abc", "1800000001", sig, secret=SECRET, now=now)
    assert not verify_signature(
        "abc", exp, sig[:-1] + ("0" if sig[-1] != "0" else "1"), secret=SECRET, now=now
    )
    assert not verify_signature("abc", exp, sig, secret=b"other", now=now)


@pytest.mark.parametrize(
    ("exp", "sig"),
    [
        ("", "0" * 64),
        ("soon", "0" * 64),
        ("-1", "0" * 64),
        ("1e12", "0" * 64),
        ("\uff11\uff18" + "\uff10" * 8, "0" * 64),  # fullwidth digits pass str.isdigit()
        ("1800000000", ""),
        ("1800000000", "0" * 63),
        ("1800000000", "g" * 64),
        ("1800000000", "0" * 65),
        (None, None),
    ],
)
def test_malformed_links_are_rejected(exp, sig):
    assert not verify_signature("abc", exp, sig, secret=SECRET, now=1_700_000_000)


def test_uppercase_signature_is_rejected_and_empty_secret_refused():
    exp, sig = query(sign("abc", secret=SECRET, expires=1_800_000_000))
    assert not verify_signature("abc", exp, sig.upper(), secret=SECRET, now=1_700_000_000)
    assert not verify_signature("abc", exp, sig, secret=b"", now=1_700_000_000)
    with pytest.raises(ValueError):
        sign("abc", secret=b"", expires=1_800_000_000)


# -- queries_for ---------------------------------------------------------------------------


@dataclass
class VerifyQuery:
    name: str
    query: str
    comparison: str = "<"
    threshold: float = 0.05
    unit: str = ""


RATIO = 'sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'


def test_verify_queries_come_first_and_keep_their_settings():
    verify = [VerifyQuery("5xx ratio", RATIO, "<", 0.05, "ratio")]
    assert queries_for(verify, []) == [SnapshotQuery("5xx ratio", RATIO, 0.05, "<", "ratio")]


def test_alert_expressions_are_graphed_without_their_comparison():
    (alert,) = queries_for([], [("HighLatency", "histogram_quantile(0.99, x) > 0.5")])
    assert alert == SnapshotQuery("HighLatency", "histogram_quantile(0.99, x)", 0.5, "<=")
    (low,) = queries_for([], [("LowThroughput", "sum(rate(x[5m])) < bool 1e2")])
    assert (low.expr, low.threshold, low.comparison) == ("sum(rate(x[5m]))", 100.0, ">=")


def test_alert_expressions_that_cannot_be_split_safely_are_kept_whole():
    for expr in ("a > 1 and b > 2", "up unless down == 0", "x * 2", 'x{a="> 5"}'):
        (alert,) = queries_for([], [("A", expr)])
        assert (alert.expr, alert.threshold, alert.comparison) == (expr, None, None)


def test_duplicate_expressions_are_graphed_once():
    verify = [VerifyQuery("5xx ratio", RATIO, unit="ratio")]
    reformatted = RATIO.replace(" / ", "/").replace("(", "( ") + " > 0.05"
    alerts = [("High5xx", reformatted), ("High5xxAgain", RATIO + " > 0.1"), ("NoExpr", "")]
    assert [q.name for q in queries_for(verify, alerts)] == ["5xx ratio"]


def test_whitespace_inside_label_values_tells_expressions_apart():
    alerts = [("A", 'x{path="/a b"} > 1'), ("B", 'x{path="/ab"} > 1')]
    assert [q.name for q in queries_for([], alerts)] == ["A", "B"]


# -- capture -------------------------------------------------------------------------------


class ScriptedPrometheus:
    """Answers query_range per expression: a list of Series, or an exception to raise."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.calls: list[dict] = []

    def query_range(self, *, expr, start, end, step=None):
        self.calls.append({"expr": expr, "start": start, "end": end, "step": step})
        answer = self.answers[expr]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_capture_keeps_the_other_snapshots_when_queries_fail():
    prometheus = ScriptedPrometheus(
        {
            "ok": series(2, points=10),
            "down": TransientError("Prometheus 503: timeout"),
            "bad": PermanentError("Prometheus 400: bad_data: parse error"),
        }
    )
    queries = [
        SnapshotQuery("ok", "ok", 0.05, "<", "ratio"),
        SnapshotQuery("down", "down"),
        SnapshotQuery("bad", "bad"),
    ]
    snapshots = capture(prometheus, queries, start=START, end=END, markers=MARKERS)

    assert [s.name for s in snapshots] == ["ok", "down", "bad"]
    ok, down, bad = snapshots
    assert (ok.error, ok.points, ok.expr) == ("", 20, "ok")
    assert ok.csv == to_csv(series(2, points=10))
    assert down.error == "Prometheus 503: timeout" and down.points == 0
    assert bad.error == "Prometheus 400: bad_data: parse error"
    assert down.csv == b"timestamp,series,value\n"
    for snapshot in snapshots:
        assert image(snapshot.png).size == (1000, 500)
        assert re.fullmatch(r"[A-Za-z0-9_-]{20,}", snapshot.id)
    assert len({s.id for s in snapshots}) == 3
    # About a thousand points per series: readable data, far under Prometheus's 11,000.
    window = (END - START).total_seconds()
    assert prometheus.calls[0] == {
        "expr": "ok",
        "start": START,
        "end": END,
        "step": max(1.0, math.ceil(window / 1000)),
    }


def test_capture_keeps_whole_series_within_the_size_bound():
    big = series(40, points=11_000, step=1)  # about 20 MB of CSV
    prometheus = ScriptedPrometheus({"pods": big})
    (snapshot,) = capture(
        prometheus, [SnapshotQuery("pods", "pods")], start=START, end=END, markers=[]
    )
    assert snapshot.size <= MAX_BYTES
    assert snapshot.points == 40 * 11_000
    kept = len(snapshot.csv.decode().splitlines()) - 1
    assert kept and kept % 11_000 == 0
    assert f"{kept // 11_000} of 40 series" in snapshot.error
    SnapshotStore(fakeredis.FakeRedis()).save(snapshot)


# -- SnapshotStore -------------------------------------------------------------------------


@pytest.fixture
def store():
    return SnapshotStore(fakeredis.FakeRedis())


def snapshot(**overrides) -> Snapshot:
    values = {
        "id": "snap1",
        "name": "5xx ratio",
        "expr": RATIO,
        "png": PNG_SIGNATURE + b"x",
        "csv": b"timestamp,series,value\n",
        "points": 7,
        "error": "",
    }
    return Snapshot(**{**values, **overrides})


def test_store_keeps_png_csv_and_meta_for_thirty_days(store):
    store.save(snapshot(error="partial"))
    assert store.png("snap1") == PNG_SIGNATURE + b"x"
    assert store.csv("snap1") == b"timestamp,series,value\n"
    assert store.meta("snap1") == {
        "name": "5xx ratio",
        "expr": RATIO,
        "points": 7,
        "error": "partial",
    }
    ttl = store.redis.ttl(keys.SNAPSHOT + "snap1")
    assert timedelta(days=30) - timedelta(minutes=1) < timedelta(seconds=ttl) <= timedelta(days=30)


def test_store_honours_a_given_ttl_and_misses_are_none(store):
    store.save(snapshot(), ttl=timedelta(hours=1))
    assert 3500 < store.redis.ttl(keys.SNAPSHOT + "snap1") <= 3600
    assert store.png("nope") is None and store.csv("nope") is None and store.meta("nope") is None


def test_store_refuses_snapshots_over_two_mebibytes(store):
    with pytest.raises(ValueError):
        store.save(snapshot(csv=b"x" * MAX_BYTES))
    assert store.meta("snap1") is None
    store.save(snapshot(png=b"p" * (MAX_BYTES // 2), csv=b"c" * (MAX_BYTES // 4)))
    assert len(store.png("snap1")) == MAX_BYTES // 2
