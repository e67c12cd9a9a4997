"""Peak and off-peak hours: which alert windows belong to the busy part of the week."""

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

PEAK = "peak"
OFF_PEAK = "off_peak"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class PeakHours:
    """Peak is [start, end) local time on `days` (0 = Monday) in `timezone`.

    An end at or before the start wraps past midnight (22:00-06:00 is a night peak; the
    hours after midnight belong to the day the peak started on).
    """

    days: frozenset[int]
    start: time
    end: time
    timezone: ZoneInfo

    def period_of(self, moment: datetime) -> str:
        """PEAK or OFF_PEAK for a timezone-aware moment."""
        local = moment.astimezone(self.timezone)
        clock = local.time().replace(tzinfo=None)
        day = local.weekday()
        if self.start < self.end:
            inside = day in self.days and self.start <= clock < self.end
        else:
            inside = (day in self.days and clock >= self.start) or (
                (day - 1) % 7 in self.days and clock < self.end
            )
        return PEAK if inside else OFF_PEAK


def parse_days(text: str) -> frozenset[int]:
    """ "mon-fri", "sat,sun", "mon-wed,fri" → weekday numbers (0 = Monday)."""
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"unknown day in {text!r}: use mon..sun, e.g. 'mon-fri'")
        low, high = DAYS.index(first), DAYS.index(last or first)
        span = range(low, high + 1) if low <= high else [*range(low, 7), *range(0, high + 1)]
        days.update(span)
    return frozenset(days)


def parse_hours(text: str) -> tuple[time, time]:
    """ "08:00-20:00" or "8-20" → (start, end) local times."""
    first, sep, last = text.replace(" ", "").partition("-")
    if not sep:
        raise ValueError(f"peak hours {text!r}: use START-END, e.g. '08:00-20:00'")
    return _clock(first), _clock(last)


def _clock(text: str) -> time:
    hours, _, minutes = text.partition(":")
    try:
        hour, minute = int(hours), int(minutes or 0)
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use HH:MM") from None
    if hour == 24 and minute == 0:
        return time(23, 59, 59, 999999)  # "until midnight"
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ValueError(f"invalid time {text!r}: use HH:MM")
    return time(hour, minute)
