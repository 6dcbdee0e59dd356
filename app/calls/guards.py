"""What every write to a case checks first, and the error a caller is shown when a rule refuses.

Who holds a case is decided by the database, never by a check in Python alone: a write to a
case checks, in the same statement or under the row lock, that the writer still holds it.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.clock import current_month, utc_naive
from app.models import Case, Round, User


class CallError(ValueError):
    """A request the rules refuse; the message is for the caller (Chinese). ``field`` names
    the form field the message belongs next to ("note", "callback"), None for the request."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def open_round(session: Session, round_id: int) -> Round:
    """The round, locked FOR SHARE on PostgreSQL so a redraw (FOR UPDATE) or the month's
    close cannot run between this check and the write that follows."""
    stmt = select(Round).where(Round.id == round_id)
    if is_postgresql(session):
        stmt = stmt.with_for_update(read=True)
    round_ = session.scalar(stmt)
    if round_ is None:
        raise CallError("找不到该调查轮次。")
    if round_.status != "open":
        raise CallError("本月调查已结束（月末已关闭），不能再记录拨打结果。")
    return round_


def locked_case(session: Session, case_id: int) -> Case:
    stmt = select(Case).where(Case.id == case_id).execution_options(populate_existing=True)
    if is_postgresql(session):
        stmt = stmt.with_for_update()
    case = session.scalar(stmt)
    if case is None:
        raise CallError("找不到该样本。")
    return case


def require_holder(case: Case, user: User, now: datetime) -> None:
    """The user holds the case: their lease runs, or their interview on it is open. A lease
    that ran out authorises nothing: the case is claimed again, under the queue's rules."""
    if case.status != "queued":
        raise CallError("该样本已结束拨打，不能再记录。")
    if case.leased_by_id != user.id:
        raise CallError("该样本已被其他调查员领取（或您的领取已超时被他人接手），请返回队列领取下一个。")
    on_call = case.attempt_count > 0 and case.last_outcome is None
    if not on_call and (case.lease_expires_at is None or case.lease_expires_at < utc_naive(now)):
        raise CallError("您对该样本的领取已超时，请重新领取后再记录。")


def current_round(session: Session, county_id: int, now: datetime) -> Round | None:
    """The county's round of the current month (Asia/Shanghai)."""
    month = current_month(now)
    return session.scalar(select(Round).where(Round.county_id == county_id, Round.month == month))
