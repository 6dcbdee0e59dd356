"""The case list's search: names, institutions and teams by any part; phones only by the
exact full number or exactly the last four digits.

A search by any longer suffix would be an oracle: the list masks the middle digits
(138****8000), and "does 38000 match? 138000?" would reveal them one by one. So a query of
digits (spaces and hyphens ignored) matches a phone only when it is the whole number or its
last four; every such query is a phone search, counted per user over ten minutes (under a
lock per user, so parallel searches cannot all pass) and audit-logged with the query masked.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from app.core.locks import PHONE_SEARCH, begin_locked
from app.models import AuditLog, Case

WINDOW = timedelta(minutes=10)
ACTION = "case_search"
_SEPARATORS = re.compile(r"[\s\-]")
LIMIT_MESSAGE = "电话号码查询过于频繁：每 10 分钟最多 {limit} 次，请稍后再试（按姓名查找不受限制）。"


@dataclass(frozen=True)
class Query:
    text: str  # as typed (trimmed)
    digits: str | None  # the digits of a phone search, else None

    @property
    def is_phone(self) -> bool:
        return self.digits is not None

    @property
    def masked(self) -> str:
        """The query as the audit log keeps it: its length and last four digits, no more than
        the case list shows of a phone."""
        if self.digits is None:
            return self.text
        return "*" * (len(self.digits) - 4) + self.digits[-4:]


def parse(text: str) -> Query:
    """A query of four or more digits (spaces and hyphens aside) is a phone search."""
    text = text.strip()
    digits = _SEPARATORS.sub("", text)
    if digits.isdigit() and digits.isascii() and len(digits) >= 4:
        return Query(text, digits)
    return Query(text, None)


def conditions(query: Query) -> ColumnElement[bool]:
    """The WHERE clause of a search."""
    if query.is_phone:
        if len(query.digits) == 4:
            phone = or_(Case.phone.endswith(query.digits), Case.phone2.endswith(query.digits))
        else:  # the whole number or nothing: a partial number matches no phone
            phone = or_(Case.phone == query.digits, Case.phone2 == query.digits)
        # unit names may hold digits (第1团队); a name match reveals no phone
        return or_(phone, Case.institution_name.contains(query.text, autoescape=True),
                   Case.team_name.contains(query.text, autoescape=True))
    return or_(Case.name.contains(query.text, autoescape=True),
               Case.institution_name.contains(query.text, autoescape=True),
               Case.team_name.contains(query.text, autoescape=True))


def phone_searches_since(session: Session, user_id: int, since: datetime) -> int:
    """How many phone searches the user made since ``since`` (naive UTC), from the audit log."""
    return session.scalar(
        select(func.count()).select_from(AuditLog)
        .where(AuditLog.action == ACTION, AuditLog.user_id == user_id, AuditLog.at >= since)
    )


def over_limit(session: Session, user_id: int, now: datetime, limit: int) -> bool:
    """Whether this phone search is over the user's limit. Begins the caller's transaction
    holding the user's search lock (PostgreSQL: an advisory transaction lock; SQLite: the
    write lock), so a parallel search of the same user waits until this one's audit row is
    committed and then counts it: a burst gets no more than ``limit`` searches through. The
    caller adds the audit row and commits."""
    begin_locked(session, PHONE_SEARCH, user_id)
    return phone_searches_since(session, user_id, now - WINDOW) >= limit
