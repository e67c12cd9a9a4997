"""A KPI query evaluated against Prometheus and judged against its threshold."""

import math
import operator

from config.policy import VerifyQuery
from core.errors import TransientError
from core.integrations.prometheus import Prometheus

COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def holds(query: VerifyQuery, values: list[float]) -> bool:
    """Does every series' value satisfy the query's comparison with its threshold?"""
    return all(COMPARE[query.comparison](v, query.threshold) for v in values)


def evaluate(prometheus: Prometheus, expr: str) -> dict:
    """One evaluation now: {"values": [...]} (None when no data), plus "error" when
    Prometheus could not answer."""
    try:
        samples = prometheus.query(expr=expr)
    except TransientError as exc:
        return {"values": None, "error": str(exc)}
    values = [s.value for s in samples if not math.isnan(s.value)]
    return {"values": values or None}
