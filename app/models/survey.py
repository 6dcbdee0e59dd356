"""Survey rounds (one county's month), the institutions' draw records, cases, scheduler runs."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.core.clock import utcnow

# A case's life: a primary is "queued" from the draw; a backup waits in "reserve" until it
# replaces a primary and becomes "queued"; a case with a final outcome is "done"; a queued case
# still open when the month closes is "closed" with the closing disposition.
CASE_STATUSES = ("queued", "reserve", "done", "closed")
# What a case is doing, for people: a queued case is split by its calls. "on_call" is an
# attempt started and not ended (the caller is on the phone, or the questionnaire is open);
# "dialled" has had attempts, none open, and may be called again. Every page, the board and
# the Excel report name the states with these labels.
CASE_STATE_LABELS = {
    "reserve": "备用未启用",
    "untried": "未拨打",
    "dialled": "待再拨",
    "on_call": "通话中",
    "done": "已结束",
    "closed": "月末关闭",
}
CASE_KINDS = ("primary", "backup")
# The outcome that counts as "surveyed to completion" for the exclusion window.
OUTCOME_COMPLETE = "complete"
# The disposition a case still open at month end receives (no final outcome was reached).
OUTCOME_OPEN_AT_CLOSE = "open_at_close"
# What a name, a label or a free text reads once the retention period erased it (app/privacy).
ERASED_TEXT = "已按保存期限删除"


class Round(db.Model):
    """One county's survey month, with every parameter of its draw recorded."""

    __tablename__ = "rounds"
    __table_args__ = (
        # the database, not the scheduler, guarantees one draw per county and month
        UniqueConstraint("county_id", "month"),
        CheckConstraint("sample_size >= 10", name="sample_size_min"),
        CheckConstraint("status IN ('open', 'closed')", name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    county_id: Mapped[int] = mapped_column(ForeignKey("counties.id"))
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    status: Mapped[str] = mapped_column(String(10), default="open")
    # the recorded inputs of the draw: enough to recompute it (draw verify)
    algorithm: Mapped[str] = mapped_column(String(20))
    county_code: Mapped[str] = mapped_column(String(12))
    salt: Mapped[str] = mapped_column(String(64))
    seed: Mapped[str] = mapped_column(String(16))  # 64-bit, hex
    draw_date: Mapped[date]
    sample_size: Mapped[int]
    backup_size: Mapped[int]
    exclusion_months: Mapped[int]
    key_population_min_share: Mapped[float | None] = mapped_column(Float)
    questionnaire_version: Mapped[str] = mapped_column(String(20))
    eligible_count: Mapped[int]
    eligible_hash: Mapped[str] = mapped_column(String(64))
    # what the draw produced
    institutions: Mapped[int]
    primaries: Mapped[int]
    backups: Mapped[int]
    shortfall_institutions: Mapped[int]
    triggered_by: Mapped[str] = mapped_column(String(80))
    triggered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    drawn_at: Mapped[datetime] = mapped_column(default=utcnow)
    redraws: Mapped[int] = mapped_column(default=0)
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(80))
    summary: Mapped[str | None] = mapped_column(Text)  # JSON figures frozen at close
    # when the personal data of its cases was erased (app/privacy: the retention period)
    erased_at: Mapped[datetime | None]

    county = relationship("County")
    units: Mapped[list[RoundInstitution]] = relationship(
        back_populates="round", order_by="RoundInstitution.institution_name", cascade="all, delete-orphan"
    )


class RoundInstitution(db.Model):
    """One institution's part of a draw: its eligible set (stored, for verification), what was
    drawn, and the shortfall with its reason."""

    __tablename__ = "round_institutions"
    __table_args__ = (UniqueConstraint("round_id", "institution_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    institution_name: Mapped[str] = mapped_column(String(100))
    teams: Mapped[int]  # teams with eligible residents
    eligible_count: Mapped[int]
    eligible_hash: Mapped[str] = mapped_column(String(64))
    # resident ids, team ids and key-population flags of the eligible set, compressed
    # (format in app/draws/sampler.py: pack_eligible)
    eligible_data: Mapped[bytes] = mapped_column(LargeBinary)
    primaries: Mapped[int]
    backups: Mapped[int]
    shortfall: Mapped[int]  # primary target minus primaries drawn
    shortfall_reason: Mapped[str | None] = mapped_column(Text)

    round: Mapped[Round] = relationship(back_populates="units")


class Case(db.Model):
    """A sampled resident in a round, with a snapshot of what the caller needs, so a later
    roster change never rewrites what was drawn."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("round_id", "resident_id"),  # nobody twice in a round
        UniqueConstraint("round_id", "institution_id", "kind", "position"),
        Index("ix_cases_round_id_status", "round_id", "status"),
        Index("ix_cases_resident_id", "resident_id"),
        Index("ix_cases_round_id_institution_id", "round_id", "institution_id"),
        CheckConstraint("kind IN ('primary', 'backup')", name="kind_known"),
        CheckConstraint("status IN ('queued', 'reserve', 'done', 'closed')", name="status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    kind: Mapped[str] = mapped_column(String(7))
    position: Mapped[int]  # 1.. within the institution, primaries and backups each in drawn order
    status: Mapped[str] = mapped_column(String(10))
    outcome: Mapped[str | None] = mapped_column(String(30))
    attempt_count: Mapped[int] = mapped_column(default=0)
    activated_at: Mapped[datetime | None]
    replaces_case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    replacement_reason: Mapped[str | None] = mapped_column(String(100))
    closed_at: Mapped[datetime | None]
    # calling state (app/calls): who holds the case and until when; a supervisor's assignment;
    # the last attempt; a pending callback; who (whose attempt) activated a backup; whether an
    # ended case was replaced ("replaced") or its institution had no backup left ("none_left")
    leased_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    lease_expires_at: Mapped[datetime | None]
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    first_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_outcome: Mapped[str | None] = mapped_column(String(30))
    callback_at: Mapped[datetime | None]
    callback_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    activated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    replacement_state: Mapped[str | None] = mapped_column(String(10))
    # snapshot at draw time
    name: Mapped[str] = mapped_column(String(50))
    sex: Mapped[str] = mapped_column(String(1))
    age: Mapped[int]  # on the draw day; the birth date itself is not copied (docs/privacy.md)
    phone: Mapped[str] = mapped_column(String(20))
    phone2: Mapped[str | None] = mapped_column(String(20))
    institution_name: Mapped[str] = mapped_column(String(100))
    team_name: Mapped[str] = mapped_column(String(100))
    doctor_name: Mapped[str | None] = mapped_column(String(50))
    population_labels: Mapped[str] = mapped_column(String(300))  # names joined by "、"
    key_population: Mapped[bool] = mapped_column(default=False)
    contract_start: Mapped[date]
    contract_end: Mapped[date]
    # set when the retention period erased the snapshot's personal data (app/privacy): the
    # name and labels then read ERASED_TEXT, the phones are empty, the birth date is 1 January
    erased_at: Mapped[datetime | None]

    round: Mapped[Round] = relationship()
    leased_by = relationship("User", foreign_keys=[leased_by_id])
    assigned_to = relationship("User", foreign_keys=[assigned_to_id])

    @property
    def state(self) -> str:
        """One of CASE_STATE_LABELS (the SQL form is ``Case.in_state``)."""
        if self.status != "queued":
            return self.status
        if not self.attempt_count:
            return "untried"
        return "on_call" if self.last_outcome is None else "dialled"

    @property
    def state_label(self) -> str:
        return CASE_STATE_LABELS[self.state]

    @classmethod
    def in_state(cls, state: str) -> ColumnElement[bool]:
        """The SQL condition for ``Case.state == state``."""
        if state not in CASE_STATE_LABELS:
            raise ValueError(f"unknown case state: {state}")
        if state in ("reserve", "done", "closed"):
            return cls.status == state
        queued = cls.status == "queued"
        if state == "untried":
            return and_(queued, cls.attempt_count == 0)
        if state == "on_call":
            return and_(queued, cls.attempt_count > 0, cls.last_outcome.is_(None))
        return and_(queued, cls.attempt_count > 0, cls.last_outcome.is_not(None))


class SchedulerRun(db.Model):
    """One run of a scheduled job (draw, close, catch-up), for the supervisors' history page."""

    __tablename__ = "scheduler_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(30))
    scheduled_for: Mapped[datetime | None]
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(10))  # running / success / failed
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(100))
    pid: Mapped[int | None]


class SchedulerHeartbeat(db.Model):
    """Written every minute by each running scheduler process, so the pages can tell whether
    one is alive (the newest beat is recent) instead of promising runs nobody will execute."""

    __tablename__ = "scheduler_heartbeats"
    __table_args__ = (UniqueConstraint("host", "pid", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(100))
    pid: Mapped[int]
    started_at: Mapped[datetime]
    beat_at: Mapped[datetime] = mapped_column(index=True)
