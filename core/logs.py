"""Structured logs for every Backstop process, with the ids that tie them together: JSON
lines (the default, for log collectors) or, for a person at a terminal (`make run` on
one), readable text lines with the same content (BACKSTOP_LOG_FORMAT=text).

A webhook's request id travels with everything it causes. The receiver binds it while it
handles the request; the decision it records keeps it; the jobs it enqueues carry the bound
ids in their meta; the worker binds them again, with its own job id, while it runs the job,
and so on down to the incident job. `grep <request_id>` over receiver and worker logs
therefore finds the webhook, its decision, the rollback and the incident.
"""

import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType

# The ids bound to what this thread (or job) is doing right now: request_id, decision_id,
# rollback_id, job_id. A ContextVar, so gunicorn threads and RQ work horses never mix them.
_trace: ContextVar[Mapping[str, str]] = ContextVar("backstop_trace", default=MappingProxyType({}))

# Loggers whose records become JSON lines: Backstop's own and RQ's (worker, job, scheduler).
LOGGERS = ("backstop", "rq")


def trace() -> dict[str, str]:
    """The ids bound right now (a copy)."""
    return dict(_trace.get())


def bind(**ids: str | None) -> Token:
    """Add ids to the current trace until `unbind(token)`; empty values are ignored."""
    return _trace.set({**_trace.get(), **{key: value for key, value in ids.items() if value}})


def unbind(token: Token) -> None:
    """Restore the trace from before the matching `bind`."""
    _trace.reset(token)


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Add ids to the trace for the duration of a block."""
    token = bind(**ids)
    try:
        yield
    finally:
        unbind(token)


class JsonFormatter(logging.Formatter):
    """Render a record, the bound ids and its `fields` extra as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        # time.strftime is several times cheaper than datetime on this per-request path.
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_trace.get())
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(JsonFormatter):
    """The same content as JsonFormatter, as one line a person reads:
    `12:00:01 info  backstop.decisions  decision skipped: paused  decision_id=... by=backstop`.
    Control characters are escaped, so a value from outside cannot forge a second line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = json.loads(super().format(record))
        clock = entry.pop("time")[11:19]
        level, name, message = entry.pop("level"), entry.pop("logger"), entry.pop("message")
        exception = entry.pop("exception", None)
        pairs = " ".join(f"{key}={_plain(value)}" for key, value in entry.items())
        line = f"{clock} {level:<7} {name}  {_plain(message, quote=False)}"
        line = f"{line}  {pairs}" if pairs else line
        if exception:
            # A traceback reads best as it is; it is Backstop's own text, not a client's.
            line = f"{line}\n{exception}"
        return line


def _plain(value, *, quote: bool = True) -> str:
    """A value on one line: control characters escaped, quoted when it holds spaces."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    escaped = json.dumps(text, ensure_ascii=False)[1:-1]  # escapes \n, \r, \t, \x00...
    if quote and (" " in escaped or not escaped):
        return f'"{escaped}"'
    return escaped


FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


def configure_logging(level: str, log_format: str = "json") -> None:
    """Send Backstop's and RQ's logs to stderr as JSON lines, or text lines
    (`log_format="text"`); idempotent.

    RQ adds its own plain-text handlers only to loggers that have none in effect, so a
    handler on `rq` set up first keeps the worker's own lines in Backstop's format too.
    """
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(FORMATTERS[log_format]())
            logger.addHandler(handler)
        logger.propagate = False
