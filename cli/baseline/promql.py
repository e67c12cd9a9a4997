"""Reading existing rule expressions, just enough to lint them.

There is no PromQL parser for Python, so this reads the shapes alerting rules take: a
trailing comparison with a number (`<expr> > 0.01`), aggregations with `by`/`without`
clauses (prefix or postfix), range selectors, equality matchers and metric names. String
literals are blanked first so that text inside label values never counts as syntax.
"""

import re

from config.durations import parse_duration

AGGREGATIONS = "sum|avg|min|max|count|group|stddev|stdvar|topk|bottomk|quantile|count_values|limitk"
_AGGREGATION = re.compile(rf"\b({AGGREGATIONS})\s*(?=\(|\bby\b|\bwithout\b)")
_CLAUSE = re.compile(r"\s*\b(by|without)\s*\(([^)]*)\)")
_COMPARISON = re.compile(
    r"(>=|<=|==|!=|>|<)\s*(?:bool\s+)?([-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?|inf))\s*$",
    re.IGNORECASE,
)
_RANGE = re.compile(r"\[\s*([0-9smhdwy]+)\s*(?::[0-9smhdwy]*)?\s*\]")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_NAME = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{|\[)")
_SET_OPERATOR = re.compile(r"\b(and|or|unless)\b")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')


def blank_strings(expr: str) -> str:
    """`expr` with the inside of every string literal replaced by underscores."""
    return _STRING.sub(
        lambda match: match.group(0)[0] + "_" * (len(match.group(0)) - 2) + match.group(0)[-1], expr
    )


def split_comparison(expr: str) -> tuple[str, str, float] | None:
    """(left side, operator, number) of a trailing top-level `<expr> <op> <number>`."""
    masked = blank_strings(expr)
    match = _COMPARISON.search(masked)
    if match is None or _depth(masked, match.start()) != 0:
        return None
    left = expr[: match.start()].strip()
    if not left or _top_level_set_operator(masked[: match.start()]):
        return None  # `a > 1 and b > 2`: the comparison binds tighter than `and`
    return left, match.group(1), float(match.group(2))


def kept_labels(expr: str) -> set[str] | None:
    """Labels every aggregation of `expr` keeps: None when nothing aggregates (all kept).

    `without (...)` keeps an unknown set, so it is treated as keeping everything not listed:
    it is reported as None only when it is the sole aggregation.
    """
    masked = blank_strings(expr)
    kept: set[str] | None = None
    for match in _AGGREGATION.finditer(masked):
        labels = _clause_labels(masked, match.end())
        if labels is None:  # `without`: keeps what it does not name
            continue
        kept = labels if kept is None else kept & labels
    return kept


def aggregates(expr: str) -> bool:
    """Whether any aggregation operator appears in `expr`."""
    return _AGGREGATION.search(blank_strings(expr)) is not None


def largest_range(expr: str) -> float | None:
    """The longest range selector (`[5m]`, `[1h:1m]`) in seconds, or None."""
    masked = blank_strings(expr)
    seconds = [parse_duration(found).total_seconds() for found in _RANGE.findall(masked)]
    return max(seconds) if seconds else None


def equality_matchers(expr: str) -> dict[str, str]:
    """label="value" matchers of `expr` (the last one wins when a label repeats)."""
    return {name: value for name, value in _MATCHER.findall(expr)}


def metric_names(expr: str) -> list[str]:
    """Names selected with braces or a range (`foo{...}`, `foo[5m]`), in order, once each."""
    masked = blank_strings(expr)
    found = [name for name, _ in _NAME.findall(masked) if name not in ("by", "without")]
    return list(dict.fromkeys(found))


def _clause_labels(masked: str, position: int) -> set[str] | None:
    # The clause comes right after the operator (`sum by (a) (...)`) or right after its
    # parenthesised argument (`sum(...) by (a)`); no clause keeps no label.
    clause = _CLAUSE.match(masked, position)
    if clause is None and position < len(masked) and masked[position] == "(":
        clause = _CLAUSE.match(masked, _closing(masked, position) + 1)
    if clause is None:
        return set()
    if clause.group(1) == "without":
        return None
    return {label.strip() for label in clause.group(2).split(",") if label.strip()}


def _closing(text: str, opening: int) -> int:
    depth = 0
    for index in range(opening, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    return len(text) - 1


def _top_level_set_operator(masked: str) -> bool:
    return any(_depth(masked, found.start()) == 0 for found in _SET_OPERATOR.finditer(masked))


def _depth(text: str, position: int) -> int:
    return text[:position].count("(") - text[:position].count(")")
