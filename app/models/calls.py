"""What callers record: attempts, questionnaire responses, and supervisors' corrections."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.core.clock import utcnow

RESPONSE_STATUSES = ("in_progress", "interrupted", "complete", "partial", "breakoff", "ended")


class Attempt(db.Model):
    """One dialling of a case. ``outcome`` is NULL while the call is in progress (the caller
    is reading the questionnaire); the database refuses a second attempt with the same number,
    so a repeated submit cannot record a call twice."""

    __tablename__ = "attempts"
    __table_args__ = (
        UniqueConstraint("case_id", "number"),
        Index("ix_attempts_round_id_started_at", "round_id", "started_at"),
        Index("ix_attempts_caller_id_started_at", "caller_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    number: Mapped[int]  # 1.. within the case
    caller_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(30))
    connected: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None] = mapped_column(Text)
    callback_at: Mapped[datetime | None]

    caller = relationship("User")


class Response(db.Model):
    """The questionnaire as answered in one attempt. Answers are kept as given (JSON, keyed by
    item code, in the version's own terms) and the indicators are derived from them into
    columns, so reports read columns and old versions stay readable."""

    __tablename__ = "responses"
    __table_args__ = (
        Index("ix_responses_round_id_status", "round_id", "status"),
        Index("ix_responses_case_id", "case_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    caller_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    questionnaire_version: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(12), default="in_progress")
    answers: Mapped[str] = mapped_column(Text, default="{}")
    current_item: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    # derived from the answers by the questionnaire's roles (app/questionnaires)
    proxy: Mapped[bool | None]
    aware: Mapped[bool | None]
    knows_doctor: Mapped[bool | None]
    services: Mapped[str | None] = mapped_column(String(200))  # service codes joined by ","
    service_count: Mapped[int | None]
    effect: Mapped[int | None] = mapped_column(SmallInteger)  # 5 = 很有帮助 … 1 = 完全没有帮助
    satisfaction: Mapped[int | None] = mapped_column(SmallInteger)  # 5 = 非常满意 … 1 = 非常不满意
    renew: Mapped[bool | None]
    wants_contact: Mapped[bool | None]
    flags: Mapped[str | None] = mapped_column(String(200))  # flag codes joined by ","
    # services owed in the questionnaire's reference period by the resident's key populations
    # (the standard as configured when the interview was recorded); 0 = no fixed count
    expected_services: Mapped[int | None]
    renew_answered: Mapped[bool | None]  # the renewal item was asked and answered (incl. 还没想好)

    attempt: Mapped[Attempt] = relationship()


class AnswerEdit(db.Model):
    """A supervisor's correction of a completed response: old and new value, why, who, when."""

    __tablename__ = "answer_edits"

    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"), index=True)
    item: Mapped[str] = mapped_column(String(40))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    user = relationship("User")


PROBLEM_STATUSES = ("open", "assigned", "closed")
PROBLEM_STATUS_LABELS = {"open": "待处理", "assigned": "已交办", "closed": "已整改"}


class Problem(db.Model):
    """A flagged response on the rectification list (整改): sent to its institution, the
    rectification recorded, closed. One per response; its flags follow the response's."""

    __tablename__ = "problems"
    __table_args__ = (
        Index("ix_problems_county_id_status", "county_id", "status"),
        Index("ix_problems_round_id", "round_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("responses.id", ondelete="CASCADE"), unique=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    county_id: Mapped[int] = mapped_column(ForeignKey("counties.id"))
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    month: Mapped[str] = mapped_column(String(7))
    flags: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_at: Mapped[datetime | None]
    assigned_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(Text)  # the rectification recorded
    closed_at: Mapped[datetime | None]
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    response: Mapped[Response] = relationship()
