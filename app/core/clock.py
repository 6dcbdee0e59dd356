"""The survey's clock and calendar.

Every timestamp is stored as naive UTC; a naive value anywhere in the application means UTC.
Months (``YYYY-MM``) and days are those of Asia/Shanghai, the survey's calendar. Anything
that depends on the time takes ``now`` as an argument, so tests can pin it; ``clock_now``
is the real clock, read only at the boundary (view, command, job).
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")


def clock_now() -> datetime:
    """The real clock, aware (UTC)."""
    return datetime.now(timezone.utc)


def utcnow() -> datetime:
    """The real clock as stored: naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def local(moment: datetime) -> datetime:
    """An aware time in Asia/Shanghai (a naive value is UTC, as stored)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(TZ)


def utc_naive(moment: datetime) -> datetime:
    """As stored: naive UTC (a naive value is already UTC)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def local_date(moment: datetime) -> date:
    """The survey's calendar day of ``moment``."""
    return local(moment).date()


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def current_month(now: datetime) -> str:
    """The survey month ``now`` falls in (Asia/Shanghai)."""
    return month_of(local_date(now))


def month_start(month: str) -> date:
    return date(int(month[:4]), int(month[5:7]), 1)


def shift_month(month: str, delta: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_of(end: str, window: int) -> list[str]:
    """The ``window`` months ending at ``end``, oldest first."""
    return [shift_month(end, -back) for back in range(window - 1, -1, -1)]


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's, aware in Asia/Shanghai."""
    start = datetime.combine(month_start(month), datetime.min.time(), TZ)
    end = datetime.combine(month_start(shift_month(month, 1)), datetime.min.time(), TZ)
    return start, end


def day_start(now: datetime) -> datetime:
    """Local midnight of ``now``'s day, as naive UTC (comparable with stored times)."""
    here = local(now)
    return utc_naive(here.replace(hour=0, minute=0, second=0, microsecond=0))


def half_day_start(now: datetime) -> datetime:
    """Start of ``now``'s half-day (local midnight or noon), as naive UTC."""
    here = local(now)
    return utc_naive(here.replace(hour=0 if here.hour < 12 else 12, minute=0, second=0, microsecond=0))


def to_local(value: datetime | None, tz_name: str = "Asia/Shanghai", fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored time for people to read, in the display time zone; "" for none."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(ZoneInfo(tz_name)).strftime(fmt)
