"""The limit on phone searches, wherever a list can be searched by phone (the case list, a
team's roster): lists mask a phone's middle digits, so every search by digits is counted per
user over ten minutes and audit-logged with the query masked, and one that goes over the limit
is refused. The count is taken under a lock per user (PostgreSQL: an advisory transaction
lock; SQLite: the write lock), so parallel searches cannot all pass.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.locks import PHONE_SEARCH, begin_locked
from app.models import AuditLog, audit

WINDOW = timedelta(minutes=10)
ACTION = "case_search"
LIMIT_MESSAGE = "电话号码查询过于频繁：每 10 分钟最多 {limit} 次，请稍后再试（按姓名查找不受限制）。"


def masked_digits(digits: str) -> str:
    """A query as the audit log keeps it: its length and last four digits, no more than a
    list shows of a phone."""
    return "*" * max(len(digits) - 4, 0) + digits[-4:]


def phone_searches_since(session: Session, user_id: int, since: datetime) -> int:
    """How many phone searches the user made since ``since`` (naive UTC), from the audit log."""
    return session.scalar(
        select(func.count()).select_from(AuditLog)
        .where(AuditLog.action == ACTION, AuditLog.user_id == user_id, AuditLog.at >= since)
    )


def over_limit(session: Session, user_id: int, now: datetime, limit: int) -> bool:
    """Whether this phone search is over the user's limit. Begins the caller's transaction
    holding the user's search lock, so a parallel search of the same user waits until this
    one's audit row is committed and then counts it: a burst gets no more than ``limit``
    searches through. The caller records the search (``record``) and commits."""
    begin_locked(session, PHONE_SEARCH, user_id)
    return phone_searches_since(session, user_id, now - WINDOW) >= limit


def check_and_record(session: Session, user, digits: str, *, target: str, now: datetime, limit: int) -> bool:
    """One phone search: counted against the limit and recorded (refused or not). Returns
    whether it was refused. Begins the caller's transaction (see ``over_limit``)."""
    refused = over_limit(session, user.id, now, limit)
    audit(session, ACTION, user, target=target, at=now, detail={"query": masked_digits(digits), "refused": refused})
    return refused
