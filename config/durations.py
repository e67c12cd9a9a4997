"""Human durations ("90s", "2m", "1h30m", "7d") as a pydantic type."""

import functools
import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> timedelta:
    """Parse "1h30m", "45s", a number of seconds, or a timedelta; reject anything else."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '5m'")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("a duration must be a number of seconds or a string like '5m'")
    text = value.strip()
    if not text or _PART.sub("", text):
        raise ValueError(f"invalid duration {value!r}: use e.g. '30s', '2m', '1h30m', '7d'")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


# Remembered: every decision records its policy's durations (core/rules.py), a handful of
# values rendered again and again (50 calls per webhook of ten new alerts).
@functools.lru_cache(maxsize=1024)
def format_duration(value: timedelta) -> str:
    """Render a timedelta in the shortest exact form ("2m", "1h30m", "1.5s")."""
    seconds = value.total_seconds()
    if seconds and seconds != int(seconds):
        return f"{seconds:g}s"
    remaining = int(seconds)
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_UNITS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
