"""The month's progress per institution and county, and per caller, for the supervisors'
progress board (调查进度), the city overview and the monthly workbook."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.calls.outcomes import OUTCOMES, aapor_class
from app.core.clock import local
from app.models import Attempt, Case, Response, Round, RoundInstitution, User
from app.reports.metrics import AaporRates, aapor_rates


@dataclass
class Progress:
    name: str
    target: int = 0  # interviews wanted: the sample size per institution
    drawn: int = 0  # primaries drawn (less than the target when the roster fell short)
    completed: int = 0
    underway: int = 0  # dialled at least once, not ended (states dialled and on_call)
    untouched: int = 0  # active, never dialled
    remaining: int = 0  # target minus completed
    attempts: int = 0
    callbacks: int = 0  # callbacks pending
    replacements: int = 0  # backups activated
    shortfall: int = 0  # draw shortfall plus replacements that found no backup
    ended: int = 0  # ended without an interview
    institution_id: int | None = None
    # AAPOR classes of the active cases (primaries and activated backups); a case not dialled
    # yet counts as unknown eligibility (UH), as it would if the month closed now
    classes: Counter = field(default_factory=Counter)

    def add(self, other: Progress) -> None:
        for f in fields(self):
            if f.name == "classes":
                self.classes.update(other.classes)
            elif f.name not in ("name", "institution_id"):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def aapor(self) -> AaporRates:
        return aapor_rates(self.classes)


@dataclass
class RoundProgress:
    round: Round
    total: Progress
    institutions: list[Progress] = field(default_factory=list)


def board_rows(session: Session, round_ids: list[int], now: datetime) -> list[RoundProgress]:
    if not round_ids:
        return []
    per: dict[tuple[int, int], Progress] = {}
    for unit in session.scalars(select(RoundInstitution).where(RoundInstitution.round_id.in_(round_ids))):
        round_ = session.get(Round, unit.round_id)
        per[(unit.round_id, unit.institution_id)] = Progress(
            unit.institution_name, target=round_.sample_size, drawn=unit.primaries, shortfall=unit.shortfall,
            institution_id=unit.institution_id,
        )
    counts = session.execute(
        select(
            Case.round_id,
            Case.institution_id,
            func.count().filter(Case.outcome == "complete"),
            func.count().filter(or_(Case.in_state("dialled"), Case.in_state("on_call"))),
            func.count().filter(Case.in_state("untried")),
            func.count().filter(Case.status == "queued", Case.callback_at.is_not(None)),
            func.count().filter(Case.replaces_case_id.is_not(None)),
            func.count().filter(Case.replacement_state == "none_left"),
            func.count().filter(Case.status.in_(("done", "closed")), Case.outcome != "complete"),
        )
        .where(Case.round_id.in_(round_ids))
        .group_by(Case.round_id, Case.institution_id)
    )
    for round_id, inst, completed, underway, untouched, callbacks, replacements, none_left, ended in counts:
        row = per.get((round_id, inst))
        if row is None:
            continue
        row.completed, row.underway, row.untouched = completed, underway, untouched
        row.callbacks, row.replacements, row.ended = callbacks, replacements, ended
        row.shortfall += none_left
    for round_id, inst, outcome, count in session.execute(
        select(Case.round_id, Case.institution_id, Case.outcome, func.count())
        .where(Case.round_id.in_(round_ids), Case.status != "reserve")
        .group_by(Case.round_id, Case.institution_id, Case.outcome)
    ):
        if (round_id, inst) in per:
            per[(round_id, inst)].classes[aapor_class(outcome) or "UH"] += count
    for round_id, inst, attempts in session.execute(
        select(Attempt.round_id, Case.institution_id, func.count())
        .join(Case, Case.id == Attempt.case_id)
        .where(Attempt.round_id.in_(round_ids))
        .group_by(Attempt.round_id, Case.institution_id)
    ):
        if (round_id, inst) in per:
            per[(round_id, inst)].attempts = attempts
    grouped: dict[int, list[Progress]] = defaultdict(list)
    for (round_id, _inst), row in per.items():
        row.remaining = max(row.target - row.completed, 0)
        grouped[round_id].append(row)
    result = []
    for round_id in round_ids:
        rows = sorted(grouped.get(round_id, []), key=lambda r: r.name)
        total = Progress("合计")
        for row in rows:
            total.add(row)
        result.append(RoundProgress(session.get(Round, round_id), total, rows))
    return result


@dataclass
class CallerStats:
    user_id: int
    username: str
    name: str = ""  # what people read: the real name, else the user name
    attempts: int = 0
    completes: int = 0
    contacts: int = 0  # attempts that reached the resident or a proxy (AAPOR I, P, R, O)
    hours: float = 0.0  # per day, first attempt's start to last attempt's end, summed
    interview_seconds: list[float] = field(default_factory=list)

    @property
    def completes_per_hour(self) -> float | None:
        return self.completes / self.hours if self.hours > 0 else None

    @property
    def mean_interview_minutes(self) -> float | None:
        seconds = self.interview_seconds
        return sum(seconds) / len(seconds) / 60 if seconds else None


def caller_stats(session: Session, round_ids: list[int]) -> list[CallerStats]:
    """Per caller over the rounds: attempts, completes, contacts, completes per hour worked
    (hours worked: for each day, the span from the first attempt's start to the last one's
    end), mean length of completed interviews."""
    if not round_ids:
        return []
    stats: dict[int, CallerStats] = {}
    days: dict[tuple[int, object], list[datetime]] = defaultdict(list)
    for caller_id, username, real_name, started, ended, outcome in session.execute(
        select(Attempt.caller_id, User.username, User.real_name, Attempt.started_at, Attempt.ended_at,
               Attempt.outcome)
        .join(User, User.id == Attempt.caller_id)
        .where(Attempt.round_id.in_(round_ids))
    ):
        row = stats.setdefault(caller_id, CallerStats(caller_id, username, real_name or username))
        row.attempts += 1
        if outcome == "complete":
            row.completes += 1
        if outcome in OUTCOMES and OUTCOMES[outcome].contact:
            row.contacts += 1
        bucket = days[(caller_id, local(started).date())]
        bucket.append(started)
        bucket.append(ended or started)
    for (caller_id, _day), moments in days.items():
        stats[caller_id].hours += (max(moments) - min(moments)).total_seconds() / 3600
    for caller_id, started, completed in session.execute(
        select(Response.caller_id, Response.started_at, Response.completed_at)
        .where(Response.round_id.in_(round_ids), Response.status == "complete")
    ):
        if caller_id in stats and completed is not None:
            stats[caller_id].interview_seconds.append((completed - started).total_seconds())
    return sorted(stats.values(), key=lambda s: (-s.completes, s.name, s.username))
