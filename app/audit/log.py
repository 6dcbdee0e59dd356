"""Reading the audit log: who sees which rows, the filters, the rows as people read them.

Admins see every row; supervisors the rows of their own county (``AuditLog.county_id``: the
county the act concerns, else the acting user's); callers none (the views answer 403).
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time

import pandas as pd
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from app.core.clock import TZ, to_local, utc_naive
from app.core.masking import scrub_phones
from app.models import ACTION_LABELS, AuditLog, County, User, action_label

PER_PAGE = 50
EXPORT_MAX_ROWS = 100_000
MAX_QUERY = 50
EXPORT_COLUMNS = ["记录号", "时间", "操作人", "姓名", "操作", "操作代码", "对象", "县区", "详情", "哈希"]


# an ID number (15 or 18 characters) that found its way into a detail or a target
_ID_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])(?:[0-9]{17}[0-9Xx]|[0-9]{15})(?![0-9A-Za-z])")


def scrub(text: str | None) -> str:
    """Text for the page and the export: phones and ID numbers masked (an ID keeps its last 4)."""
    return _ID_IN_TEXT.sub(lambda m: "*" * (len(m.group()) - 4) + m.group()[-4:], scrub_phones(text))


def _text(value: str | None, limit: int) -> str:
    """A query-string value without control characters (PostgreSQL refuses a NUL)."""
    return "".join(ch for ch in (value or "") if unicodedata.category(ch)[0] != "C").strip()[:limit]


FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)  # the dates a filter may name


def _day(value: str | None) -> date | None:
    """A filter's date; ValueError for text that is not one, or a day outside 2000–2099 (the
    day after 9999-12-31, or a UTC time before year 1, cannot be computed)."""
    if not value:
        return None
    day = date.fromisoformat(value)
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(value)
    return day


@dataclass
class AuditFilters:
    """The page's filters, read from the query string; what could not be read is dropped and
    said in ``errors``."""

    who: str = ""
    action: str = ""
    since: date | None = None
    until: date | None = None
    county: str = ""  # admins only: "" every row, "none" rows of no county, or a county id
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args, user: User) -> AuditFilters:
        f = cls(who=_text(args.get("who"), MAX_QUERY), action=_text(args.get("action"), 50))
        for name, label in (("since", "起始日期"), ("until", "截止日期")):
            raw = _text(args.get(name), 40)
            try:
                setattr(f, name, _day(raw))
            except ValueError:
                f.errors.append(f"{label}“{raw[:20]}”无效，应为2000至2099年间的 年-月-日，如 2026-11-23。")
        if f.since and f.until and f.since > f.until:
            f.errors.append("起始日期晚于截止日期，已忽略日期范围。")
            f.since = f.until = None
        county = (args.get("county") or "").strip()
        if user.is_admin and (county == "none" or (county.isdigit() and len(county) < 10)):
            f.county = county
        return f

    def args(self) -> dict[str, str]:
        values = {"who": self.who, "action": self.action, "since": self.since.isoformat() if self.since else "",
                  "until": self.until.isoformat() if self.until else "", "county": self.county}
        return {k: v for k, v in values.items() if v}

    def apply(self, stmt: Select, user: User) -> Select:
        if not user.is_admin:
            stmt = stmt.where(AuditLog.county_id == user.county_id)
        elif self.county == "none":
            stmt = stmt.where(AuditLog.county_id.is_(None))
        elif self.county:
            stmt = stmt.where(AuditLog.county_id == int(self.county))
        if self.who:
            pattern = "%" + self.who.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            names = select(User.id).where(User.real_name.ilike(pattern, escape="\\"))
            stmt = stmt.where(or_(AuditLog.actor.ilike(pattern, escape="\\"), AuditLog.user_id.in_(names)))
        if self.action:
            stmt = stmt.where(AuditLog.action == self.action)
        if self.since:
            stmt = stmt.where(AuditLog.at >= utc_naive(datetime.combine(self.since, time.min, TZ)))
        if self.until:
            end = datetime.combine(date.fromordinal(self.until.toordinal() + 1), time.min, TZ)
            stmt = stmt.where(AuditLog.at < utc_naive(end))
        return stmt


def log_query(f: AuditFilters, user: User) -> Select:
    """The rows the user may see under the filters, newest first."""
    return f.apply(select(AuditLog), user).order_by(AuditLog.id.desc())


def action_choices(current: str = "") -> list[tuple[str, str]]:
    choices = sorted(ACTION_LABELS.items(), key=lambda item: item[1])
    if current and current not in ACTION_LABELS:
        choices.append((current, current))
    return choices


def _shown(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def readable_detail(detail: str | None) -> str:
    """A JSON detail as "key：value" pairs on one line each; plain text as it is. Phones and ID
    numbers inside are masked."""
    if not detail:
        return ""
    try:
        data = json.loads(detail)
    except ValueError:
        return scrub(detail)
    if isinstance(data, dict):
        lines = []
        for key, value in data.items():
            if isinstance(value, dict) and value:
                value = "，".join(f"{k}={_shown(v)}" for k, v in value.items())
            lines.append(f"{key}：{_shown(value)}")
        text = "\n".join(lines)
    elif isinstance(data, list):
        text = "、".join(_shown(v) for v in data)
    else:
        text = _shown(data)
    return scrub(text)


@dataclass(frozen=True)
class Row:
    id: int
    at: datetime
    actor: str
    real_name: str | None
    action: str
    label: str
    target: str
    county: str
    detail: str
    hash: str | None


def rows_of(session: Session, entries: list[AuditLog]) -> list[Row]:
    """The entries as people read them, with the acting user's name and the county's."""
    user_ids = {e.user_id for e in entries if e.user_id is not None}
    county_ids = {e.county_id for e in entries if e.county_id is not None}
    names = dict(session.execute(select(User.id, User.real_name).where(User.id.in_(user_ids))).all()) if user_ids else {}
    counties = dict(session.execute(select(County.id, County.name).where(County.id.in_(county_ids))).all()) if county_ids else {}
    return [
        Row(e.id, e.at, e.actor, names.get(e.user_id), e.action, action_label(e.action), scrub(e.target),
            counties.get(e.county_id, ""), readable_detail(e.detail), e.hash)
        for e in entries
    ]


def export_frame(session: Session, f: AuditFilters, user: User, tz_name: str) -> tuple[pd.DataFrame, bool]:
    """The filtered rows for the spreadsheet (at most EXPORT_MAX_ROWS, newest first) and whether
    there were more."""
    entries = session.scalars(log_query(f, user).limit(EXPORT_MAX_ROWS + 1)).all()
    more = len(entries) > EXPORT_MAX_ROWS
    rows = rows_of(session, list(entries[:EXPORT_MAX_ROWS]))
    frame = pd.DataFrame(
        [(r.id, to_local(r.at, tz_name, "%Y-%m-%d %H:%M:%S"), r.actor, r.real_name or "", r.label, r.action,
          r.target, r.county, r.detail, r.hash or "") for r in rows],
        columns=EXPORT_COLUMNS,
    )
    return frame, more
