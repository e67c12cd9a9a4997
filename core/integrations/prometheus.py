"""Prometheus HTTP API (instant and range queries, readiness), through `requests`.

Errors: timeouts, connection errors, 429 and 5xx (Prometheus answers 503 when a query times
out or is cancelled) → TransientError (retry); 400 `bad_data` and 422 `execution` (a bad
expression), any other status, a malformed URL, and a 200 whose body is not the documented
JSON → PermanentError, carrying Prometheus's own error text. Caller mistakes (a naive datetime,
a step giving more than 11,000 points per series) raise ValueError before any request. No
network call happens in the constructor.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from core.errors import PermanentError, TransientError

MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series


@dataclass(frozen=True)
class Sample:
    """One value of an instant query: a vector element, or a scalar (no labels)."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One series of a range query, its points in time order."""

    labels: dict[str, str]
    points: list[tuple[datetime, float]]


def expr_from_generator_url(url: str) -> str | None:
    """The `g0.expr` of an Alertmanager/Prometheus generatorURL, decoded; None if absent."""
    values = parse_qs(urlsplit(url).query).get("g0.expr")
    return values[0] if values else None


def step_for(start: datetime, end: datetime, step: float | None = None) -> float:
    """The step of a range query: `step` checked, or the smallest whole second that fits."""
    seconds = (end - start).total_seconds()
    if seconds < 0:
        raise ValueError("end is before start")
    if step is None:
        # floor(seconds / step) + 1 points must stay within MAX_POINTS.
        return float(math.floor(seconds / MAX_POINTS) + 1)
    if step <= 0:
        raise ValueError("step must be positive")
    if math.floor(seconds / step) + 1 > MAX_POINTS:
        raise ValueError(f"step {step}s gives more than {MAX_POINTS} points per series")
    return float(step)


class Prometheus:
    """Queries against one Prometheus server's HTTP API."""

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, session: requests.Session | None = None
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def query(self, *, expr: str, at: datetime | None = None) -> list[Sample]:
        """Evaluate `expr` at one instant (now by default): a vector or a scalar."""
        params = {"query": expr}
        if at is not None:
            params["time"] = _unix(at)
        data = self._get("/api/v1/query", params)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector":
            return [Sample(item["metric"], float(item["value"][1])) for item in result]
        if kind == "scalar":
            return [Sample({}, float(result[1]))]
        raise PermanentError(f"Prometheus query returned a {kind}, not a vector or scalar")

    def query_range(
        self, *, expr: str, start: datetime, end: datetime, step: float | None = None
    ) -> list[Series]:
        """Evaluate `expr` every `step` seconds from `start` to `end` (see step_for)."""
        params = {
            "query": expr,
            "start": _unix(start),
            "end": _unix(end),
            "step": repr(step_for(start, end, step)),
        }
        data = self._get("/api/v1/query_range", params)
        if data.get("resultType") != "matrix":
            raise PermanentError(f"Prometheus range query returned a {data.get('resultType')}")
        return [
            Series(
                item["metric"],
                [(datetime.fromtimestamp(t, UTC), float(v)) for t, v in item["values"]],
            )
            for item in data["result"]
        ]

    def query_range_chunked(
        self, *, expr: str, start: datetime, end: datetime, step: float
    ) -> list[Series]:
        """query_range over any length: consecutive requests of at most MAX_POINTS points
        each (every point exactly once), their series merged by label set."""
        if step <= 0:
            raise ValueError("step must be positive")
        if end < start:
            raise ValueError("end is before start")
        span = timedelta(seconds=step * (MAX_POINTS - 1))
        merged: dict[tuple, Series] = {}
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(chunk_start + span, end)
            for series in self.query_range(expr=expr, start=chunk_start, end=chunk_end, step=step):
                key = tuple(sorted(series.labels.items()))
                if key in merged:
                    merged[key].points.extend(series.points)
                else:
                    merged[key] = Series(series.labels, list(series.points))
            chunk_start = chunk_end + timedelta(seconds=step)
        return list(merged.values())

    def ready(self) -> bool:
        """True when Prometheus says it is ready to serve queries; never raises."""
        try:
            response = self.session.get(self.base_url + "/-/ready", timeout=self.timeout)
        except requests.RequestException:
            return False
        return response.status_code == 200

    def _get(self, path: str, params: dict[str, str]) -> Any:
        """The answer's `data`: decoded JSON, its shape whatever Prometheus sent."""
        try:
            response = self.session.get(self.base_url + path, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            # InvalidURL, MissingSchema and friends are also ValueErrors: retrying cannot help.
            error = PermanentError if isinstance(exc, ValueError) else TransientError
            raise error(f"Prometheus request failed: {type(exc).__name__}") from exc
        body = _json(response)
        if response.status_code == 200 and body.get("status") == "success":
            return body.get("data", {})
        detail = f"Prometheus {response.status_code}: {_error_text(response, body)}"
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(detail)
        raise PermanentError(detail)


def _unix(moment: datetime) -> str:
    # A naive datetime would silently be read as local time.
    if moment.tzinfo is None:
        raise ValueError("datetimes given to Prometheus must be timezone-aware")
    return repr(moment.timestamp())


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_text(response: requests.Response, body: dict) -> str:
    if "error" in body:
        return f"{body.get('errorType', 'error')}: {body['error']}"
    # Not Prometheus's JSON (a proxy's page, say): a short excerpt is enough to diagnose.
    return response.text[:200] or response.reason or "no body"
