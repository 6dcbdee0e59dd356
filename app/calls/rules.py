"""Calling rules that need no database: calling hours, half-days, the settings of a day's work."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from app.core.clock import local


_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class CallHoursError(ValueError):
    pass


def parse_hours(text: str) -> tuple[tuple[time, time], ...]:
    """'08:30-12:00,14:30-20:30' -> ((08:30, 12:00), (14:30, 20:30)); spans in order, not overlapping."""
    spans = []
    for piece in (text or "").split(","):
        match = _SPAN.match(piece)
        if not match:
            raise CallHoursError(f"拨打时段格式应为“08:30-12:00,14:30-20:30”，无法识别：{piece.strip() or '(空)'}")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if not (0 <= h1 < 24 and 0 <= h2 < 24 and m1 < 60 and m2 < 60):
            raise CallHoursError(f"拨打时段的时间无效：{piece.strip()}")
        start, end = time(h1, m1), time(h2, m2)
        if start >= end:
            raise CallHoursError(f"拨打时段的开始时间应早于结束时间：{piece.strip()}")
        if spans and start < spans[-1][1]:
            raise CallHoursError("拨打时段应按时间先后排列且互不重叠。")
        spans.append((start, end))
    return tuple(spans)


@dataclass(frozen=True)
class CallSettings:
    hours: tuple[tuple[time, time], ...]
    max_attempts: int = 3
    min_gap: timedelta = timedelta(hours=2)
    lease: timedelta = timedelta(minutes=20)
    # a callback the resident asked for is honoured even after the last regular attempt,
    # up to this many attempts in all
    callback_extra: int = 2
    # how long a caller may take back an outcome just recorded (a slip of the key)
    undo: timedelta = timedelta(seconds=15)

    @classmethod
    def from_config(cls, config) -> CallSettings:
        return cls(
            hours=parse_hours(config["CALL_HOURS"]),
            max_attempts=config["CALL_MAX_ATTEMPTS"],
            min_gap=timedelta(minutes=config["CALL_MIN_GAP_MINUTES"]),
            lease=timedelta(minutes=config["CALL_LEASE_MINUTES"]),
            undo=timedelta(seconds=config["CALL_UNDO_SECONDS"]),
        )

    @property
    def attempt_cap(self) -> int:
        return self.max_attempts + self.callback_extra

    def in_hours(self, moment: datetime) -> bool:
        clock = local(moment).time()
        return any(start <= clock < end for start, end in self.hours)

    def next_open(self, moment: datetime) -> datetime:
        """The first moment at or after ``moment`` inside calling hours (local time)."""
        here = local(moment)
        for days in range(8):
            day = (here + timedelta(days=days)).date()
            for start, end in self.hours:
                begin = here.replace(year=day.year, month=day.month, day=day.day, hour=start.hour,
                                     minute=start.minute, second=0, microsecond=0)
                finish = begin.replace(hour=end.hour, minute=end.minute)
                if finish > here:
                    return max(begin, here)
        return here

    def hours_label(self) -> str:
        return "、".join(f"{a:%H:%M}–{b:%H:%M}" for a, b in self.hours)
